//! The gRPC reporter facing a backend that fails: it backs off instead of storming it, and says
//! the truth about being connected. Over real gRPC on loopback; each test counts what the
//! backend saw over a fixed window (counts, not timings).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for, eventually, grpc_tracer};
use tokio::net::TcpListener;

/// How long each test watches the backend.
const WINDOW: Duration = Duration::from_secs(3);

/// A listener that accepts TCP connections and closes each at once (a load balancer in front of
/// a dead OAP), counting them.
async fn accept_and_close(bind: &str) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (addr, count)
}

/// A listener that accepts TCP connections and never answers (a black hole). Counts the
/// connections accepted, and those the client has closed since.
async fn black_hole() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    use tokio::io::AsyncReadExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (seen, gone) = (Arc::clone(&accepted), Arc::clone(&closed));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            let gone = Arc::clone(&gone);
            tokio::spawn(async move {
                // Reads what the client sends (and never answers) until it hangs up.
                let mut buf = vec![0; 64 * 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                gone.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    (addr, accepted, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_accepts_and_closes_is_not_stormed() {
    let (addr, connections) = accept_and_close("127.0.0.1:0").await;
    let tracer = grpc_tracer(config_for(addr));
    tokio::time::sleep(WINDOW).await;
    let seen = connections.load(Ordering::Relaxed);
    // Back-off from 0.5 s growing 1.6× (±20 %): attempts near 0, 0.5, 1.3, 2.6 s. Today's
    // reporter reconnected at once after every accepted connection: hundreds a second.
    assert!((1..=8).contains(&seen), "{seen} connections in {WINDOW:?}");
    assert!(!tracer.stats().connected);
    tracer.reporter().shutdown(Duration::from_secs(1));
}

/// A connection that opens (TCP and the HTTP/2 preface) but fails its first call does not
/// start the back-off over: only an answered call does. Over 6 s, attempts near 0, 0.5, 1.3,
/// 2.6 and 4.6 s (each delay ±20 %) make at most 5 connections; a back-off started over on
/// every connection retries every 0.4–0.6 s: 10 or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_open_but_fail_their_calls_keep_backing_off() {
    const LONGER: Duration = Duration::from_secs(6);
    let (addr, connections) = accept_and_close("127.0.0.1:0").await;
    let tracer = grpc_tracer(config_for(addr));
    tokio::time::sleep(LONGER).await;
    let seen = connections.load(Ordering::Relaxed);
    assert!((3..=7).contains(&seen), "{seen} connections in {LONGER:?}");
    tracer.reporter().shutdown(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_backs_off_to_the_maximum_at_once() {
    let collector = Collector::builder()
        .require_token("right")
        .start()
        .await
        .unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).authentication("wrong"));
    assert!(eventually(WAIT, || collector.received().rejected >= 1).await);
    tokio::time::sleep(WINDOW).await;
    let received = collector.received();
    // One refused call, then the longest back-off: no second call within the window.
    assert!(
        received.rejected <= 2,
        "{} calls refused",
        received.rejected
    );
    assert!(collector.connections() <= 2, "{}", collector.connections());
    assert!(!tracer.stats().connected);
    assert!(!tracer.reporter().is_available());
    tracer.reporter().shutdown(Duration::from_secs(1));
}

async fn answering(code: tonic::Code) {
    let collector = Collector::builder().fail_calls(code).start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).keep_tracing(true));
    // Traffic all along: each segment is a reason to call again.
    let busy = {
        let tracer = tracer.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                drop(tracer.entry_span("job", &()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(WINDOW).await;
    let received = collector.received();
    let connections = collector.connections();
    assert!(received.failed_calls >= 1, "{code:?}");
    // Each receiver's calls back off on their own: at most a handful each in the window
    // (attempts near 0, 0.5, 1.3, 2.6 s), however many signals share the connection.
    for (service, calls) in &received.failed_by_service {
        assert!(
            (1..=8).contains(calls),
            "{code:?}: {calls} calls of {service} in {WINDOW:?}"
        );
    }
    // An error status is an answer: the connection is not dropped for it.
    assert_eq!(connections, 1, "{code:?}: {connections} connections");
    assert!(!tracer.stats().connected, "{code:?}");
    busy.await.unwrap();
    tracer.reporter().shutdown(Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oap_answering_internal_errors_is_not_stormed() {
    answering(tonic::Code::Internal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oap_answering_unavailable_is_not_stormed() {
    answering(tonic::Code::Unavailable).await;
}

/// While the segment receiver fails and new traces are still recorded (`keep_tracing`), a
/// queued segment is the next call: no empty probe goes before it (each would fail too, and
/// grow the back-off the segment waits out). Each segment is made just after the call before
/// it failed, so it is queued before the back-off ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_segment_is_the_probe_while_the_receiver_fails() {
    const SEGMENTS: &str = "skywalking.v3.TraceSegmentReportService";
    let collector = Collector::builder()
        .fail_service(SEGMENTS, tonic::Code::Internal)
        .start()
        .await
        .unwrap();
    let calls = || {
        collector
            .received()
            .failed_by_service
            .get(SEGMENTS)
            .copied()
            .unwrap_or(0)
    };
    let tracer = grpc_tracer(config_for(collector.addr()).keep_tracing(true));
    // The reporter's first call, an empty probe, has failed.
    assert!(eventually(WAIT, || calls() >= 1).await);
    let mut before = calls();
    // Five rounds: an empty probe going first by chance (one in two) slips through all of them
    // one time in 32.
    for n in 1..=5u64 {
        drop(tracer.entry_span(format!("GET:/{n}"), &()));
        assert!(
            eventually(WAIT, || tracer.stats().failed >= n).await,
            "segment {n}: {:?}",
            tracer.stats()
        );
        let after = calls();
        assert_eq!(
            after - before,
            1,
            "calls for segment {n}: {after} - {before}"
        );
        before = after;
    }
    tracer.reporter().shutdown(Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_backends_cost_a_bounded_number_of_attempts() {
    // Every address of 127.0.0.0/8 reaches a listener bound to 0.0.0.0: 10,000 distinct
    // backends, each accepting and closing, all counted in one place.
    let (addr, connections) = accept_and_close("0.0.0.0:0").await;
    let port = addr.port();
    let backends: Vec<String> = (0..10_000u32)
        .map(|i| format!("127.1.{}.{}:{port}", i / 250, i % 250 + 1))
        .collect();
    let first: SocketAddr = backends[0].parse().unwrap();
    let tracer = grpc_tracer(config_for(first).backend_services(backends.join(",")));
    tokio::time::sleep(WINDOW).await;
    let seen = connections.load(Ordering::Relaxed);
    // At most 10 attempts a second overall, whatever the number of backends.
    assert!((1..=40).contains(&seen), "{seen} connections in {WINDOW:?}");
    tracer.reporter().shutdown(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_at_start_stops_new_traces_and_is_never_connected() {
    let (addr, accepted, closed) = black_hole().await;
    let tracer = grpc_tracer(config_for(addr));
    let mut connected_once = false;
    let unavailable = eventually(WAIT, || {
        connected_once |= tracer.stats().connected;
        !tracer.reporter().is_available()
    })
    .await;
    assert!(unavailable, "a backend that never answers stops new traces");
    // New traces stopped while the first call was still waiting for its answer (2 s), not
    // once it gave up (its 10 s timeout, after which its connection is closed): a black hole
    // at start no longer costs the service 10 s of traces recorded to be dropped.
    assert_eq!(accepted.load(Ordering::Relaxed), 1);
    assert_eq!(
        closed.load(Ordering::Relaxed),
        0,
        "the first call had given up"
    );
    assert!(!tracer.entry_span("while-black-holed", &()).is_recording());
    for _ in 0..50 {
        connected_once |= tracer.stats().connected;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !connected_once,
        "a backend that never answered is not connected"
    );
    tracer.reporter().shutdown(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_the_longest_timeout_returns_and_stops() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    drop(tracer.entry_span("job", &()));
    let stats = tracer.reporter().shutdown(Duration::MAX);
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert!(!stats.connected, "{stats:?}");
    assert!(!tracer.stats().connected);
    assert!(!tracer.reporter().is_available());
    // A second shutdown is harmless.
    tracer.reporter().shutdown(Duration::MAX);
}

/// Before/after figures for the closing note: connections per second and CPU of an idle service
/// whose backend refuses its token, and of one facing a listener that accepts and closes.
/// `cargo test -p skytrace-tests --test reporter_backoff -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_idle_reconnects_and_cpu() {
    const SECONDS: u64 = 10;
    let refusing = Collector::builder()
        .require_token("right")
        .start()
        .await
        .unwrap();
    let tracer = grpc_tracer(config_for(refusing.addr()).authentication("wrong"));
    let (before, thread_before) = (process_cpu(), reporter_cpu());
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    let (cpu, thread) = (process_cpu() - before, reporter_cpu() - thread_before);
    println!(
        "wrong token: {:.1} connections/s, {:.1} calls/s, process CPU {:.1} % of a core \
         (collector included), reporter thread {:.1} %",
        refusing.connections() as f64 / SECONDS as f64,
        refusing.received().rejected as f64 / SECONDS as f64,
        cpu.as_secs_f64() * 100.0 / SECONDS as f64,
        thread.as_secs_f64() * 100.0 / SECONDS as f64,
    );
    tracer.reporter().shutdown(Duration::from_millis(100));
    drop(tracer);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (addr, connections) = accept_and_close("127.0.0.1:0").await;
    let tracer = grpc_tracer(config_for(addr));
    let (before, thread_before) = (process_cpu(), reporter_cpu());
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    let (cpu, thread) = (process_cpu() - before, reporter_cpu() - thread_before);
    println!(
        "accept-and-close: {:.1} connections/s, process CPU {:.1} % of a core, \
         reporter thread {:.1} %",
        connections.load(Ordering::Relaxed) as f64 / SECONDS as f64,
        cpu.as_secs_f64() * 100.0 / SECONDS as f64,
        thread.as_secs_f64() * 100.0 / SECONDS as f64,
    );
    tracer.reporter().shutdown(Duration::from_millis(100));
}

/// This process's user + system CPU time so far, from `/proc/self/stat` (Linux; ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time of this process's reporter threads (`skytrace-report…`), from their `schedstat`.
fn reporter_cpu() -> Duration {
    let mut cpu = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("skytrace-report") {
            let schedstat =
                std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let ns = schedstat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok());
            cpu += Duration::from_nanos(ns.unwrap_or(0));
        }
    }
    cpu
}
