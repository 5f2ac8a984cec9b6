//! Profiling a slow endpoint, end to end on loopback: an embedded collector stands in for OAP
//! and serves a trace-profiling task for `GET:/report` (slow requests of at least 50 ms, for a
//! few seconds); an axum service whose `/report` burns CPU in `render_report` is asked a few
//! times; the agent samples while the task runs, then sends the pprof of the slow requests.
//! The collector prints it per request: a tree of the functions the CPU was in.
//!
//! ```sh
//! cargo run -p skytrace-examples --example profiling
//! ```
//!
//! With a real OAP, create the task in its UI instead (Trace Profiling, endpoint
//! `GET:/report`) and run the service against it:
//! `SW_AGENT_COLLECTOR_BACKEND_SERVICES=oap:11800 cargo run -p skytrace-examples --example
//! profiling -- serve`.

use std::error::Error;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace_collector::{Collector, ProfileTaskSpec, render_profile};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let serve_forever = std::env::args().nth(1).as_deref() == Some("serve");
    let collector = if serve_forever {
        None
    } else {
        Some(
            Collector::builder()
                .profile_task(ProfileTaskSpec::new(
                    "GET:/report",
                    Duration::from_secs(4),
                    Duration::from_millis(50),
                ))
                .start()
                .await?,
        )
    };
    let mut config = skytrace::Config::builder()
        .service_name("report-service")
        .profile_task_interval(Duration::from_secs(1));
    if let Some(collector) = &collector {
        config = config.backend_services(collector.addr().to_string());
    }
    let config = config.env_os(|name| std::env::var_os(name))?.build()?;
    let agent = skytrace::init(config)?;

    let app = Router::new()
        .route("/report", get(report))
        .route("/ping", get(|| async { "pong" }))
        .layer(SkytraceLayer::new())
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind(if serve_forever {
        "127.0.0.1:3000"
    } else {
        "127.0.0.1:0"
    })
    .await?;
    let addr = listener.local_addr()?;
    if serve_forever {
        println!("listening on http://{addr}: `curl http://{addr}/report` is the slow one");
        axum::serve(listener, app).await?;
        return Ok(());
    }
    tokio::spawn(async move { axum::serve(listener, app).await });
    let Some(collector) = collector else {
        return Ok(());
    };
    // The agent asks for tasks at once; the task runs from then.
    collector
        .wait_for(Duration::from_secs(30), |r| {
            !r.profile_task_queries.is_empty()
        })
        .await;
    let client = reqwest::Client::builder().no_proxy().build()?;
    for path in ["/report", "/ping", "/report", "/report"] {
        let status = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await?
            .status();
        println!("GET {path} -> {status}");
    }
    println!("waiting for the task to end (its window, then 5 s for late requests)...");
    let arrived = collector
        .wait_for(Duration::from_secs(60), |r| !r.profile_reports.is_empty())
        .await;
    let report = collector.received().profile_reports.into_iter().next();
    let Some(profile) = report.filter(|_| arrived).and_then(|r| r.profile) else {
        return Err("no profile arrived (the sampler runs on Linux, x86_64 and aarch64)".into());
    };
    let tree = render_profile(&profile);
    print!("{tree}");
    agent.shutdown_async(Duration::from_secs(5)).await;
    // A smoke test too (.ci/run): the slow requests' profile names the function burning CPU.
    if !tree.contains("render_report") {
        return Err("the profile does not name render_report".into());
    }
    Ok(())
}

/// The slow endpoint: ~300 ms of CPU per request, on the request's own task (where its span
/// is current, so its samples carry its segment).
async fn report() -> String {
    format!("report {}", render_report(Duration::from_millis(300)))
}

/// Where the time goes.
#[inline(never)]
fn render_report(cpu: Duration) -> u64 {
    let started = std::time::Instant::now();
    let mut x = 1u64;
    while started.elapsed() < cpu {
        for _ in 0..100_000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}
