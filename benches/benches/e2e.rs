//! End to end: an axum hello-world service with and without skytrace's axum layer
//! (`skytrace::integrations::axum::SkytraceLayer`) at full load on loopback. Reports requests/s
//! (each case against the plain router in the same rotation), latency percentiles, and the
//! server's CPU per request.
//!
//! Cases, run in rotations (A B C D, B C D A, …) so that drift on a shared machine hits them
//! alike:
//! - `plain`: no layer;
//! - `pass-layer`: a layer that only passes requests on (`common::PassLayer`): what axum's
//!   `Router::layer` costs per request whatever the layer does;
//! - `skytrace+discard`: the layer, with a reporter that discards (the instrumentation alone);
//! - `skytrace+grpc`: the whole agent (`skytrace::init` with the defaults, `SkytraceLayer::new()`),
//!   the gRPC reporter delivering every segment to the collector, which counts them without
//!   decoding them;
//! - the peers (`e2e_peers.rs`): `skywalking+discard` (the official crate), `fastrace+discard`,
//!   and tower-http's `TraceLayer` over `tracing`: `tracing+registry` (a bare `Registry`),
//!   `bridge+discard` / `bridge+grpc` (skytrace's `SkyWalkingLayer` starting a trace per
//!   request), `otel+batch` (tracing-opentelemetry, the SDK's batch processor, discarding).
//!
//! `E2E_COLLECTOR=host:port` sends to a collector in another process (`E2E_COLLECTOR_SERVE=1`
//! runs one): `benches/e2e-callgrind.sh` does, so that every thread it counts is the service's.
//!
//! Placement: the server (one tokio worker) and skytrace's reporter thread — which runs inside
//! the service in production — are pinned to CPU 0; the load generator and the collector
//! (OAP's part, on other machines in production) to CPU 1. The server's core is then the limit,
//! and req/s is what it can do rather than how the scheduler shared two cores among five busy
//! threads (unpinned, the same build scattered from −1.5 % to −22 % between runs). The load
//! generator is `wrk` when it is installed (`apt-get install wrk`), else hyper clients in this
//! process (`SKYTRACE_E2E_LOAD=hyper` forces them); 32 keep-alive connections either way.
//!
//! Prints its figures (this is not a criterion bench). `--measurement-time SECS` scales the
//! length of each round as it does for the criterion benches; `e2e/axum_hello/<case>` as a
//! filter runs one case alone (for a profiler), and `E2E_SERVE=SECS` serves every case that
//! long without load, printing the addresses.

mod common;
mod e2e_peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use skytrace::Tracer;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace_collector::Collector;
use tracing::Dispatch;

use common::{Args, median};

/// Concurrent keep-alive connections of the load generator.
const CONNECTIONS: usize = 32;
/// Where things run: see the module documentation.
const SERVER_THREADS: usize = 1;
const SERVER_CPU: usize = 0;
const LOAD_CPU: usize = 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    Plain,
    PassLayer,
    Discard,
    Grpc,
    Skywalking,
    Fastrace,
    TracingRegistry,
    BridgeDiscard,
    BridgeGrpc,
    Otel,
}

impl Case {
    const ALL: [Case; 10] = [
        Case::Plain,
        Case::PassLayer,
        Case::Discard,
        Case::Grpc,
        Case::Skywalking,
        Case::Fastrace,
        Case::TracingRegistry,
        Case::BridgeDiscard,
        Case::BridgeGrpc,
        Case::Otel,
    ];

    /// No name is a part of another: a name selects its case alone.
    fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::PassLayer => "pass-layer",
            Case::Discard => "skytrace+discard",
            Case::Grpc => "skytrace+grpc",
            Case::Skywalking => "skywalking+discard",
            Case::Fastrace => "fastrace+discard",
            Case::TracingRegistry => "tracing+registry",
            Case::BridgeDiscard => "bridge+discard",
            Case::BridgeGrpc => "bridge+grpc",
            Case::Otel => "otel+batch",
        }
    }

    /// The whole agent (`skytrace::init`, gRPC to the collector) serves this case.
    fn whole_agent(self) -> bool {
        matches!(self, Case::Grpc | Case::BridgeGrpc)
    }
}

