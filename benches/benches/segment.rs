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
}

criterion_group!(benches, segment);
criterion_main!(benches);
