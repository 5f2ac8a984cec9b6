//! The `tracing` bridge (`SkyWalkingLayer`): `tracing` spans and events inside skytrace traces,
//! reported over real gRPC to the in-process collector; and `LogData` from `tracing` events,
//! sent over `LogReportService/collect` as the reporter will.

use std::sync::Once;
use std::time::Duration;

use skytrace::integrations::tracing::SkyWalkingLayer;
use skytrace::logs::{self, LogLevel, LogSettings};
use skytrace::{Instrument as _, Span};
use skytrace_collector::Collector;
use skytrace_proto::v3::log_report_service_client::LogReportServiceClient;
use skytrace_proto::v3::{LogData, SegmentObject, SpanLayer, SpanType, log_data_body};
use skytrace_tests::{WAIT, config_for, grpc_tracer, parent_name, span};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// The process's subscriber: the bridge with its defaults (roots start nothing).
fn subscriber() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(SkyWalkingLayer::new());
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    });
}

async fn hop() {
    for _ in 0..3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tracing::instrument]
async fn outer() {
    hop().await;
    middle().await;
    hop().await;
}

#[skytrace::trace]
async fn middle() {
    hop().await;
    inner(7).await;
}

#[tracing::instrument]
async fn inner(id: u64) {
    hop().await;
    tracing::info!(user = id, "loaded");
    // A message named after another field is still the log's second field.
    tracing::info!(count = 2_i64, ok = true, message = "counted");
    hop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_both_ways_across_awaits() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/nest", &());
    tokio::spawn(outer().in_span(entry)).await.unwrap();

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(seg.spans.len(), 4, "{:#?}", seg.spans);
    assert_eq!(parent_name(seg, "outer"), "GET:/nest");
    assert_eq!(parent_name(seg, "middle"), "outer");
    assert_eq!(parent_name(seg, "inner"), "middle");
    let inner = span(seg, "inner");
    assert_eq!(inner.span_type, SpanType::Local as i32);
    // Fields are tags; events are logs.
    assert!(inner.tags.iter().any(|t| t.key == "id" && t.value == "7"));
    assert_eq!(
        log_fields(inner, 0),
        [("event", "info"), ("message", "loaded"), ("user", "7")]
    );
    assert_eq!(
        log_fields(inner, 1),
        [
            ("event", "info"),
            ("message", "counted"),
            ("count", "2"),
            ("ok", "true")
        ]
    );
    assert!(!inner.is_error);
    for s in &seg.spans {
        assert!(s.end_time >= s.start_time && s.end_time > 0);
    }
}

#[tracing::instrument]
async fn parent_task() {
    let spawned = tokio::spawn(
        async {
            hop().await;
            child_task().await;
        }
        .in_current_span(),
    );
    let instrumented = tokio::spawn(
        async {
            hop().await;
            drop(Span::local("under-spawned"));
        }
        .instrument(tracing::info_span!("spawned")),
    );
    spawned.await.unwrap();
    instrumented.await.unwrap();
}

#[tracing::instrument]
async fn child_task() {
    hop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_across_tokio_spawn() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/spawn", &());
    parent_task().in_span(entry).await;

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(parent_name(seg, "parent_task"), "GET:/spawn");
    assert_eq!(parent_name(seg, "child_task"), "parent_task");
    assert_eq!(parent_name(seg, "spawned"), "parent_task");
    assert_eq!(parent_name(seg, "under-spawned"), "spawned");
}

#[tracing::instrument(
    skip_all,
    fields(sw.kind = "exit", sw.peer = "db:5432", sw.layer = "database", sw.component = 22,
           db.statement = tracing::field::Empty)
)]
fn query(id: u64) -> bool {
    tracing::Span::current().record("db.statement", format!("SELECT {id}"));
    let mut headers = http::HeaderMap::new();
    skytrace::inject(&mut headers)
}

/// An exit span whose peer and layer are known only inside it: recorded later.
#[tracing::instrument(fields(sw.kind = "exit", sw.peer = tracing::field::Empty,
                             sw.layer = tracing::field::Empty))]
fn late_peer() {
    let span = tracing::Span::current();
    span.record("sw.peer", "cache:6379");
    span.record("sw.layer", "cache");
}

#[tracing::instrument(err)]
fn fails() -> Result<(), String> {
    Err("no such user".to_owned())
}

