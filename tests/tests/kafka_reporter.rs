//! The Kafka reporter (`SW_AGENT_REPORTER_TYPE=kafka`) against a real Kafka-protocol broker on
//! loopback (tansu, `scripts/ensure-kafka`): segments, meters, logs, instance properties and
//! keep-alives land on the topics OAP's kafka-fetcher reads, keyed as the Java agent keys them,
//! and decode with the official protocol. Read back by rskafka's consumer, not by our code.

use std::time::Duration;

use skytrace::integrations::log::SkyWalkingLogger;
use skytrace::{Config, GrpcReporter, Span, Tracer};
use skytrace_proto::v3::{
    InstancePingPkg, InstanceProperties, LogData, MeterDataCollection, SegmentObject,
};
use skytrace_tests::Quiet;
use skytrace_tests::kafka::{Broker, key, value};
use skytrace_tests::{WAIT, env, eventually};

const TOPICS: [&str; 4] = [
    "skywalking-segments",
    "skywalking-meters",
    "skywalking-logs",
    "skywalking-managements",
];

fn logger(log: &LogData) -> &str {
    log.tags
        .as_ref()
        .and_then(|tags| tags.data.iter().find(|kv| kv.key == "logger"))
        .map_or("", |kv| kv.value.as_str())
}

// One test with `init`: the logger, the global tracer and the log queue are the process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_reaches_the_topics_oap_reads() {
    let broker = Broker::start().await;
    broker.create_topics(&TOPICS, 3).await;
    SkyWalkingLogger::new(Quiet)
        .init(log::LevelFilter::Info)
        .unwrap();
    let config = Config::builder()
        .env(env(vec![
            ("SW_AGENT_NAME", "kafka-svc".into()),
            ("SW_AGENT_INSTANCE_NAME", "kafka-svc-1".into()),
            ("SW_AGENT_REPORTER_TYPE", "kafka".into()),
            ("SW_KAFKA_BOOTSTRAP_SERVERS", broker.addr()),
            ("SW_KAFKA_COMPRESSION", "gzip".into()),
            ("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", "1".into()),
            ("SW_AGENT_METER_REPORTER_PERIOD", "1".into()),
        ]))
        .unwrap()
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let tracer = guard.tracer().unwrap().clone();
    assert!(
        eventually(WAIT, || tracer.reporter().is_available()).await,
        "the Kafka reporter never connected"
    );
    for i in 0..20 {
        let entry = Span::root_entry(format!("GET:/kafka/{i}"));
        let _in = entry.enter();
        if i == 0 {
            log::error!(target: "kafka-test", "disk full");
        }
    }
    log::warn!(target: "kafka-test", "outside any trace");

    // Segments: one record per segment, keyed by its id.
    let records = broker
        .wait_for("skywalking-segments", |r| r.len() >= 20)
        .await;
    assert_eq!(records.len(), 20, "every segment, once");
    let mut partitions = std::collections::BTreeSet::new();
    for (partition, record) in &records {
        let segment: SegmentObject = value(record);
        assert_eq!(key(record), segment.trace_segment_id);
        assert_eq!(segment.service, "kafka-svc");
        assert_eq!(segment.service_instance, "kafka-svc-1");
        assert!(segment.spans[0].operation_name.starts_with("GET:/kafka/"));
        partitions.insert(*partition);
    }
    assert!(
        partitions.len() > 1,
        "keys spread over the partitions: {partitions:?}"
    );

    // Meters: one `MeterDataCollection` per period, keyed by the instance.
    let records = broker
        .wait_for("skywalking-meters", |r| !r.is_empty())
        .await;
    let (_, first) = records.first().expect("a meter report");
    assert_eq!(key(first), "kafka-svc-1");
    let report: MeterDataCollection = value(first);
    assert!(!report.meter_data.is_empty());
    assert_eq!(report.meter_data[0].service, "kafka-svc");
    assert_eq!(report.meter_data[0].service_instance, "kafka-svc-1");

    // Logs: one `LogData` per record, the service on every one, keyed by it.
    let ours = |records: &[(i32, rskafka::record::Record)]| -> Vec<LogData> {
        records
            .iter()
            .map(|(_, r)| value::<LogData>(r))
            .filter(|l| logger(l) == "kafka-test")
            .collect()
    };
    let records = broker
        .wait_for("skywalking-logs", |r| ours(r).len() >= 2)
        .await;
    assert_eq!(ours(&records).len(), 2, "{records:?}");
    for (_, record) in &records {
        assert_eq!(key(record), "kafka-svc");
        let log: LogData = value(record);
        assert_eq!(log.service, "kafka-svc");
        assert_eq!(log.service_instance, "kafka-svc-1");
    }
    let linked = ours(&records)
        .iter()
        .filter(|l| l.trace_context.is_some())
        .count();
    assert_eq!(linked, 1, "the record logged in a span carries its context");

    // Management: the properties under `register-{instance}`, keep-alives under the instance.
    let records = broker
        .wait_for("skywalking-managements", |r| {
            r.iter().any(|(_, x)| key(x) == "register-kafka-svc-1")
                && r.iter().any(|(_, x)| key(x) == "kafka-svc-1")
        })
        .await;
    let (_, properties) = records
        .iter()
        .find(|(_, r)| key(r) == "register-kafka-svc-1")
        .expect("the instance properties");
    let properties: InstanceProperties = value(properties);
    assert_eq!(properties.service, "kafka-svc");
    assert!(properties.properties.iter().any(|kv| kv.key == "language"));
    let (_, ping) = records
        .iter()
        .find(|(_, r)| key(r) == "kafka-svc-1")
        .expect("a keep-alive");
    let ping: InstancePingPkg = value(ping);
    assert_eq!(
        (ping.service.as_str(), ping.service_instance.as_str()),
        ("kafka-svc", "kafka-svc-1")
    );

    let stats = guard.shutdown(Duration::from_secs(5));
    assert_eq!((stats.sent, stats.dropped), (20, 0), "{stats:?}");
}

