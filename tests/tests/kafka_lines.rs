//! What the agent says under the Kafka reporter, read from its standard error (a child process
//! runs the case; the parent reads what it printed): a missing topic is said once, by name, and
//! retried until it exists; the brokers are named as Kafka, not as OAP; a log record over the
//! record limit names the variable that sets it (`SW_KAFKA_MAX_MESSAGE_BYTES`). A real broker
//! (tansu) on loopback.

use std::time::Duration;

use skytrace::integrations::log::SkyWalkingLogger;
use skytrace::{Config, Span};
use skytrace_proto::v3::SegmentObject;
use skytrace_tests::Quiet;
use skytrace_tests::kafka::{Broker, value};
use skytrace_tests::{WAIT, env, eventually};

/// Run in a child process by the test below: the segment topic is missing at first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by kafka_lines_name_the_topic_the_broker_and_the_variable"]
async fn case_missing_topic_then_broker_gone() {
    let mut broker = Broker::start().await;
    broker
        .create_topics(
            &[
                "skywalking-meters",
                "skywalking-logs",
                "skywalking-managements",
            ],
            1,
        )
        .await;
    SkyWalkingLogger::new(Quiet)
        .init(log::LevelFilter::Info)
        .unwrap();
    let config = Config::builder()
        .env(env(vec![
            ("SW_AGENT_NAME", "lines-svc".into()),
            ("SW_AGENT_INSTANCE_NAME", "lines-svc-1".into()),
            ("SW_AGENT_REPORTER_TYPE", "kafka".into()),
            ("SW_KAFKA_BOOTSTRAP_SERVERS", broker.addr()),
            ("SW_KAFKA_MAX_MESSAGE_BYTES", "1024".into()),
            // Traces go on while the segments are refused: each one is another attempt.
            ("SW_AGENT_KEEP_TRACING", "true".into()),
            ("SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD", "1".into()),
        ]))
        .unwrap()
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    let tracer = guard.tracer().unwrap().clone();

    // Three segments, each sent (and refused) after the one before failed: three attempts at
    // least, with the back-off between them.
    for i in 1..=3u64 {
        drop(Span::root_entry(format!("GET:/missing/{i}")));
        assert!(
            eventually(WAIT, || tracer.stats().failed >= i).await,
            "attempt {i}: {:?}",
            tracer.stats()
        );
    }
    // A log record over the 1024-byte record limit: dropped, said with the variable.
    log::warn!(target: "kafka-lines", "{}", "x".repeat(4_000));

    // OAP creates its topics when its fetcher starts: the next attempt delivers.
    broker.create_topics(&["skywalking-segments"], 1).await;
    drop(Span::root_entry("GET:/found"));
    let records = broker
        .wait_for("skywalking-segments", |r| {
            r.iter()
                .any(|(_, x)| value::<SegmentObject>(x).spans[0].operation_name == "GET:/found")
        })
        .await;
    assert!(
        records
            .iter()
            .any(|(_, x)| value::<SegmentObject>(x).spans[0].operation_name == "GET:/found"),
        "delivery never resumed: {:?}",
        tracer.stats()
    );

    // The broker goes away: the failure names Kafka.
    broker.stop();
    assert!(
        eventually(WAIT, || !tracer.stats().connected).await,
        "{:?}",
        tracer.stats()
    );
    guard.shutdown(Duration::from_millis(500));
}

#[test]
fn kafka_lines_name_the_topic_the_broker_and_the_variable() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "case_missing_topic_then_broker_gone",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("skytrace: "))
        .collect();

    let missing: Vec<&&str> = said
        .iter()
        .filter(|l| l.contains("skywalking-segments"))
        .collect();
    assert_eq!(missing.len(), 1, "said once: {said:#?}");
    assert!(
        missing[0].starts_with("skytrace: Kafka at 127.0.0.1:")
            && missing[0].contains(
                "refused the segments: topic skywalking-segments does not exist (OAP creates its \
                 topics when its kafka-fetcher starts); retrying in "
            ),
        "{said:#?}"
    );

    assert!(
        said.iter()
            .any(|l| l.starts_with("skytrace: reporting to Kafka at 127.0.0.1:")),
        "{said:#?}"
    );
    // A stopped broker refuses connections; one that hangs is "not answering": either names
    // Kafka.
    assert!(
        said.iter().any(
            |l| l.starts_with("skytrace: cannot reach Kafka at 127.0.0.1:")
                || (l.starts_with("skytrace: Kafka at 127.0.0.1:")
                    && (l.contains(" is not answering") || l.contains(" has not answered")))
        ),
        "{said:#?}"
    );
    assert!(
        said.iter()
            .any(|l| l.starts_with("skytrace: dropped a log record of ")
                && l.contains("over the 1024-byte message limit (SW_KAFKA_MAX_MESSAGE_BYTES)")),
        "{said:#?}"
    );
    assert!(
        !said.iter().any(|l| l.contains("OAP at")),
        "no line names OAP: {said:#?}"
    );
}
