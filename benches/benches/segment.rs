//! Segment cost: a realistic segment — one entry span, 10 local spans with two tags each (one
//! static, one formatted), one exit span with `sw8` injected into an `http::HeaderMap` — made,
//! finished and handed to a reporter that discards, for skytrace and the official `skywalking`
//! crate. Everything is on the measured thread.
//!
//! - `new_trace`: the entry span starts a trace (no incoming `sw8`).
//! - `continued`: the entry span continues the caller's trace from an incoming `sw8` header.
//! - `skytrace/.../+proto`: the reporter also converts the segment to its protobuf message, the
//!   work skytrace's gRPC reporter does on its own thread (the `skywalking` crate does it on the
//!   caller's thread, inside the `skywalking` rows).
//!
//! `entry_2_threads/{explicit,global}`: two threads making entry spans (new trace, nothing
//! else) at once, wall time per span: the tracer given explicitly, or found as the global one
//! the way `#[entry_span]` and the integrations find it after `skytrace::init`. What the threads
//! of one service write to in common per request shows here, not on one thread. Compare them
//! run one at a time (`-- entry_2_threads/global`): in one process the second one measured
//! 40–120 ns slower, whichever it was.

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

/// Converts each segment to protobuf, then drops it.
struct ProtoReporter;

impl skytrace::Reporter for ProtoReporter {
    fn report(&self, segment: skytrace::Segment) {
        drop(black_box(segment.into_proto()));
    }
}

fn segment(c: &mut Criterion) {
    let config = common::config().build().expect("config");
    let discard = skytrace::Tracer::new(&config, skytrace::DiscardReporter::new());
    let proto = skytrace::Tracer::new(&config, ProtoReporter);
    let skywalking = skywalking::trace::tracer::Tracer::new(common::SERVICE, common::INSTANCE, ());

    let empty = http::HeaderMap::new();
    let mut incoming = http::HeaderMap::new();
    incoming.insert(
        "sw8",
        common::sample_sw8()
            .encode()
            .try_into()
            .expect("header value"),
    );

    let mut g = c.benchmark_group("segment");
    g.bench_function("skytrace/new_trace", |b| {
        b.iter(|| common::skytrace_segment(&discard, black_box(&empty)))
    });
    g.bench_function("skytrace/new_trace+proto", |b| {
        b.iter(|| common::skytrace_segment(&proto, black_box(&empty)))
    });
    g.bench_function("skywalking/new_trace", |b| {
        b.iter(|| common::skywalking_segment(&skywalking, None))
    });
    g.bench_function("skytrace/continued", |b| {
        b.iter(|| common::skytrace_segment(&discard, black_box(&incoming)))
    });
    g.bench_function("skytrace/continued+proto", |b| {
        b.iter(|| common::skytrace_segment(&proto, black_box(&incoming)))
    });
    g.bench_function("skywalking/continued", |b| {
        b.iter(|| common::skywalking_segment(&skywalking, Some(black_box(&incoming))))
    });
    g.finish();

    let mut g = c.benchmark_group("entry_2_threads");
    g.bench_function("explicit", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, || drop(black_box(discard.entry_span("job", &()))))
        })
    });
    discard.install_global();
    g.bench_function("global", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, || drop(black_box(skytrace::Span::root_entry("job"))))
        })
    });
    g.finish();
}

/// Runs `f` `iters` times, half on each of two threads started together; the wall time until
/// both are done.
fn on_two_threads(iters: u64, f: impl Fn() + Sync) -> std::time::Duration {
    let per_thread = iters.div_ceil(2);
    let start = std::sync::Barrier::new(3);
    let mut began = None;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                start.wait();
                for _ in 0..per_thread {
                    f();
                }
            });
        }
        start.wait();
        began = Some(std::time::Instant::now());
    }); // joins both threads
    began.map_or(std::time::Duration::ZERO, |began| began.elapsed())
}

criterion_group!(benches, segment);
criterion_main!(benches);
