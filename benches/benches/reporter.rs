//! The gRPC reporter, measured end to end against the in-process collector on loopback:
//!
//! - `reporter/throughput`: segments per second delivered (acknowledged by the collector), and
//!   CPU per 1,000 segments: the whole process, and split into the thread that records the
//!   segments, the reporter thread and the collector's threads.
//! - `reporter/outage_memory`: memory held while the collector is down and the service keeps
//!   recording at full speed. With `SW_AGENT_KEEP_TRACING=true` segments keep coming and must
//!   stop at the queue bound (`SW_AGENT_QUEUE_SIZE`); with the default (`false`) no trace starts
//!   once the reporter knows the backend is down. Each case runs in a child process of its own,
//!   so that its resident memory starts from a clean baseline.
//!
//! Prints its figures (this is not a criterion bench). `--measurement-time SECS` scales the run
//! lengths as it does for the criterion benches.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use skytrace::{GrpcReporter, Tracer};
use skytrace_collector::Collector;

use common::{Args, median};

/// Segments in the queue of the throughput run; the producer keeps it from overflowing.
const QUEUE: usize = 10_000;
/// Environment variable that makes this binary run one outage case and print one line.
const CHILD: &str = "SKYTRACE_BENCH_OUTAGE_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        outage_child(&spec);
        return;
    }
    let args = Args::parse();
    if args.wants("reporter/throughput") {
        throughput(&args);
    }
    if args.wants("reporter/outage_memory") {
        outage(&args);
    }
}

fn throughput(args: &Args) {
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
        .queue_size(QUEUE)
        .build()
        .expect("config");
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).expect("reporter"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tracer.stats().connected {
        assert!(Instant::now() < deadline, "reporter did not connect");
        std::thread::sleep(Duration::from_millis(10));
    }

    let empty = http::HeaderMap::new();
    let per_round = if args.bench {
        // ~2 s per round on the reference machine at full length.
        (args.duration(Duration::from_secs(2)).as_secs_f64() * 40_000.0) as u64
    } else {
        2_000
    }
    .max(1_000);
    // Warm-up: connections, allocator, the collector's storage.
    produce_and_wait(&tracer, &empty, 2_000);
    collector.clear();

    let mut rates = Vec::new();
    let mut cpu = Vec::new();
    let mut split = Vec::new();
    for _ in 0..args.rounds(5) {
        collector.clear();
        let before = tracer.stats();
        let process0 = common::process_cpu();
        let main0 = common::current_thread_cpu();
        let reporter0 = common::threads_cpu("skytrace-report");
        let collector0 = common::threads_cpu("bench-collector");
        let start = Instant::now();
        produce_and_wait(&tracer, &empty, per_round);
        let wall = start.elapsed();
        let after = tracer.stats();
        let delivered = after.sent - before.sent;
        assert_eq!(
            after.dropped, before.dropped,
            "the producer must not overflow the queue"
        );
        assert_eq!(delivered, per_round, "every segment is acknowledged");
        let per_k = |d: Duration| d.as_secs_f64() * 1e3 / (per_round as f64 / 1_000.0);
        rates.push(delivered as f64 / wall.as_secs_f64());
        cpu.push(per_k(common::process_cpu() - process0));
        split.push([
            per_k(common::current_thread_cpu() - main0),
            per_k(common::threads_cpu("skytrace-report") - reporter0),
            per_k(common::threads_cpu("bench-collector") - collector0),
        ]);
    }
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    collector_rt.block_on(collector.shutdown());

    let col = |i: usize| median(&mut split.iter().map(|s| s[i]).collect::<Vec<_>>());
    println!(
        "reporter/throughput (gRPC to the in-process collector on loopback; median of {} rounds of {per_round} segments of 12 spans)",
        rates.len()
    );
    println!(
        "  delivered:                 {:>10.0} segments/s",
        median(&mut rates)
    );
    println!(
        "  CPU per 1,000 segments:    {:>10.2} ms  whole process (recording + reporter + collector)",
        median(&mut cpu)
    );
    println!(
        "    recording thread:        {:>10.2} ms  (making the segments, encoding them, queueing the bytes)",
        col(0)
    );
    println!(
        "    skytrace-reporter thread:{:>10.2} ms  (gRPC client: batches, HTTP/2, socket)",
        col(1)
    );
    println!(
        "    collector threads:       {:>10.2} ms  (gRPC server, decoding, storing; not the agent's cost)",
        col(2)
    );
    println!(
        "  reporter totals: sent {} dropped {} failed {}",
        stats.sent, stats.dropped, stats.failed
    );
}

