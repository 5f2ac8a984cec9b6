//! Runs one bench case in a loop, for a profiler: `valgrind --tool=callgrind` counts the
//! instructions (repeatable, whatever else the machine does). See docs/performance.md.
//!
//! ```sh
//! cargo build --release -p skytrace-benches --example profile
//! valgrind --tool=callgrind --toggle-collect='*profile_loop*' \
//!     target/release/examples/profile segment:skytrace 10000
//! ```
//!
//! Cases: `span:<name>` (a per-span case of `benches/span.rs`, e.g. `span:skytrace/sampled`;
//! collect with `--toggle-collect='*traced::*'` to count only the traced calls),
//! `segment:skytrace`, `segment:skywalking`, `entry:skytrace` (an entry span alone),
//! `axum:plain`, `axum:skytrace` (one request through the router, no network),
//! `sw8:encode`, `sw8:decode`.

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
        "axum:plain" | "axum:skytrace" => axum(&case, tracer, n),
        "sw8:encode" => {
            let header = common::sample_sw8();
            profile_loop(n, &mut || {
                black_box(black_box(&header).encode());
            })
        }
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
