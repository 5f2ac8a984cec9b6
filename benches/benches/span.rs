//! Per-span cost: one call of a traced function inside an active, sampled trace, for skytrace
//! and its peers, plus skytrace's cheap paths (feature off, no trace, unsampled) and a plain
//! call for reference.
//!
//! Every traced function has the same body ([`common::work`]) and is `#[inline(never)]`. Inside a
//! trace, calls are made in batches of [`common::SPANS_PER_SEGMENT`] under one root (entry) span
//! per batch; only the calls are timed, not making and finishing the root, which is what the
//! segment bench measures.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use common::{SPANS_PER_SEGMENT, work};

// ---- the traced functions, one per peer -------------------------------------------------------

/// No instrumentation at all.
#[inline(never)]
fn plain(x: u64) -> u64 {
    work(x)
}

/// What `#[skytrace::trace]` expands to when skytrace's `enable` feature is off: the item
/// exactly as written (the macros return it token for token). Cargo unifies features across one
/// build, so the off expansion cannot be compiled beside the on one; this is its text.
#[inline(never)]
fn skytrace_feature_off(x: u64) -> u64 {
    work(x)
}

/// `#[skytrace::trace]` with the `enable` feature on: `Span::local` + `enter` around the body.
#[inline(never)]
#[skytrace::trace(name = "traced")]
fn skytrace_traced(x: u64) -> u64 {
    work(x)
}

/// The official agent has no attribute and no current context: the function takes the context
/// and makes a local span in it, as its docs show.
#[inline(never)]
fn skywalking_traced(ctx: &mut skywalking::trace::trace_context::TracingContext, x: u64) -> u64 {
    let _span = ctx.create_local_span("traced");
    work(x)
}

#[inline(never)]
#[fastrace::trace(name = "traced")]
fn fastrace_traced(x: u64) -> u64 {
    work(x)
}

#[inline(never)]
#[tracing::instrument(name = "traced", skip_all)]
fn tracing_traced(x: u64) -> u64 {
    work(x)
}

// ---- reporters that discard --------------------------------------------------------------------

struct FastraceDiscard;

impl fastrace::collector::Reporter for FastraceDiscard {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        drop(black_box(spans));
    }
}

/// Times `iters` calls made in batches of [`SPANS_PER_SEGMENT`]: `batch(n)` sets up a root
/// (untimed), returns the time [`timed`] took for its `n` calls, and finishes the root (untimed).
fn batched(iters: u64, mut batch: impl FnMut(u64) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(SPANS_PER_SEGMENT);
        total += batch(n);
        left -= n;
    }
    total
}

/// The time `n` calls of `call` take.
#[inline(always)]
fn timed(n: u64, mut call: impl FnMut(u64)) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        call(i);
    }
    start.elapsed()
}

fn per_span(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_span");

    g.bench_function("plain", |b| b.iter(|| plain(black_box(7))));

    // -- skytrace
    let tracer = skytrace::Tracer::new(
        &common::config().build().expect("config"),
        skytrace::DiscardReporter::new(),
    );
    g.bench_function("skytrace/sampled", |b| {
        b.iter_custom(|iters| {
            batched(iters, |n| {
                let entry = tracer.entry_span("bench", &());
                assert!(entry.is_recording());
                let _in = entry.enter();
                timed(n, |i| {
                    black_box(skytrace_traced(black_box(i)));
                })
            })
        })
    });
    g.bench_function("skytrace/feature_off", |b| {
        b.iter(|| skytrace_feature_off(black_box(7)))
    });
    g.bench_function("skytrace/no_trace", |b| {
        b.iter(|| skytrace_traced(black_box(7)))
    });
    g.bench_function("skytrace/unsampled", |b| {
        // An ignored endpoint (SW_AGENT_IGNORE_SUFFIX) starts a trace that is not sampled: the
        // entry is current as an unsampled handle and child spans are no-ops.
        b.iter_custom(|iters| {
            batched(iters, |n| {
                let entry = tracer.entry_span("GET:/static/app.js", &());
                assert!(!entry.is_recording());
                let _in = entry.enter();
                timed(n, |i| {
                    black_box(skytrace_traced(black_box(i)));
                })
            })
        })
    });

    // -- the official `skywalking` crate, reporting to `()` (which discards)
    let sw_tracer = skywalking::trace::tracer::Tracer::new(common::SERVICE, common::INSTANCE, ());
    g.bench_function("skywalking/sampled", |b| {
        b.iter_custom(|iters| {
            batched(iters, |n| {
                let mut ctx = sw_tracer.create_trace_context();
                let entry = ctx.create_entry_span("bench");
                let elapsed = timed(n, |i| {
                    black_box(skywalking_traced(&mut ctx, black_box(i)));
                });
                drop(entry);
                elapsed
            })
        })
    });

    // -- fastrace, reporting to a reporter that discards
    fastrace::set_reporter(FastraceDiscard, fastrace::collector::Config::default());
    g.bench_function("fastrace/sampled", |b| {
        b.iter_custom(|iters| {
            batched(iters, |n| {
                let root = fastrace::Span::root("bench", fastrace::prelude::SpanContext::random());
                let _in = root.set_local_parent();
                timed(n, |i| {
                    black_box(fastrace_traced(black_box(i)));
                })
            })
        })
    });

    // -- tracing `#[instrument]`, with a `Registry` (no layers) as the global subscriber
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    g.bench_function("tracing/registry", |b| {
        b.iter_custom(|iters| {
            batched(iters, |n| {
                let root = tracing::info_span!("bench");
                let _in = root.enter();
                timed(n, |i| {
                    black_box(tracing_traced(black_box(i)));
                })
            })
        })
    });
    g.finish();
    fastrace::flush();
}

criterion_group!(benches, per_span);
criterion_main!(benches);
