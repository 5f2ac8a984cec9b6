//! Propagation: the `sw8` header encoded and decoded by skytrace and by the official
//! `skywalking` crate, with the same field values; and injection from the current exit span
//! into an `http::HeaderMap`, as instrumentation of an HTTP client does it.

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use skywalking::trace::propagation::{decoder::decode_propagation, encoder::encode_propagation};

fn propagation(c: &mut Criterion) {
    let header = common::sample_sw8();
    let value = header.encode();

    // The skywalking crate encodes from a live context: one whose ids, service, instance and
    // current span id are the sample header's, so both sides write the same bytes.
    let sw_tracer = skywalking::trace::tracer::Tracer::new(
        header.parent_service.clone(),
        header.parent_service_instance.clone(),
        (),
    );
    let mut sw_ctx = sw_tracer.create_trace_context();
    let parent = skywalking::trace::propagation::context::PropagationContext::new(
        true,
        header.trace_id.clone(),
        header.parent_segment_id.clone(),
        0,
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let _sw_entry = sw_ctx.create_entry_span_with_propagation("entry", &parent);
    let sw_value = encode_propagation(&sw_ctx, &header.parent_endpoint, &header.target_address);
    // Each side reads what the other writes.
    assert_eq!(
        decode_propagation(&value).map(|p| p.parent_trace_id).ok(),
        Some(header.trace_id.clone())
    );
    assert_eq!(
        skytrace::Sw8Header::decode(&sw_value)
            .map(|h| h.trace_id)
            .ok(),
        Some(header.trace_id.clone())
    );

    let mut g = c.benchmark_group("sw8");
    g.bench_function("encode/skytrace", |b| {
        b.iter(|| black_box(&header).encode())
    });
    g.bench_function("encode/skywalking", |b| {
        b.iter(|| {
            encode_propagation(
                black_box(&sw_ctx),
                black_box(&header.parent_endpoint),
                black_box(&header.target_address),
            )
        })
    });
    g.bench_function("decode/skytrace", |b| {
        b.iter(|| skytrace::Sw8Header::decode(black_box(&value)))
    });
    g.bench_function("decode/skywalking", |b| {
        // `.ok()`: the crate's error type is large (clippy::result_large_err).
        b.iter(|| decode_propagation(black_box(&value)).ok())
    });

    // Injection into a HeaderMap from the current exit span, as an HTTP client does it.
    let tracer = skytrace::Tracer::new(
        &common::config().build().expect("config"),
        skytrace::DiscardReporter::new(),
    );
    let entry = tracer.entry_span(common::ENDPOINT, &());
    let _in_entry = entry.enter();
    let exit = skytrace::Span::exit(common::EXIT_OPERATION, common::PEER);
    let _in_exit = exit.enter();
    g.bench_function("inject/skytrace", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            skytrace::inject(&mut headers);
            headers
        })
    });
    let sw_exit = sw_ctx.create_exit_span(common::EXIT_OPERATION, common::PEER);
    g.bench_function("inject/skywalking", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            let sw8 = encode_propagation(&sw_ctx, common::ENDPOINT, common::PEER);
            if let Ok(value) = http::HeaderValue::try_from(sw8) {
                headers.insert("sw8", value);
            }
            headers
        })
    });
    g.finish();
    drop(sw_exit);
}

criterion_group!(benches, propagation);
criterion_main!(benches);
