//! Per-span cost of the `tracing` bridge (`SkyWalkingLayer`), in one criterion run beside
//! `tracing` with a plain `Registry` and beside tracing-opentelemetry over the OpenTelemetry
//! SDK: one call of the same `#[tracing::instrument]` function, in batches of
//! `common::SPANS_PER_SEGMENT` under one root per batch (entering and leaving the root's scope
//! timed, making and finishing the root not).
//!
//! - `tracing/registry`: a `Registry` alone; the baseline every layer adds to.
//! - `bridge/sampled`: `Registry` + `SkyWalkingLayer` inside a sampled skytrace trace: each
//!   call records a SkyWalking local span; segments go to a reporter that discards them.
//! - `bridge/no_trace`: the same subscriber outside any skytrace trace (records nothing).
//! - `otel/sampled`: `Registry` + tracing-opentelemetry's layer over an SDK tracer provider
//!   (always-on sampler) whose one processor discards every ended span.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use skytrace::integrations::tracing::SkyWalkingLayer;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;

use common::{SPANS_PER_SEGMENT, config, work};

#[inline(never)]
#[tracing::instrument(name = "traced", skip_all)]
fn traced(x: u64) -> u64 {
    work(x)
}

/// An OpenTelemetry processor that drops every span: what skytrace's `DiscardReporter` is to
/// the bridge.
#[derive(Debug)]
struct DiscardProcessor;

impl opentelemetry_sdk::trace::SpanProcessor for DiscardProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        drop(black_box(span));
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Case {
    Registry,
    BridgeSampled,
    BridgeNoTrace,
    OtelSampled,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::Registry,
        Case::BridgeSampled,
        Case::BridgeNoTrace,
        Case::OtelSampled,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::Registry => "tracing/registry",
            Case::BridgeSampled => "bridge/sampled",
            Case::BridgeNoTrace => "bridge/no_trace",
            Case::OtelSampled => "otel/sampled",
        }
    }
}

struct Subscribers {
    tracer: skytrace::Tracer,
    registry: Dispatch,
    bridge: Dispatch,
    otel: Dispatch,
    _provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Subscribers {
    fn new() -> Subscribers {
        let tracer = skytrace::Tracer::new(
            &config().build().expect("config"),
            skytrace::DiscardReporter::new(),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .with_span_processor(DiscardProcessor)
            .build();
        let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
        Subscribers {
            tracer,
            registry: Dispatch::new(tracing_subscriber::registry()),
            bridge: Dispatch::new(tracing_subscriber::registry().with(SkyWalkingLayer::new())),
            otel: Dispatch::new(tracing_subscriber::registry().with(otel_layer)),
            _provider: provider,
        }
    }

    /// `n` calls under one root, timed with entering and leaving the root's scope.
    fn batch(&self, case: Case, n: u64) -> Duration {
        let calls = || {
            let root = tracing::info_span!("bench");
            let start = Instant::now();
            let entered = root.enter();
            for i in 0..n {
                black_box(traced(black_box(i)));
            }
            drop(entered);
            let elapsed = start.elapsed();
            drop(root);
            elapsed
        };
        match case {
            Case::Registry => tracing::dispatcher::with_default(&self.registry, calls),
            Case::BridgeNoTrace => tracing::dispatcher::with_default(&self.bridge, calls),
            Case::OtelSampled => tracing::dispatcher::with_default(&self.otel, calls),
            Case::BridgeSampled => {
                let entry = self.tracer.entry_span("bench", &());
                assert!(entry.is_recording());
                let _in = entry.enter();
                tracing::dispatcher::with_default(&self.bridge, calls)
            }
        }
    }

    fn run(&self, case: Case, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(SPANS_PER_SEGMENT);
            total += self.batch(case, n);
            left -= n;
        }
        total
    }
}

fn per_span(c: &mut Criterion) {
    let subscribers = Subscribers::new();
    let mut g = c.benchmark_group("bridge_per_span");
    for case in Case::ALL {
        g.bench_function(case.name(), |b| {
            b.iter_custom(|iters| subscribers.run(case, iters))
        });
    }
    g.finish();
}

criterion_group!(benches, per_span);
criterion_main!(benches);
