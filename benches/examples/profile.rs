//! Runs one bench case in a loop, for a profiler: `valgrind --tool=callgrind` counts the
//! instructions (repeatable, whatever else the machine does). See docs/performance.md.
//!
//! ```sh
//! cargo build --release -p skytrace-benches --features profile --example profile
//! valgrind --tool=callgrind --toggle-collect='*profile_loop*' \
//!     target/release/examples/profile segment:skytrace 10000
//! ```
//!
//! Cases: `span:<name>` (a per-span case of `benches/span.rs`, e.g. `span:skytrace/sampled`;
//! collect with `--toggle-collect='*traced::*'` to count only the traced calls),
//! `segment:skytrace`, `segment:skywalking`, `entry:skytrace` (an entry span alone),
//! `entry:skytrace-global` (the same through the global tracer),
//! `axum:plain`, `axum:skytrace`, `axum:skytrace-global` (the layer finding the global
//! tracer), `axum:pass-layer` (a layer that does nothing): one request through the router, no
//! network,
//! `sw8:encode`, `sw8:decode`, `sw8:encode-skywalking`, `sw8:decode-skywalking`,
//! `reporter:grpc` (`n` realistic segments through the gRPC reporter to the in-process
//! collector; profile with `--separate-threads=yes` and read the `skytrace-reporter` thread),
//! `reporter:grpc-entry` (the same with one-span segments, as a hello-world request makes).

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::{Case, Peers};

/// Everything the profile counts happens inside this function.
#[inline(never)]
fn profile_loop(n: u64, f: &mut dyn FnMut()) {
    for _ in 0..n {
        f();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args
        .next()
        .unwrap_or_else(|| "span:skytrace/sampled".into());
    let n: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let peers = Peers::new();
    let tracer = peers.skytrace();
    let empty = http::HeaderMap::new();
    match case.as_str() {
        c if c.starts_with("span:") => {
            let name = &c["span:".len()..];
            let case = Case::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .unwrap_or_else(|| panic!("no per-span case {name:?}"));
            // Warm-up, then the measured calls (the root of each batch is outside `traced::*`).
            peers.run(case, 1_000);
            profile_loop(1, &mut || {
                black_box(peers.run(case, n));
            });
        }
        "segment:skytrace" => profile_loop(n, &mut || {
            black_box(common::skytrace_segment(tracer, &empty));
        }),
        "segment:skywalking" => profile_loop(n, &mut || {
            black_box(common::skywalking_segment(peers.skywalking(), None));
        }),
        "entry:skytrace" => profile_loop(n, &mut || {
            drop(black_box(tracer.entry_span(common::ENDPOINT, &empty)));
        }),
        "entry:skytrace-global" => {
            tracer.install_global();
            profile_loop(n, &mut || {
                drop(black_box(skytrace::Span::entry(common::ENDPOINT, &empty)));
            })
        }
        "axum:plain" | "axum:skytrace" | "axum:skytrace-global" | "axum:pass-layer" => {
            axum(&case, tracer, n)
        }
        "sw8:encode" => {
            let header = common::sample_sw8();
            profile_loop(n, &mut || {
                black_box(black_box(&header).encode());
            })
        }
        "sw8:encode-skywalking" | "sw8:decode-skywalking" => sw8_skywalking(&case, n),
        "reporter:grpc" => reporter(n, false),
        "reporter:grpc-entry" => reporter(n, true),
        "sw8:decode" => {
            let value = common::sample_sw8().encode();
            profile_loop(n, &mut || {
                let _ = black_box(skytrace::Sw8Header::decode(black_box(&value)));
            })
        }
        other => panic!("unknown case {other:?}"),
    }
}

/// `n` requests through the hello-world router, called as a tower service (no network).
fn axum(case: &str, tracer: &skytrace::Tracer, n: u64) {
    use axum::routing::get;
    use tower_service::Service as _;

    let mut app = axum::Router::new().route("/hello", get(|| async { "Hello, World!" }));
    if case == "axum:skytrace" {
        app = app.layer(skytrace::integrations::axum::SkytraceLayer::with_tracer(
            tracer.clone(),
        ));
    }
    if case == "axum:skytrace-global" {
        // The usual set-up: `skytrace::init` installs the tracer, the layer finds it per request.
        tracer.install_global();
        app = app.layer(skytrace::integrations::axum::SkytraceLayer::new());
    }
    if case == "axum:pass-layer" {
        app = app.layer(common::PassLayer);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let request = || {
        http::Request::get("/hello")
            .header(http::header::HOST, "127.0.0.1:8080")
            .body(axum::body::Body::empty())
            .expect("request")
    };
    rt.block_on(async {
        for _ in 0..1_000 {
            black_box(app.call(request()).await.expect("response"));
        }
    });
    profile_loop(n, &mut || {
        rt.block_on(async {
            black_box(app.call(request()).await.expect("response"));
        });
    });
}

fn sw8_skywalking(case: &str, n: u64) {
    use skywalking::trace::propagation::{
        decoder::decode_propagation, encoder::encode_propagation,
    };

    let header = common::sample_sw8();
    let value = header.encode();
    let tracer = skywalking::trace::tracer::Tracer::new(
        header.parent_service.clone(),
        header.parent_service_instance.clone(),
        (),
    );
    let mut ctx = tracer.create_trace_context();
    let _entry = ctx.create_entry_span("entry");
    if case == "sw8:encode-skywalking" {
        profile_loop(n, &mut || {
            black_box(encode_propagation(
                black_box(&ctx),
                &header.parent_endpoint,
                &header.target_address,
            ));
        });
    } else {
        profile_loop(n, &mut || {
            let _ = black_box(decode_propagation(black_box(&value)).ok());
        });
    }
}

/// `n` realistic segments recorded, then delivered by the gRPC reporter to the in-process
/// collector.
fn reporter(n: u64, entry_only: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-collector")
        .enable_all()
        .build()
        .expect("collector runtime");
    let collector = rt
        .block_on(skytrace_collector::Collector::start())
        .expect("collector");
    let config = common::config()
        .backend_services(collector.addr().to_string())
        .queue_size(n as usize + 1)
        .build()
        .expect("config");
    let tracer = skytrace::Tracer::new(
        &config,
        skytrace::GrpcReporter::start(&config).expect("reporter"),
    );
    while !tracer.stats().connected {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let empty = http::HeaderMap::new();
    profile_loop(n, &mut || {
        if entry_only {
            // What a hello-world request through `SkytraceLayer` reports: one entry span with
            // the HTTP attributes.
            let span = tracer.entry_span("GET:/hello", &empty);
            span.set_layer(skytrace::SpanLayer::Http);
            span.set_component(skytrace::component::HTTP);
            span.add_tag("http.method", "GET");
            span.add_tag("url", "http://127.0.0.1:8080/hello");
            span.add_tag("status_code", "200");
            drop(black_box(span));
        } else {
            black_box(common::skytrace_segment(&tracer, &empty));
        }
    });
    let stats = tracer
        .reporter()
        .shutdown(std::time::Duration::from_secs(600));
    assert_eq!(stats.sent, n, "{stats:?}");
    rt.block_on(collector.shutdown());
}