/// With `SW_KAFKA_NAMESPACE`, every topic is `{namespace}-{topic}`; a topic the cluster lacks
/// is said and retried, and costs the other signals nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_prefixes_the_topics() {
    let broker = Broker::start().await;
    // No meter or log topic: those signals back off alone.
    broker
        .create_topics(&["ns-skywalking-segments", "ns-skywalking-managements"], 1)
        .await;
    let config = Config::builder()
        .env(env(vec![
            ("SW_AGENT_NAME", "ns-svc".into()),
            ("SW_AGENT_INSTANCE_NAME", "ns-svc-1".into()),
            ("SW_AGENT_REPORTER_TYPE", "kafka".into()),
            ("SW_KAFKA_BOOTSTRAP_SERVERS", broker.addr()),
            ("SW_KAFKA_NAMESPACE", "ns".into()),
            ("SW_KAFKA_COMPRESSION", "snappy".into()),
        ]))
        .unwrap()
        .build()
        .unwrap();
    let tracer = Tracer::new(&config, GrpcReporter::start(&config).unwrap());
    assert!(eventually(WAIT, || tracer.reporter().is_available()).await);
    drop(tracer.entry_span("GET:/ns", &()));
    let records = broker
        .wait_for("ns-skywalking-segments", |r| !r.is_empty())
        .await;
    assert_eq!(records.len(), 1);
    let segment: SegmentObject = value(&records[0].1);
    assert_eq!(segment.service, "ns-svc");
    let managements = broker
        .wait_for("ns-skywalking-managements", |r| {
            r.iter().any(|(_, x)| key(x) == "register-ns-svc-1")
        })
        .await;
    assert!(
        managements
            .iter()
            .any(|(_, x)| key(x) == "register-ns-svc-1")
    );
    assert!(broker.read_all("skywalking-segments").await.is_empty());
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!(stats.sent, 1, "{stats:?}");
}
