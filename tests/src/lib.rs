//! Helpers shared by skytrace's integration tests: a real collector on loopback and tracers that
//! report to it over gRPC.

pub mod kafka;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use skytrace::{Config, ConfigBuilder, GrpcReporter, Tracer};
use skytrace_proto::v3::{SegmentObject, SpanObject};

/// How long a test waits for something to arrive before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A loopback address nobody listens on (the port was free a moment ago).
pub fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr")
}

/// A configuration reporting to `addr`, sampling everything, with a 1 s heartbeat.
pub fn config_for(addr: SocketAddr) -> ConfigBuilder {
    Config::builder()
        .service_name("svc")
        .instance_name("svc-1")
        .backend_services(addr.to_string())
        .heartbeat_period(Duration::from_secs(1))
}

/// A tracer with its own gRPC reporter for `config`.
pub fn grpc_tracer(config: ConfigBuilder) -> Tracer {
    let config = config.build().expect("valid config");
    let reporter = GrpcReporter::start(&config).expect("reporter starts");
    Tracer::new(&config, reporter)
}

/// A tracer reporting to `collector` as service `name`, instance `{name}-1`.
pub fn named_tracer(collector: &skytrace_collector::Collector, name: &str) -> Tracer {
    grpc_tracer(
        config_for(collector.addr())
            .service_name(name)
            .instance_name(format!("{name}-1")),
    )
}

/// A name no other run uses: `{prefix}{sep}{pid}{sep}{nanos}` (tables, queues, keys).
/// An environment of `pairs` alone, for `ConfigBuilder::env`: a test's `SW_*` variables
/// without touching the process's.
pub fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// The application's own logger in the `log` bridge's tests: takes every record, shows none.
pub struct Quiet;

impl log::Log for Quiet {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, _: &log::Record<'_>) {}

    fn flush(&self) {}
}

/// This process's resident memory (`VmRSS`), in bytes.
pub fn own_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

pub fn unique_name(prefix: &str, sep: char) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}{sep}{}{sep}{nanos}", std::process::id())
}

/// The value of tag `key` of `span`.
pub fn tag<'a>(span: &'a SpanObject, key: &str) -> Option<&'a str> {
    span.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

/// The span named `name` in `segment`.
pub fn span<'a>(segment: &'a SegmentObject, name: &str) -> &'a SpanObject {
    segment
        .spans
        .iter()
        .find(|s| s.operation_name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:#?}", segment.spans))
}

/// The segment whose first span is named `name`.
pub fn segment<'a>(segments: &'a [SegmentObject], name: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.spans.first().is_some_and(|f| f.operation_name == name))
        .unwrap_or_else(|| panic!("no segment starting with {name:?}"))
}

/// The parent of the span named `child`, by name.
pub fn parent_name<'a>(segment: &'a SegmentObject, child: &str) -> &'a str {
    let parent = span(segment, child).parent_span_id;
    segment
        .spans
        .iter()
        .find(|s| s.span_id == parent)
        .map_or("<none>", |s| s.operation_name.as_str())
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// The tags of `span`, in order, as `(key, value)` pairs.
pub fn tags(span: &SpanObject) -> Vec<(&str, &str)> {
    span.tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect()
}

/// The `message` field of the first of `span`'s logs that has one (an error's text).
pub fn log_message(span: &SpanObject) -> Option<&str> {
    span.logs
        .iter()
        .flat_map(|l| &l.data)
        .find(|kv| kv.key == "message")
        .map(|kv| kv.value.as_str())
}

/// The operation names of `segment`'s spans, in order.
pub fn names(segment: &SegmentObject) -> Vec<&str> {
    segment
        .spans
        .iter()
        .map(|s| s.operation_name.as_str())
        .collect()
}

/// The one segment `collector` receives (it fails the test if more arrive within the wait).
pub async fn only_segment(collector: &skytrace_collector::Collector) -> SegmentObject {
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(
        segments.len(),
        1,
        "{}",
        skytrace_collector::render_trace_tree(&segments)
    );
    segments.into_iter().next().expect("one segment")
}
