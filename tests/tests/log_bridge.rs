//! The `log` bridge (`SkyWalkingLogger`): records reported as `LogData` linked to the trace,
//! forwarded to the application's own logger; the bounded queue drops and counts.

use std::sync::Mutex;

use skytrace::integrations::log::SkyWalkingLogger;
use skytrace::logs::{self, LogSettings};
use skytrace_collector::Collector;
use skytrace_proto::v3::log_report_service_client::LogReportServiceClient;
use skytrace_proto::v3::{LogData, log_data_body};
use skytrace_tests::{WAIT, config_for, grpc_tracer};

/// The application's own logger: keeps what it is given.
struct Inner {
    lines: Mutex<Vec<String>>,
}

impl log::Log for Inner {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {} {}", logs::sw_ctx(), record.level(), record.args());
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

static INNER: Inner = Inner {
    lines: Mutex::new(Vec::new()),
};

struct Forward;

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        log::Log::enabled(&INNER, metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        log::Log::log(&INNER, record);
    }

    fn flush(&self) {}
}

fn text(log: &LogData) -> &str {
    match log.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(log_data_body::Content::Text(text)) => &text.text,
        other => panic!("not a text body: {other:?}"),
    }
}

fn tag<'a>(log: &'a LogData, key: &str) -> &'a str {
    log.tags
        .as_ref()
        .and_then(|tags| tags.data.iter().find(|kv| kv.key == key))
        .map_or("", |kv| kv.value.as_str())
}

// One test: the logger and the log queue are the process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_reported_forwarded_and_bounded() {
    SkyWalkingLogger::new(Forward)
        .init(log::LevelFilter::Info)
        .unwrap();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let mut receiver = logs::install(&LogSettings::default()).expect("active");

    let entry = tracer.entry_span("GET:/log", &());
    {
        let _in = entry.enter();
        let local = skytrace::Span::local("work");
        let _in = local.enter();
        log::warn!(target: "app::users", "user {} not found", 7);
        log::info!("not reported: below WARN");
        log::debug!("neither reported nor printed");
    }
    drop(entry);

    // Forwarded to the inner logger, which printed the context with it.
    let lines = INNER.lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].ends_with("WARN user 7 not found"), "{lines:?}");
    assert!(lines[0].starts_with("[svc,svc-1,"), "{lines:?}");
    assert!(lines[1].ends_with("INFO not reported: below WARN"));

    let reported = receiver.try_recv().expect("the warning");
    assert!(receiver.try_recv().is_none(), "only WARN and above");
    LogReportServiceClient::connect(collector.url())
        .await
        .unwrap()
        .collect(tokio_stream::iter([reported]))
        .await
        .unwrap();
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let log = &collector.logs()[0];
    assert_eq!(text(log), "user 7 not found");
    assert_eq!(tag(log, "level"), "WARN");
    assert_eq!(tag(log, "logger"), "app::users");
    assert_eq!(log.endpoint, "GET:/log");
    let context = log.trace_context.as_ref().unwrap();
    assert_eq!(context.trace_id, seg.trace_id);
    assert_eq!(context.trace_segment_id, seg.trace_segment_id);
    let work = seg
        .spans
        .iter()
        .find(|s| s.operation_name == "work")
        .unwrap();
    assert_eq!(context.span_id, work.span_id);
    // The line printed locally carries the same context.
    assert!(lines[0].starts_with(&format!(
        "[svc,svc-1,{},{},{}]",
        seg.trace_id, seg.trace_segment_id, work.span_id
    )));

    // A full queue drops and counts, and never blocks.
    let mut settings = LogSettings::default();
    settings.max_buffer_size = 2;
    let mut receiver = logs::install(&settings).unwrap();
    let before = logs::stats();
    let flood = tracer.entry_span("flood", &());
    {
        // Inside a trace: outside one, with no global agent, there is no service to report for.
        let _in = flood.enter();
        for i in 0..5 {
            log::error!("flood {i}");
        }
    }
    let after = logs::stats();
    assert_eq!(after.submitted - before.submitted, 2);
    assert_eq!(after.dropped - before.dropped, 3);
    assert_eq!(text(&receiver.try_recv().unwrap()), "flood 0");
    assert_eq!(text(&receiver.try_recv().unwrap()), "flood 1");
    assert!(receiver.try_recv().is_none());

    // Uninstalled: nothing is built at all.
    logs::uninstall();
    let before = logs::stats();
    let _in = flood.enter();
    log::error!("after uninstall");
    assert_eq!(logs::stats(), before);
}