#[tracing::instrument(fields(error = true))]
fn flagged() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_fields_make_exit_spans_and_errors_mark_spans() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/fields", &());
    {
        let _in = entry.enter();
        assert!(query(7), "the exit span is current: sw8 is injected");
        late_peer();
        assert!(fails().is_err());
        flagged();
        tracing::info_span!("renamed", sw.name = "custom-name", count = 3).in_scope(|| {
            tracing::warn!("careful");
        });
    }
    drop(entry);

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let exit = span(seg, "query");
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.peer, "db:5432");
    assert_eq!(exit.span_layer, SpanLayer::Database as i32);
    assert_eq!(exit.component_id, 22);
    assert!(
        exit.tags
            .iter()
            .any(|t| t.key == "db.statement" && t.value == "SELECT 7")
    );
    assert!(exit.tags.iter().all(|t| !t.key.starts_with("sw.")));
    let late = span(seg, "late_peer");
    assert_eq!(
        (late.span_type, late.peer.as_str(), late.span_layer),
        (SpanType::Exit as i32, "cache:6379", SpanLayer::Cache as i32)
    );
    assert!(late.tags.iter().all(|t| !t.key.starts_with("sw.")));

    let failed = span(seg, "fails");
    assert!(failed.is_error);
    assert!(
        failed.logs[0]
            .data
            .iter()
            .any(|kv| kv.key == "event" && kv.value == "error")
    );
    assert!(span(seg, "flagged").is_error);

    let renamed = span(seg, "custom-name");
    assert!(!renamed.is_error);
    assert!(
        renamed
            .tags
            .iter()
            .any(|t| t.key == "count" && t.value == "3")
    );
    assert_eq!(renamed.logs[0].data[0].value, "warn");
    assert_eq!(parent_name(seg, "custom-name"), "GET:/fields");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trace_no_span() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    // Outside any trace: nothing is recorded, nothing is current inside.
    outer().await;
    tracing::info_span!("alone").in_scope(|| assert!(skytrace::current_trace_id().is_none()));
    // A marker segment: once it arrives, anything reported before it has arrived too.
    drop(tracer.entry_span("marker", &()));
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].spans.len(), 1);
    assert_eq!(segments[0].spans[0].operation_name, "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_span_starts_a_trace_when_set() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let layer = SkyWalkingLayer::new().start_traces_on(tracer.clone());
    let local = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(local, || {
        tracing::info_span!("nightly-job", batch = 9).in_scope(|| {
            assert!(skytrace::current_trace_id().is_some());
            tracing::info_span!("step").in_scope(|| {});
        });
    });
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let job = span(seg, "nightly-job");
    assert_eq!(job.span_type, SpanType::Entry as i32);
    assert!(job.tags.iter().any(|t| t.key == "batch" && t.value == "9"));
    assert_eq!(parent_name(seg, "step"), "nightly-job");
}

/// Spans and events with an explicit parent; and two subscribers, whose registries hand out the
/// same span ids: each layer keeps its own spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_parents_and_two_subscribers_with_the_same_ids() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let first = tracing::Dispatch::new(tracing_subscriber::registry().with(SkyWalkingLayer::new()));
    let second =
        tracing::Dispatch::new(tracing_subscriber::registry().with(SkyWalkingLayer::new()));
    let entry = tracer.entry_span("GET:/two", &());
    {
        let _in = entry.enter();
        let in_first =
            tracing::dispatcher::with_default(&first, || tracing::info_span!("in_first"));
        let in_second =
            tracing::dispatcher::with_default(&second, || tracing::info_span!("in_second"));
        assert_eq!(
            in_first.id(),
            in_second.id(),
            "the two registries' first ids"
        );
        tracing::dispatcher::with_default(&second, || {
            tracing::info_span!(parent: &in_second, "child_of_second").in_scope(|| {});
            tracing::info!(parent: &in_second, answer = 42, "explicit");
        });
        tracing::dispatcher::with_default(&first, || {
            in_first.in_scope(|| drop(Span::local("under_first")));
        });
    }
    drop(entry);

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(parent_name(seg, "in_first"), "GET:/two");
    assert_eq!(parent_name(seg, "in_second"), "GET:/two");
    assert_eq!(parent_name(seg, "child_of_second"), "in_second");
    assert_eq!(parent_name(seg, "under_first"), "in_first");
    assert_eq!(
        log_fields(span(seg, "in_second"), 0),
        [("event", "info"), ("message", "explicit"), ("answer", "42")]
    );
    assert!(span(seg, "in_first").logs.is_empty());
}

