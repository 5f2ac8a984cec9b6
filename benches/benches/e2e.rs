//! End to end: an axum hello-world service with and without skytrace's axum layer
//! (`skytrace::integrations::axum::SkytraceLayer`), driven on loopback by an in-process load
//! generator (hyper HTTP/1.1 clients on keep-alive connections, each sending its next request
//! when the last response arrived). Reports requests/s and latency percentiles.
//!
//! Cases, run in turns (A B C D, B C D A, …) so that drift on a shared machine hits them alike:
//! - `plain`: no layer;
//! - `pass-layer`: a layer that only passes requests on (`common::PassLayer`): what axum's
//!   `Router::layer` costs per request whatever the layer does;
//! - `skytrace+discard`: the layer, with a reporter that discards (the instrumentation alone);
//! - `skytrace+grpc`: the layer, with the gRPC reporter delivering every segment to the
//!   in-process collector (the whole agent; the collector shares the machine, which OAP would
//!   not).
//!
//! Server, load generator, reporter and collector share the machine's cores, so req/s is what
//! the whole box does: the server's own CPU per request is printed too, the overhead figure that
//! the load generator's CPU does not dilute.
//!
//! Prints its figures (this is not a criterion bench). `--measurement-time SECS` scales the
//! length of each round as it does for the criterion benches.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace::{GrpcReporter, Tracer};
use skytrace_collector::Collector;

use common::{Args, median};

/// Concurrent keep-alive connections of the load generator.
const CONNECTIONS: usize = 32;
const SERVER_THREADS: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Plain,
    PassLayer,
    Discard,
    Grpc,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::PassLayer => "pass-layer",
            Case::Discard => "skytrace+discard",
            Case::Grpc => "skytrace+grpc",
        }
    }
}

struct Round {
    requests: u64,
    wall: Duration,
    latencies_ns: Vec<u64>,
    server_cpu: Duration,
    reporter_cpu: Duration,
}