/// One case's run of one rotation.
struct Round {
    requests: u64,
    wall: Duration,
    /// p50, p99, p99.9 of this round, µs.
    latency_us: [f64; 3],
    server_cpu: Duration,
    reporter_cpu: Duration,
}

impl Round {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }
}

/// Who sends the requests.
enum Load {
    /// `wrk` (Debian/Ubuntu: `apt-get install wrk`), pinned to the load CPU: a load generator
    /// written in C needs far less CPU per request than the server, which is then the one
    /// limit, as "full load" means.
    Wrk { script: std::path::PathBuf },
    /// Without `wrk`: hyper clients in this process, on a runtime pinned to the load CPU. Per
    /// request they cost about as much CPU as the server, so both cores run near 100 % and the
    /// figure is less sharp (the table's last column shows it).
    InProcess(tokio::runtime::Runtime),
}

impl Load {
    fn pick() -> Load {
        let wanted = std::env::var("SKYTRACE_E2E_LOAD").unwrap_or_default();
        let has_wrk = wanted != "hyper"
            && std::process::Command::new("wrk")
                .arg("--version")
                .output()
                .is_ok();
        if has_wrk {
            // Prints what the bench reads in one line at the end of a run: requests, µs taken,
            // latency percentiles in µs, and the errors (non-2xx responses included).
            let script =
                std::env::temp_dir().join(format!("skytrace-e2e-{}.lua", std::process::id()));
            let lua = r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("skytrace-e2e %d %d %d %d %d %d\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.connect + e.read + e.write + e.status + e.timeout))
end
"#;
            if std::fs::write(&script, lua).is_ok() {
                return Load::Wrk { script };
            }
        }
        Load::InProcess(pinned_runtime("bench-load", 1, LOAD_CPU, None))
    }

    fn name(&self) -> &'static str {
        match self {
            Load::Wrk { .. } => "wrk -t1",
            Load::InProcess(_) => "in-process hyper clients (no wrk found)",
        }
    }