/// What `tracing` events under a trace become in OAP's log view: the records the bridge
/// queues, drained and sent over `LogReportService/collect` to the collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_log_data_linked_to_the_trace() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let mut receiver = logs::install(&LogSettings::default()).expect("active");
    // Outside a trace a record names the global agent's service.
    let _ = tracer.install_global();

    let entry = tracer.entry_span("GET:/logs", &());
    async {
        tracing::warn!(target: "bridge-test", "before the span");
        async {
            hop().await;
            tracing::info!(target: "bridge-test", "below the threshold");
            tracing::error!(target: "bridge-test", code = 503, "backend down");
        }
        .instrument(tracing::info_span!("call"))
        .await;
    }
    .in_span(entry)
    .await;
    tracing::warn!(target: "bridge-test", "outside any trace");

    // Only this test's records (other tests' events may reach the queue too).
    let mut ours = Vec::new();
    while let Some(log) = receiver.try_recv() {
        if tag(&log, "logger") == "bridge-test" {
            ours.push(log);
        }
    }
    logs::uninstall();
    assert_eq!(ours.len(), 3, "{ours:#?}");
    LogReportServiceClient::connect(collector.url())
        .await
        .unwrap()
        .collect(tokio_stream::iter(ours))
        .await
        .unwrap();
    let received = collector.logs();
    let seg = &collector.wait_for_segments(1, WAIT).await[0];

    let [before, error, outside] = &received[..] else {
        panic!("{received:#?}");
    };
    assert_eq!(text(before), "before the span");
    assert_trace(before, seg, "GET:/logs");
    assert_eq!(tag(before, "level"), "WARN");

    assert_eq!(text(error), "backend down code=503");
    assert_trace(error, seg, "call");
    assert_eq!(tag(error, "level"), "ERROR");
    assert!(!tag(error, "thread").is_empty());
    assert_eq!(error.service, "svc");
    assert_eq!(error.service_instance, "svc-1");
    assert_eq!(error.endpoint, "GET:/logs");
    assert_eq!(error.body.as_ref().unwrap().r#type, "TEXT");
    assert_eq!(error.layer, "");
    assert!(error.timestamp >= seg.spans[0].start_time);
    assert!(error.timestamp <= seg.spans[0].end_time);
    assert!(span(seg, "call").is_error);

    assert_eq!(text(outside), "outside any trace");
    assert_eq!(outside.trace_context, None);
    assert_eq!(outside.service, "svc");
    assert_eq!(outside.endpoint, "");
}

#[test]
fn the_level_threshold_is_honoured() {
    let settings = LogSettings::default()
        .env(|name| (name == "SW_AGENT_LOG_REPORTER_LEVEL").then(|| "error".to_owned()))
        .unwrap();
    assert_eq!(settings.level, LogLevel::Error);
    let err = LogSettings::default()
        .env(|name| (name == "SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE").then(|| "-1".to_owned()))
        .unwrap_err();
    assert_eq!(err.variable, "SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE");
    assert_eq!(err.value, "-1");
}

/// The key/value pairs of `span`'s log `at`.
fn log_fields(span: &skytrace_proto::v3::SpanObject, at: usize) -> Vec<(&str, &str)> {
    span.logs[at]
        .data
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect()
}

fn assert_trace(log: &LogData, seg: &SegmentObject, span_name: &str) {
    let context = log.trace_context.as_ref().expect("a trace context");
    assert_eq!(context.trace_id, seg.trace_id);
    assert_eq!(context.trace_segment_id, seg.trace_segment_id);
    assert_eq!(context.span_id, span(seg, span_name).span_id);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_exited_out_of_order_keep_the_context_a_stack() {
    subscriber();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("out-of-order", &());
    {
        let _in = entry.enter();
        let a = tracing::info_span!("a").entered();
        let b = tracing::info_span!("b").entered();
        // `a` leaves first: `b` is still entered, and stays the current span.
        drop(a);
        tracing::info_span!("under-b").in_scope(|| {});
        drop(b);
        tracing::info_span!("under-entry").in_scope(|| {});
    }
    drop(entry);
    assert!(skytrace::current_trace_id().is_none());
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(parent_name(seg, "a"), "out-of-order");
    assert_eq!(parent_name(seg, "b"), "a");
    assert_eq!(parent_name(seg, "under-b"), "b");
    assert_eq!(parent_name(seg, "under-entry"), "out-of-order");
}
