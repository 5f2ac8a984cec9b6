//! Logs to OAP's log view: `skytrace::init` installs the log queue and the gRPC reporter sends
//! what the `tracing` and `log` bridges put in it over `LogReportService/collect`, each record
//! linked to the segment and span it was logged in.

use std::time::Duration;

use skytrace::Span;
use skytrace::integrations::log::SkyWalkingLogger;
use skytrace::integrations::tracing::SkyWalkingLayer;
use skytrace::meter::names;
use skytrace_collector::Collector;
use skytrace_proto::v3::meter_data::Metric;
use skytrace_proto::v3::{LogData, log_data_body};
use skytrace_tests::Quiet;
use skytrace_tests::{WAIT, config_for, span};
use tracing_subscriber::layer::SubscriberExt as _;

fn tag<'a>(log: &'a LogData, key: &str) -> &'a str {
    log.tags
        .as_ref()
        .and_then(|tags| tags.data.iter().find(|kv| kv.key == key))
        .map_or("", |kv| kv.value.as_str())
}

fn text(log: &LogData) -> &str {
    match log.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(log_data_body::Content::Text(text)) => &text.text,
        other => panic!("not a text body: {other:?}"),
    }
}

// One test: the subscriber, the logger, the global tracer and the log queue are the process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_and_log_records_arrive_linked_to_their_span() {
    let subscriber = tracing_subscriber::registry().with(SkyWalkingLayer::new());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    SkyWalkingLogger::new(Quiet)
        .init(log::LevelFilter::Info)
        .unwrap();
    let collector = Collector::start().await.unwrap();
    let config = config_for(collector.addr())
        .service_name("logs-svc")
        .meter_reporter_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let guard = skytrace::init(config).unwrap();
    // What the README's recipe did after `init`: it must not disconnect the queue `init`
    // installed (it replaced it, and every record went to a receiver nobody read).
    let _logs = skytrace::logs::install(&skytrace::logs::LogSettings::default());
    assert!(_logs.is_none(), "init's queue is kept");

    {
        let entry = Span::root_entry("GET:/report");
        let _in = entry.enter();
        tracing::error!(target: "reporter-test", code = 507, "disk full");
        let work = Span::local("work");
        let _in = work.enter();
        log::warn!(target: "reporter-test", "slow disk {}", 3);
        tracing::info!(target: "reporter-test", "below the threshold");
    }
    log::error!(target: "reporter-test", "outside any trace");

    let seg = collector.wait_for_segments(1, WAIT).await.remove(0);
    let ours = |r: &skytrace_collector::Received| {
        r.logs
            .iter()
            .filter(|l| tag(l, "logger") == "reporter-test")
            .count()
    };
    assert!(
        collector.wait_for(WAIT, |r| ours(r) >= 3).await,
        "{:#?}",
        collector.logs()
    );
    // The agent's health counts the log queue's drops.
    let health = collector
        .wait_for(WAIT, |r| {
            r.meters.iter().any(|d| {
                matches!(&d.metric, Some(Metric::SingleValue(v))
                    if v.name == names::AGENT_LOG_RECORDS_DROPPED)
            })
        })
        .await;
    guard.shutdown(Duration::from_secs(5));
    assert!(health, "no {}", names::AGENT_LOG_RECORDS_DROPPED);
    let dropped: Vec<f64> = collector
        .meters()
        .iter()
        .filter_map(|d| match &d.metric {
            Some(Metric::SingleValue(v)) if v.name == names::AGENT_LOG_RECORDS_DROPPED => {
                Some(v.value)
            }
            _ => None,
        })
        .collect();
    println!("{}: {dropped:?}", names::AGENT_LOG_RECORDS_DROPPED);

    let logs: Vec<LogData> = collector
        .logs()
        .into_iter()
        .filter(|l| tag(l, "logger") == "reporter-test")
        .collect();
    let [error, warn, outside] = &logs[..] else {
        panic!("{logs:#?}");
    };
    assert_eq!(text(error), "disk full code=507");
    assert_eq!(tag(error, "level"), "ERROR");
    assert_eq!(text(warn), "slow disk 3");
    assert_eq!(tag(warn, "level"), "WARN");
    for (log, span_name) in [(error, "GET:/report"), (warn, "work")] {
        let context = log.trace_context.as_ref().expect("a trace context");
        assert_eq!(context.trace_id, seg.trace_id);
        assert_eq!(context.trace_segment_id, seg.trace_segment_id);
        assert_eq!(context.span_id, span(&seg, span_name).span_id);
        assert_eq!(log.service, "logs-svc");
        assert_eq!(log.service_instance, "svc-1");
        assert_eq!(log.endpoint, "GET:/report");
    }
    assert_eq!(text(outside), "outside any trace");
    assert_eq!(outside.trace_context, None);
}
