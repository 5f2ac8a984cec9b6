//! The Kafka reporter with SASL (`SW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT`, mechanism
//! PLAIN) against a broker that requires authentication (`tansu broker --authentication`):
//! the agent authenticates on every connection and its segments arrive.
//!
//! What tansu 0.6 cannot show: it accepts PLAIN with any password (it checks that a user and a
//! password were sent, not their values), so a wrong password is not refused here; and its
//! SCRAM users are created with `AlterUserScramCredentials`, which no client at hand here
//! sends. The SCRAM mechanisms are covered by the settings' unit tests only.

use std::time::Duration;

use skytrace::{Config, GrpcReporter, Tracer};
use skytrace_proto::v3::SegmentObject;
use skytrace_tests::kafka::{Broker, value};
use skytrace_tests::{WAIT, eventually};

const TOPICS: [&str; 4] = [
    "skywalking-segments",
    "skywalking-meters",
    "skywalking-logs",
    "skywalking-managements",
];

fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_a_broker_that_requires_sasl_plain() {
    let broker = Broker::start_with_sasl("test-admin", "admin-secret").await;
    broker.create_topics(&TOPICS, 1).await;
    let config = Config::builder()
        .env(env(vec![
            ("SW_AGENT_NAME", "kafka-sasl-svc".into()),
            ("SW_AGENT_INSTANCE_NAME", "kafka-sasl-svc-1".into()),
            ("SW_AGENT_REPORTER_TYPE", "kafka".into()),
            ("SW_KAFKA_BOOTSTRAP_SERVERS", broker.addr()),
            ("SW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".into()),
            ("SW_KAFKA_SASL_MECHANISM", "PLAIN".into()),
            ("SW_KAFKA_SASL_USERNAME", "agent".into()),
            ("SW_KAFKA_SASL_PASSWORD", "agent-secret".into()),
        ]))
        .unwrap()
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    assert!(
        eventually(WAIT, || tracer.reporter().is_available()).await,
        "the Kafka reporter never authenticated: {:?}",
        tracer.stats()
    );
    for i in 0..5 {
        drop(tracer.entry_span(format!("GET:/sasl/{i}"), &()));
    }
    let records = broker
        .wait_for("skywalking-segments", |r| r.len() >= 5)
        .await;
    assert_eq!(records.len(), 5, "{:?}", tracer.stats());
    for (_, record) in &records {
        let segment: SegmentObject = value(record);
        assert_eq!(segment.service, "kafka-sasl-svc");
    }
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!((stats.sent, stats.dropped), (5, 0), "{stats:?}");
}