/// Records `n` realistic segments as fast as the queue takes them without dropping any, then
/// waits until the reporter has delivered them all.
fn produce_and_wait(tracer: &Tracer, empty: &http::HeaderMap, n: u64) {
    let target = tracer.stats().sent + n;
    let mut produced = 0;
    while produced < n {
        if (tracer.stats().queued as usize) < QUEUE - 600 {
            let batch = (n - produced).min(500);
            for _ in 0..batch {
                std::hint::black_box(common::skytrace_segment(tracer, empty));
            }
            produced += batch;
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while tracer.stats().sent < target {
        assert!(
            Instant::now() < deadline,
            "segments not delivered in 60 s: {:?}",
            tracer.stats()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn outage(args: &Args) {
    let secs = args.duration(Duration::from_secs(4)).as_secs_f64().max(0.2);
    println!(
        "reporter/outage_memory (collector down, recording at full speed for {secs:.1} s; resident memory of a fresh process)"
    );
    println!(
        "  {:<26} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>12}",
        "case", "queue", "RSS start", "RSS 25%", "RSS 50%", "RSS end", "queued", "dropped"
    );
    for (keep_tracing, queue) in [(true, 10_000), (true, 1_000), (false, 10_000)] {
        let exe = std::env::current_exe().expect("current exe");
        let out = std::process::Command::new(exe)
            .env(CHILD, format!("{keep_tracing},{queue},{secs}"))
            .output()
            .expect("run the outage child");
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            panic!("outage child failed: {}", out.status);
        }
        print!("{text}");
    }
    println!("  (plateau: RSS at the end within 5% of RSS at half time, and queued = queue bound)");
}

/// One outage case, in a fresh process: prints one line of the table.
fn outage_child(spec: &str) {
    let mut parts = spec.split(',');
    let keep_tracing: bool = parts.next().and_then(|v| v.parse().ok()).unwrap_or(true);
    let queue: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let secs: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    let config = common::config()
        .backend_services(unused_addr().to_string())
        .keep_tracing(keep_tracing)
        .queue_size(queue)
        .build()
        .expect("config");
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).expect("reporter"));
    let empty = http::HeaderMap::new();
    // Let the process settle (reporter thread and runtime up) before the baseline.
    std::thread::sleep(Duration::from_millis(50));
    let start_rss = common::rss_bytes();
    let start = Instant::now();
    let run = Duration::from_secs_f64(secs);
    let mut samples = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut recorded = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= next_sample {
            samples.push((elapsed, common::rss_bytes()));
            next_sample += run / 20;
        }
        if elapsed >= run {
            break;
        }
        for _ in 0..100 {
            std::hint::black_box(common::skytrace_segment(&tracer, &empty));
        }
        recorded += 100;
    }
    let stats = tracer.stats();
    let at = |fraction: f64| {
        samples
            .iter()
            .find(|(t, _)| t.as_secs_f64() >= secs * fraction)
            .map_or(0, |(_, rss)| *rss)
    };
    let end = samples.last().map_or(0, |(_, rss)| *rss);
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    let name = format!("keep_tracing={keep_tracing}");
    let half = at(0.5);
    let plateau = end as f64 <= half as f64 * 1.05;
    println!(
        "  {name:<26} {queue:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>12}  {}, {recorded} entry spans made{}",
        mib(start_rss),
        mib(at(0.25)),
        mib(half),
        mib(end),
        stats.queued,
        stats.dropped,
        if plateau { "plateau" } else { "GROWING" },
        if keep_tracing && stats.queued > 0 {
            format!(
                ", ~{:.1} KiB held per queued segment",
                (end.saturating_sub(start_rss)) as f64 / 1024.0 / stats.queued as f64
            )
        } else {
            String::new()
        },
    );
    // Don't wait for delivery: the backend is down. Stop at once.
    let _ = tracer.reporter().shutdown(Duration::from_millis(1));
}

/// A loopback address nobody listens on (the port was free a moment ago).
fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr")
}
