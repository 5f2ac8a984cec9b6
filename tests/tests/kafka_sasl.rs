//! The Kafka reporter with SASL (`SW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT`, mechanism
//! SCRAM-SHA-256) against a broker that requires authentication (`tansu broker
//! --authentication`, its SCRAM user made with `tansu user create`): the agent authenticates
//! on its connections and its segments arrive; with a wrong password nothing arrives and new
//! traces pause, as for any broker that cannot be used.
//!
//! PLAIN is not tested against a broker: tansu 0.6 offers SCRAM and OAUTHBEARER only. The
//! mechanisms' names are the settings' unit tests' (`runtime/src/config/kafka.rs`).

use std::time::Duration;

use skytrace::{Config, GrpcReporter, Tracer};
use skytrace_proto::v3::SegmentObject;
use skytrace_tests::kafka::{Broker, value};
use skytrace_tests::{WAIT, env, eventually};

const TOPICS: [&str; 4] = [
    "skywalking-segments",
    "skywalking-meters",
    "skywalking-logs",
    "skywalking-managements",
];

fn scram_tracer(service: &str, broker: &Broker, password: &str) -> Tracer {
    let pairs: Vec<(&'static str, String)> = vec![
        ("SW_AGENT_NAME", service.into()),
        ("SW_AGENT_INSTANCE_NAME", format!("{service}-1")),
        ("SW_AGENT_REPORTER_TYPE", "kafka".into()),
        ("SW_KAFKA_BOOTSTRAP_SERVERS", broker.addr()),
        ("SW_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".into()),
        ("SW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256".into()),
        ("SW_KAFKA_SASL_USERNAME", "agent".into()),
        ("SW_KAFKA_SASL_PASSWORD", password.into()),
    ];
    let config = Config::builder().env(env(pairs)).unwrap().build().unwrap();
    Tracer::new(&config, GrpcReporter::start(&config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_a_broker_that_requires_scram_and_a_wrong_password_delivers_nothing() {
    let broker = Broker::start_with_scram("agent", "agent-secret").await;
    broker.create_topics(&TOPICS, 1).await;

    let tracer = scram_tracer("kafka-scram-svc", &broker, "agent-secret");
    assert!(
        eventually(WAIT, || tracer.reporter().is_available()).await,
        "the Kafka reporter never authenticated: {:?}",
        tracer.stats()
    );
    broker
        .deliver_segments(&tracer, "scram", 5, "kafka-scram-svc")
        .await;
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!((stats.sent, stats.dropped), (5, 0), "{stats:?}");

    // The same user with a wrong password: the broker refuses the login, nothing is produced,
    // and new traces pause (segments are neither sent nor left waiting for a broker that
    // cannot be used).
    let refused = scram_tracer("kafka-scram-wrong", &broker, "not-the-secret");
    assert!(
        eventually(WAIT, || !refused.reporter().is_available()).await,
        "a refused login left new traces running: {:?}",
        refused.stats()
    );
    for i in 0..5 {
        drop(refused.entry_span(format!("GET:/wrong/{i}"), &()));
    }
    let stats = refused.reporter().shutdown(Duration::from_secs(2));
    assert_eq!(stats.sent, 0, "{stats:?}");
    let records = broker.read_all("skywalking-segments").await;
    assert!(
        records
            .iter()
            .all(|(_, r)| value::<SegmentObject>(r).service == "kafka-scram-svc"),
        "a segment arrived with a wrong password"
    );
}