    /// Sends requests to `addr` for `duration`: requests done, time taken, p50/p99/p99.9 in µs.
    fn run(&self, addr: SocketAddr, duration: Duration) -> (u64, Duration, [f64; 3]) {
        match self {
            Load::Wrk { script } => wrk(script, addr, duration),
            Load::InProcess(rt) => {
                let (requests, wall, mut latencies) = load(rt, addr, duration);
                latencies.sort_unstable();
                let pct = |p: f64| {
                    latencies
                        .get(
                            ((latencies.len() as f64 * p) as usize)
                                .min(latencies.len().saturating_sub(1)),
                        )
                        .copied()
                        .unwrap_or(0) as f64
                        / 1e3
                };
                (requests, wall, [pct(0.50), pct(0.99), pct(0.999)])
            }
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Load::Wrk { script } = self {
            let _ = std::fs::remove_file(script);
        }
    }
}

fn main() {
    let args = Args::parse();
    if std::env::var_os("E2E_COLLECTOR_SERVE").is_some() {
        serve_collector();
    }
    let names = Case::ALL.map(|case| format!("e2e/axum_hello/{}", case.name()));
    if !names.iter().any(|name| args.wants(name)) {
        return;
    }
    let selected: Vec<Case> = Case::ALL
        .into_iter()
        .filter(|case| args.selects(&format!("e2e/axum_hello/{}", case.name())))
        .collect();
    // The reporter thread is spawned by this thread and inherits its CPU.
    let pinned = common::pin_current_thread(SERVER_CPU);
    let server_rt = pinned_runtime("bench-server", SERVER_THREADS, SERVER_CPU, None);
    let collector_rt = pinned_runtime("bench-collector", 1, LOAD_CPU, None);
    // Count-only: the collector reads and counts the segments but does not decode them, which
    // is OAP's work on its own machines, and here would take the load generator's CPU.
    // `E2E_COLLECTOR=host:port` sends to a collector in another process instead (for
    // callgrind: every thread of this process is then the service's).
    let external = std::env::var("E2E_COLLECTOR").ok();
    let collector = match external {
        Some(_) => None,
        None => Some(
            collector_rt
                .block_on(Collector::builder().count_only(true).start())
                .expect("collector starts"),
        ),
    };
    let backend = external.unwrap_or_else(|| {
        collector
            .as_ref()
            .map(|c| c.addr().to_string())
            .unwrap_or_default()
    });
    let config = || {
        common::config()
            .backend_services(backend.clone())
            .build()
            .expect("config")
    };
    let load = Load::pick();

    let discard = Tracer::new(&config(), skytrace::DiscardReporter::new());
    // The whole agent as a service starts it: `init` with the defaults, inside its runtime.
    let agent = selected.iter().any(|c| c.whole_agent()).then(|| {
        let _in = server_rt.enter();
        skytrace::init(config()).expect("init")
    });
    if selected.contains(&Case::Fastrace) {
        e2e_peers::install_fastrace();
    }
    let skywalking = skywalking::trace::tracer::Tracer::new(common::SERVICE, common::INSTANCE, ());
    let mut otel_provider = None;
    // The `tracing` cases' subscribers, each the default of its own server runtime's thread.
    let mut dispatch = |case: Case| match case {
        Case::TracingRegistry => Some(e2e_peers::registry_dispatch()),
        Case::BridgeDiscard => Some(e2e_peers::bridge_dispatch(Some(discard.clone()))),
        Case::BridgeGrpc => Some(e2e_peers::bridge_dispatch(None)),
        Case::Otel => {
            let (dispatch, provider) = e2e_peers::otel_dispatch();
            otel_provider = Some(provider);
            Some(dispatch)
        }
        _ => None,
    };
    let mut dispatches: Vec<(Case, Dispatch)> = Vec::new();
    for case in &selected {
        if let Some(d) = dispatch(*case) {
            dispatches.push((*case, d));
        }
    }
    // A `tracing` case served alone (callgrind): its subscriber is also the process's global
    // default, as in a service, so that the agent's own threads meet it too.
    if let [(_, only)] = dispatches.as_slice()
        && selected.len() == 1
    {
        let _ = tracing::dispatcher::set_global_default(only.clone());
    }

    let hello = || Router::new().route("/hello", get(|| async { "Hello, World!" }));
    let app = |case: Case| match case {
        Case::Plain => hello(),
        Case::PassLayer => hello().layer(common::PassLayer),
        Case::Discard => hello().layer(SkytraceLayer::with_tracer(discard.clone())),
        Case::Grpc => hello().layer(SkytraceLayer::new()),
        Case::Skywalking => hello().layer(e2e_peers::SkywalkingLayer(skywalking.clone())),
        Case::Fastrace => hello().layer(e2e_peers::FastraceLayer),
        Case::TracingRegistry | Case::BridgeDiscard | Case::BridgeGrpc | Case::Otel => {
            hello().layer(e2e_peers::trace_layer())
        }
    };
    // `e2e/axum_hello/skytrace+discard` (any part of it) runs that case alone, for a profiler.
    let mut tracing_rts = Vec::new();
    let servers: Vec<(Case, SocketAddr)> = selected
        .iter()
        .map(|&case| {
            let rt = match dispatches.iter().find(|(c, _)| *c == case) {
                Some((_, d)) => {
                    tracing_rts.push(pinned_runtime(
                        "bench-server",
                        SERVER_THREADS,
                        SERVER_CPU,
                        Some(d.clone()),
                    ));
                    tracing_rts.last().expect("just pushed")
                }
                None => &server_rt,
            };
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let app = app(case);
            rt.spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            (case, addr)
        })
        .collect();

    if let Ok(secs) = std::env::var("E2E_SERVE") {
        for (case, addr) in &servers {
            println!("{} http://{addr}/hello", case.name());
        }
        std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
        return;
    }
    // Rounds are short and many: on a shared machine the speed drifts by several per cent
    // within seconds, and what a case is compared with is the plain router's round of the same
    // rotation, seconds apart.
    let round = args.duration(Duration::from_secs(2));
    let round = match load {
        // wrk takes whole seconds.
        Load::Wrk { .. } => Duration::from_secs(round.as_secs_f64().round().max(1.0) as u64),
        Load::InProcess(_) => round,
    };
    // Warm-up: every server, connections, allocator.
    for (_, addr) in &servers {
        load.run(*addr, Duration::from_secs(1).min(round));
    }
    let mut results: Vec<(Case, Vec<Round>)> = servers
        .iter()
        .map(|(case, _)| (*case, Vec::new()))
        .collect();
    for turn in 0..args.rounds(12) {
        // Each rotation starts with another case: whatever the one before leaves behind (the
        // collector still decoding the last batch, freed memory) does not always hit the same.
        for k in 0..servers.len() {
            let i = (k + turn) % servers.len();
            let (case, addr) = &servers[i];
            if case.whole_agent()
                && let Some(collector) = &collector
            {
                collector.clear();
            }
            let server0 = common::threads_cpu("bench-server");
            let reporter0 = common::threads_cpu("skytrace-report");
            let (requests, wall, latency_us) = load.run(*addr, round);
            results[i].1.push(Round {
                requests,
                wall,
                latency_us,
                server_cpu: common::threads_cpu("bench-server") - server0,
                reporter_cpu: common::threads_cpu("skytrace-report") - reporter0,
            });
            if let Some(agent) = agent.as_ref().filter(|_| case.whole_agent()) {
                // Let the reporter catch up so the next case starts on a quiet machine.
                let deadline = Instant::now() + Duration::from_secs(10);
                while agent.stats().queued > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    let stats = agent
        .map(|agent| agent.shutdown(Duration::from_secs(5)))
        .unwrap_or_default();
    let ran = |case| servers.iter().any(|(c, _)| *c == case);
    assert!(
        (discard.stats().sent > 0 || !(ran(Case::Discard) || ran(Case::BridgeDiscard)))
            && (stats.sent > 0 || !(ran(Case::Grpc) || ran(Case::BridgeGrpc))),
        "the layer recorded nothing"
    );
    if let Some(provider) = otel_provider {
        let _ = provider.shutdown_with_timeout(e2e_peers::SHUTDOWN);
    }
    if let Some(collector) = collector {
        collector_rt.block_on(collector.shutdown());
    }

    println!(
        "e2e/axum_hello (load: {}, 32 connections; server: {SERVER_THREADS} tokio worker; {}; {} rotations of {:.1} s per case)",
        load.name(),
        if pinned {
            "server + reporter on CPU 0, load + collector on CPU 1"
        } else {
            "not pinned"
        },
        results[0].1.len(),
        round.as_secs_f64()
    );
    println!(
        "  {:<18} {:>9} {:>20} {:>8} {:>8} {:>8} {:>16} {:>12} {:>6}",
        "case",
        "req/s",
        "vs plain (range)",
        "p50",
        "p99",
        "p99.9",
        "server CPU/req",
        "reporter/req",
        "busy"
    );
    let plain = results
        .iter()
        .find(|(case, _)| *case == Case::Plain)
        .map(|(_, rounds)| rounds);
    let plain_cpu =
        plain.map(|rounds| median(&mut rounds.iter().map(cpu_per_request).collect::<Vec<_>>()));
    for (case, rounds) in &results {
        let med = |f: &dyn Fn(&Round) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>());
        // Each round against the plain router's round of the same rotation.
        let mut ratios: Vec<f64> = match plain {
            Some(plain) => rounds
                .iter()
                .zip(plain)
                .map(|(r, p)| (r.rps() / p.rps() - 1.0) * 100.0)
                .collect(),
            None => Vec::new(),
        };
        let vs_plain = median(&mut ratios);
        let (low, high) = (
            ratios.first().copied().unwrap_or(f64::NAN),
            ratios.last().copied().unwrap_or(f64::NAN),
        );
        let cpu = med(&cpu_per_request);
        println!(
            "  {:<18} {:>9.0} {:>+6.1}% ({:>+5.1}…{:>+5.1}) {:>6.0}µs {:>6.0}µs {:>6.0}µs {:>7.2}µs {:>+6.1}% {:>10.2}µs {:>5.0}%",
            case.name(),
            med(&Round::rps),
            vs_plain,
            low,
            high,
            med(&|r| r.latency_us[0]),
            med(&|r| r.latency_us[1]),
            med(&|r| r.latency_us[2]),
            cpu,
            plain_cpu.map_or(f64::NAN, |p| (cpu / p - 1.0) * 100.0),
            if case.whole_agent() {
                med(&|r| r.reporter_cpu.as_secs_f64() * 1e6 / r.requests as f64)
            } else {
                0.0
            },
            // Near 100 %: the server's core was the limit.
            med(&|r| (r.server_cpu + r.reporter_cpu).as_secs_f64() / r.wall.as_secs_f64() * 100.0),
        );
    }
    println!(
        "  reporter: sent {} dropped {} failed {}",
        stats.sent, stats.dropped, stats.failed
    );
}

/// A tokio runtime of `workers` threads named `name`, each pinned to `cpu`, with `dispatch` as
/// each thread's default `tracing` subscriber when given.
fn pinned_runtime(
    name: &str,
    workers: usize,
    cpu: usize,
    dispatch: Option<Dispatch>,
) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .on_thread_start(move || {
            common::pin_current_thread(cpu);
            if let Some(dispatch) = &dispatch {
                // For the thread's life.
                std::mem::forget(tracing::dispatcher::set_default(dispatch));
            }
        })
        .enable_all()
        .build()
        .expect("runtime")
}

/// The server thread's CPU per request, µs (the reporter's is apart).
fn cpu_per_request(r: &Round) -> f64 {
    r.server_cpu.as_secs_f64() * 1e6 / r.requests as f64
}

/// One `wrk` run against `addr`, pinned to the load CPU.
fn wrk(
    script: &std::path::Path,
    addr: SocketAddr,
    duration: Duration,
) -> (u64, Duration, [f64; 3]) {
    use std::os::unix::process::CommandExt as _;
    let mut command = std::process::Command::new("wrk");
    command
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{}s", duration.as_secs()),
        ])
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/hello"));
    // SAFETY: only sched_setaffinity, a plain system call, runs in the child.
    unsafe {
        command.pre_exec(|| {
            common::set_affinity(LOAD_CPU);
            Ok(())
        });
    }
    let output = command.output().expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("skytrace-e2e "))
        .unwrap_or_else(|| panic!("wrk printed no summary: {text}"));
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(v.len() == 6, "wrk summary: {line}");
    assert!(v[5] == 0.0, "wrk saw {} errors", v[5]);
    (
        v[0] as u64,
        Duration::from_micros(v[1] as u64),
        [v[2], v[3], v[4]],
    )
}

/// Runs the in-process load generator against `addr` for `duration`: returns the requests
/// completed, the time taken and every request's latency in ns.
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

/// `E2E_COLLECTOR_SERVE=1`: a count-only collector alone, its address printed
/// (`collector host:port`), serving until the process is killed.
fn serve_collector() -> ! {
    use std::io::Write as _;
    let rt = pinned_runtime("bench-collector", 1, LOAD_CPU, None);
    let collector = rt
        .block_on(Collector::builder().count_only(true).start())
        .expect("collector starts");
    println!("collector {}", collector.addr());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
