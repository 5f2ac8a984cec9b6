//! A long Kafka outage under load: the broker is stopped while the service goes on serving
//! (tens of thousands of requests, each a segment and a log record, traced all along with
//! `SW_AGENT_KEEP_TRACING`). The queues are bounded, so the process's memory stays flat once
//! they are full, what does not fit is dropped and counted, and once the broker is back on the
//! same address delivery resumes. A real broker (tansu) on loopback; the process's resident
//! memory read from `/proc/self/status` (alone in its test binary: no other test's memory).

use std::time::Duration;

use skytrace::integrations::log::SkyWalkingLogger;
use skytrace::{Config, ReporterKind, Span};
use skytrace_proto::v3::{LogData, SegmentObject};
use skytrace_tests::kafka::{Broker, value};
use skytrace_tests::{Quiet, own_rss_bytes};
use skytrace_tests::{WAIT, eventually};

const TOPICS: [&str; 4] = [
    "skywalking-segments",
    "skywalking-meters",
    "skywalking-logs",
    "skywalking-managements",
];

/// Requests per round; the queues hold 10,000 segments and 10,000 log records.
const ROUND: usize = 20_000;

/// `n` requests as a service serves them: an entry span with a tag and an exit span in it, and
/// a log record in the trace.
fn serve(round: usize, n: usize) {
    for i in 0..n {
        let entry = Span::root_entry(format!("GET:/outage/{}", i % 50));
        let _in = entry.enter();
        entry.add_tag("http.method", "GET");
        entry.add_tag(
            "url",
            format!("http://svc/outage/{round}/{i}?q=some-query-text"),
        );
        {
            let exit = Span::exit("SELECT orders", "db:5432");
            exit.add_tag("db.statement", "SELECT * FROM orders WHERE id = $1");
        }
        log::warn!(target: "kafka-outage", "round {round} request {i}: slow downstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_keeps_memory_flat_counts_drops_and_delivery_resumes() {
    let mut broker = Broker::start().await;
    broker.create_topics(&TOPICS, 2).await;
    SkyWalkingLogger::new(Quiet)
        .init(log::LevelFilter::Info)
        .unwrap();
    let config = Config::builder()
        .service_name("outage-svc")
        .instance_name("outage-svc-1")
        .reporter(ReporterKind::Kafka)
        .kafka_bootstrap_servers(broker.addr())
        .keep_tracing(true)
        .heartbeat_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let tracer = guard.tracer().unwrap().clone();
    assert!(
        eventually(WAIT, || tracer.reporter().is_available()).await,
        "{:?}",
        tracer.stats()
    );

    let port = broker.port();
    broker.stop();
    assert!(
        eventually(WAIT, || !tracer.stats().connected).await,
        "{:?}",
        tracer.stats()
    );

    // The first round fills the queues (and the allocator's pools); five more rounds of the
    // same load must not grow the process by what they carry (~100,000 segments and records,
    // well over 100 MB encoded).
    serve(0, ROUND);
    let before = own_rss_bytes();
    let logs_before = skytrace::logs::stats();
    for round in 1..=5 {
        serve(round, ROUND);
    }
    let after = own_rss_bytes();
    let stats = tracer.stats();
    let logs = skytrace::logs::stats();
    let grown = after.saturating_sub(before);
    println!("RSS {before} -> {after} bytes over five rounds; {stats:?}; logs {logs:?}");
    assert!(
        grown < 32 * 1024 * 1024,
        "RSS grew {grown} bytes over five rounds ({before} -> {after}): {stats:?}"
    );
    // The segments: at most a queue's worth waits (and one batch of 500 may be in a call);
    // every other one is counted, dropped (no room) or failed (its call failed).
    assert!(stats.queued <= 10_000, "{stats:?}");
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(
        stats.dropped + stats.failed >= (6 * ROUND - 10_000 - 500) as u64,
        "every segment that did not fit is counted: {stats:?}"
    );
    // The log records too.
    assert!(
        logs.dropped - logs_before.dropped >= (5 * ROUND) as u64 - 10_000,
        "log records dropped while the broker was away: {logs_before:?} -> {logs:?}"
    );

    // Back on the same address: delivery resumes, logs and segments.
    let broker = Broker::start_on(port).await;
    broker.create_topics(&TOPICS, 2).await;
    assert!(
        eventually(WAIT, || tracer.reporter().is_available()).await,
        "{:?}",
        tracer.stats()
    );
    // The queue comes back full of what waited through the outage (10,000): the first call
    // after it can succeed before any of that is drained, and a segment finished then finds
    // no room (dropped and counted, as it should be). So the new one is made once there is.
    assert!(
        eventually(WAIT, || tracer.stats().queued < 10_000).await,
        "the queue never drained: {:?}",
        tracer.stats()
    );
    let sent_before = tracer.stats().sent;
    drop(Span::root_entry("GET:/after-outage"));
    let segments = broker
        .wait_for("skywalking-segments", |r| {
            r.iter().any(|(_, x)| {
                value::<SegmentObject>(x).spans[0].operation_name == "GET:/after-outage"
            })
        })
        .await;
    assert!(
        segments.iter().any(|(_, x)| {
            value::<SegmentObject>(x).spans[0].operation_name == "GET:/after-outage"
        }),
        "no segment after the restart: {:?}",
        tracer.stats()
    );
    // The log queue comes back full of what was queued during the outage: a record logged
    // before it drains is dropped (and counted), as it should be. So one is logged each round
    // until one arrives.
    let after = |records: &[(i32, rskafka::record::Record)]| {
        records.iter().any(|(_, x)| {
            value::<LogData>(x)
                .body
                .and_then(|b| b.content)
                .is_some_and(|c| format!("{c:?}").contains("after the outage"))
        })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut attempt = 0;
    loop {
        attempt += 1;
        log::warn!(target: "kafka-outage", "after the outage ({attempt})");
        tokio::time::sleep(Duration::from_millis(500)).await;
        if after(&broker.read_all("skywalking-logs").await) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log record after the restart ({attempt} logged): {:?}",
            skytrace::logs::stats()
        );
    }
    assert!(tracer.stats().sent > sent_before, "{:?}", tracer.stats());
    guard.shutdown(Duration::from_secs(5));
}
