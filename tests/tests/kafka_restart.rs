//! The Kafka reporter when the broker goes away and comes back: the service never waits on it,
//! what cannot be queued is dropped and counted (the queue is bounded: memory stays flat), new
//! traces pause while the broker is away, and delivery resumes once it is back. A real broker
//! (tansu) on loopback, stopped and restarted on the same port.

use std::time::Duration;

use skytrace::{Config, GrpcReporter, ReporterKind, Tracer};
use skytrace_proto::v3::SegmentObject;
use skytrace_tests::kafka::{Broker, value};
use skytrace_tests::{WAIT, eventually};

const TOPICS: [&str; 4] = [
    "skywalking-segments",
    "skywalking-meters",
    "skywalking-logs",
    "skywalking-managements",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_and_restarted_costs_the_service_nothing() {
    let mut broker = Broker::start().await;
    broker.create_topics(&TOPICS, 2).await;
    let config = Config::builder()
        .service_name("restart-svc")
        .instance_name("restart-svc-1")
        .reporter(ReporterKind::Kafka)
        .kafka_bootstrap_servers(broker.addr())
        .queue_size(100)
        .heartbeat_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    assert!(eventually(WAIT, || tracer.reporter().is_available()).await);
    for i in 0..10 {
        drop(tracer.entry_span(format!("GET:/before/{i}"), &()));
    }
    assert!(
        eventually(WAIT, || tracer.stats().sent == 10).await,
        "{:?}",
        tracer.stats()
    );

    // The broker goes away: the heartbeat's failure pauses new traces.
    let port = broker.port();
    broker.stop();
    assert!(
        eventually(WAIT, || !tracer.reporter().is_available()).await,
        "new traces never paused: {:?}",
        tracer.stats()
    );
    // Meanwhile the service goes on: every span is made and finished at once, none traced.
    for i in 0..1_000 {
        let span = tracer.entry_span(format!("GET:/during/{i}"), &());
        drop(span);
    }
    let during = tracer.stats();
    assert!(during.queued <= 100, "the queue is bounded: {during:?}");

    // Back, on the same address, empty (memory storage): delivery resumes.
    let broker = Broker::start_on(port).await;
    broker.create_topics(&TOPICS, 2).await;
    assert!(
        eventually(WAIT, || tracer.reporter().is_available()).await,
        "new traces never resumed: {:?}",
        tracer.stats()
    );
    for i in 0..10 {
        drop(tracer.entry_span(format!("GET:/after/{i}"), &()));
    }
    let records = broker
        .wait_for("skywalking-segments", |r| {
            r.iter()
                .filter(|(_, x)| {
                    value::<SegmentObject>(x).spans[0]
                        .operation_name
                        .starts_with("GET:/after/")
                })
                .count()
                == 10
        })
        .await;
    let after = records
        .iter()
        .filter(|(_, x)| {
            value::<SegmentObject>(x).spans[0]
                .operation_name
                .starts_with("GET:/after/")
        })
        .count();
    assert_eq!(after, 10, "delivery resumed: {:?}", tracer.stats());
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert!(stats.sent >= 20, "{stats:?}");
}

/// With `SW_AGENT_KEEP_TRACING`, traces go on while the broker is away: the bounded queue
/// fills, and what does not fit is dropped and counted, never waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_broker_is_away_the_queue_is_bounded_and_drops_are_counted() {
    let mut broker = Broker::start().await;
    broker.create_topics(&TOPICS, 1).await;
    let config = Config::builder()
        .service_name("drops-svc")
        .instance_name("drops-svc-1")
        .reporter(ReporterKind::Kafka)
        .kafka_bootstrap_servers(broker.addr())
        .queue_size(100)
        .keep_tracing(true)
        .heartbeat_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    broker.stop();
    assert!(eventually(WAIT, || !tracer.stats().connected).await);
    for i in 0..1_000 {
        drop(tracer.entry_span(format!("GET:/away/{i}"), &()));
    }
    let stats = tracer.stats();
    assert!(stats.queued <= 100, "{stats:?}");
    assert!(
        stats.dropped >= 800,
        "what did not fit is counted: {stats:?}"
    );
    let stats = tracer.reporter().shutdown(Duration::from_millis(500));
    assert_eq!(
        stats.sent + stats.dropped + stats.failed + stats.queued,
        1_000,
        "{stats:?}"
    );
}