fn main() {
    let args = Args::parse();
    if !args.wants("e2e/axum_hello") {
        return;
    }
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_THREADS)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-load")
        .enable_all()
        .build()
        .expect("load runtime");
    let collector_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-collector")
        .enable_all()
        .build()
        .expect("collector runtime");
    let collector = collector_rt
        .block_on(Collector::start())
        .expect("collector starts");

    let config = common::config()
        .backend_services(collector.addr().to_string())
        .build()
        .expect("config");
    let discard = Tracer::new(&config, skytrace::DiscardReporter::new());
    let grpc = Tracer::new(&config, GrpcReporter::start(&config).expect("reporter"));

    let hello = || Router::new().route("/hello", get(|| async { "Hello, World!" }));
    let apps = [
        (Case::Plain, hello()),
        (Case::PassLayer, hello().layer(common::PassLayer)),
        (
            Case::Discard,
            hello().layer(SkytraceLayer::with_tracer(discard.clone())),
        ),
        (
            Case::Grpc,
            hello().layer(SkytraceLayer::with_tracer(grpc.clone())),
        ),
    ];
    let servers: Vec<(Case, SocketAddr)> = apps
        .into_iter()
        .map(|(case, app)| {
            let listener = server_rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            server_rt.spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            (case, addr)
        })
        .collect();

    let round = args.duration(Duration::from_secs(2));
    // Warm-up: every server, connections, allocator.
    for (_, addr) in &servers {
        load(
            &load_rt,
            *addr,
            Duration::from_millis(if args.bench { 300 } else { 50 }),
        );
    }
    let mut results: Vec<(Case, Vec<Round>)> = servers
        .iter()
        .map(|(case, _)| (*case, Vec::new()))
        .collect();
    for turn in 0..args.rounds(5) {
        // Each round starts with another case: whatever the one before leaves behind (the
        // collector still decoding the last batch, freed memory) does not always hit the same.
        for k in 0..servers.len() {
            let i = (k + turn) % servers.len();
            let (case, addr) = &servers[i];
            if *case == Case::Grpc {
                collector.clear();
            }
            let server0 = common::threads_cpu("bench-server");
            let reporter0 = common::threads_cpu("skytrace-report");
            let (requests, wall, latencies_ns) = load(&load_rt, *addr, round);
            results[i].1.push(Round {
                requests,
                wall,
                latencies_ns,
                server_cpu: common::threads_cpu("bench-server") - server0,
                reporter_cpu: common::threads_cpu("skytrace-report") - reporter0,
            });
            if *case == Case::Grpc {
                // Let the reporter catch up so the next case starts on a quiet machine.
                let deadline = Instant::now() + Duration::from_secs(10);
                while grpc.stats().queued > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    let stats = grpc.reporter().shutdown(Duration::from_secs(5));
    assert!(
        discard.stats().sent > 0 && stats.sent > 0,
        "the layer recorded nothing"
    );
    collector_rt.block_on(collector.shutdown());

    println!(
        "e2e/axum_hello ({CONNECTIONS} keep-alive connections, {SERVER_THREADS} server threads, 1 load thread; median of {} rounds of {:.1} s)",
        results[0].1.len(),
        round.as_secs_f64()
    );
    println!(
        "  {:<18} {:>10} {:>8} {:>9} {:>9} {:>9} {:>14} {:>14}",
        "case", "req/s", "vs plain", "p50", "p99", "p99.9", "server CPU/req", "reporter/req"
    );
    let mut plain_rps = f64::NAN;
    let mut plain_cpu = f64::NAN;
    for (case, rounds) in &results {
        let rps = median(
            &mut rounds
                .iter()
                .map(|r| r.requests as f64 / r.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let mut all: Vec<u64> = rounds
            .iter()
            .flat_map(|r| r.latencies_ns.iter().copied())
            .collect();
        all.sort_unstable();
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1e3
        };
        let cpu = median(
            &mut rounds
                .iter()
                .map(|r| r.server_cpu.as_secs_f64() * 1e6 / r.requests as f64)
                .collect::<Vec<_>>(),
        );
        let reporter = median(
            &mut rounds
                .iter()
                .map(|r| r.reporter_cpu.as_secs_f64() * 1e6 / r.requests as f64)
                .collect::<Vec<_>>(),
        );
        if *case == Case::Plain {
            plain_rps = rps;
            plain_cpu = cpu;
        }
        println!(
            "  {:<18} {:>10.0} {:>7.1}% {:>7.0}µs {:>7.0}µs {:>7.0}µs {:>8.2}µs {:>+4.0}% {:>11.2}µs",
            case.name(),
            rps,
            (rps / plain_rps - 1.0) * 100.0,
            pct(0.50),
            pct(0.99),
            pct(0.999),
            cpu,
            (cpu / plain_cpu - 1.0) * 100.0,
            if *case == Case::Grpc { reporter } else { 0.0 },
        );
    }
    println!(
        "  reporter: sent {} dropped {} failed {}",
        stats.sent, stats.dropped, stats.failed
    );
}

/// Runs the load generator against `addr` for `duration`: returns the requests completed, the
/// time taken and every request's latency.
fn load(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    duration: Duration,
) -> (u64, Duration, Vec<u64>) {
    rt.block_on(async move {
        let start = Instant::now();
        let deadline = start + duration;
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(connection(addr, deadline)))
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("load task"));
        }
        (latencies.len() as u64, start.elapsed(), latencies)
    })
}

/// One keep-alive connection sending `GET /hello` until `deadline`.
async fn connection(addr: SocketAddr, deadline: Instant) -> Vec<u64> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let driver = tokio::spawn(conn);
    let host: Arc<str> = addr.to_string().into();
    let mut latencies = Vec::with_capacity(64 * 1024);
    while Instant::now() < deadline {
        let request = http::Request::get("/hello")
            .header(http::header::HOST, &*host)
            .body(String::new())
            .expect("request");
        let sent = Instant::now();
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(request).await.expect("response");
        assert!(response.status().is_success());
        let body = response.into_body().collect().await.expect("body");
        std::hint::black_box(body);
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    drop(sender);
    let _ = driver.await;
    latencies
}
