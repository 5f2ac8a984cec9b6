//! The attribute macros end to end (`macros/BEHAVIOUR_TESTS.md`): annotated fns run on a
//! multi-threaded runtime and their segments are read back from the real collector over gRPC.
//!
//! `#[entry_span]` uses the global tracer: this binary installs one, once, reporting to a
//! collector that runs on a background thread of its own ([`global_collector`]). Tests run
//! concurrently, so the tests using it find their segments by trace id; the other tests use a
//! tracer and a collector of their own.
//!
//! The binary's allocator counts the allocations of the threads that ask it to (scenario 10).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use skytrace::proto::v3::{RefType, SegmentObject, SpanLayer, SpanObject, SpanType};
use skytrace::{Instrument, Span, Sw8Header, entry_span, exit_span, trace};
use skytrace_collector::Collector;
use skytrace_tests::{WAIT, config_for, grpc_tracer, parent_name, span};

// ---- shared helpers ---------------------------------------------------------------------------

async fn hop() {
    // Give the scheduler a chance to move the task to the other worker.
    for _ in 0..3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[derive(Debug)]
struct AppError(&'static str);

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for AppError {}

/// The spans named `name`, in creation order.
fn spans_named<'a>(seg: &'a SegmentObject, name: &str) -> Vec<&'a SpanObject> {
    let mut spans: Vec<_> = seg
        .spans
        .iter()
        .filter(|s| s.operation_name == name)
        .collect();
    spans.sort_by_key(|s| s.span_id);
    spans
}

fn tag<'a>(span: &'a SpanObject, key: &str) -> Option<&'a str> {
    span.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

fn is_cancelled(span: &SpanObject) -> bool {
    tag(span, "cancelled") == Some("true")
}

/// The value of `key` in the span's first log.
fn log_field<'a>(span: &'a SpanObject, key: &str) -> Option<&'a str> {
    span.logs
        .first()?
        .data
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

fn assert_ended(span: &SpanObject) {
    assert!(
        span.end_time > 0 && span.end_time >= span.start_time,
        "{span:#?}"
    );
}

/// The collector of the global tracer: started, with the tracer installed, by the first test
/// that needs it. It runs on a thread of its own, so it outlives every test's runtime.
fn global_collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("global-collector".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("collector runtime");
                runtime.block_on(async move {
                    let collector = Collector::start().await.expect("collector starts");
                    tx.send(collector).expect("send the collector");
                    std::future::pending::<()>().await
                })
            })
            .expect("spawn the collector thread");
        let collector = rx.recv().expect("the collector started");
        let tracer = grpc_tracer(config_for(collector.addr()));
        assert!(tracer.install_global().is_none(), "installed once");
        collector
    })
}

/// The segments of trace `trace_id` that the global collector received, once there are `n`.
async fn global_segments(trace_id: &str, n: usize) -> Vec<SegmentObject> {
    let collector = global_collector();
    let arrived = collector
        .wait_for(WAIT, |r| {
            r.segments.iter().filter(|s| s.trace_id == trace_id).count() >= n
        })
        .await;
    assert!(arrived, "{n} segment(s) of trace {trace_id:?}");
    collector
        .segments()
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect()
}

// ---- 1. nested sync and async fns ---------------------------------------------------------------

#[trace]
fn checksum(data: &[u8]) -> u32 {
    data.iter().map(|b| *b as u32).sum()
}

#[trace(tags(len = data.len()))]
async fn store(data: Vec<u8>) -> u32 {
    hop().await;
    let sum = checksum(&data); // sync child of an async span
    hop().await;
    sum
}

#[trace]
async fn pipeline() -> u32 {
    let a = store(vec![1, 2]).await;
    hop().await;
    let b = store(vec![3]).await;
    a + b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_sync_and_async_fns_make_one_tree_across_workers() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/pipeline", &());
    let sum = tokio::spawn(pipeline().in_span(entry)).await.unwrap();
    assert_eq!(sum, 6);

    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1, "{segments:#?}");
    let seg = &segments[0];
    assert_eq!(seg.spans.len(), 6, "{:#?}", seg.spans);
    assert_eq!(seg.spans[0].operation_name, "GET:/pipeline");
    assert_eq!(seg.spans[0].span_type, SpanType::Entry as i32);
    assert_eq!(parent_name(seg, "pipeline"), "GET:/pipeline");
    let pipeline = span(seg, "pipeline");
    assert_eq!(pipeline.span_type, SpanType::Local as i32);

    let stores = spans_named(seg, "store");
    assert_eq!(stores.len(), 2);
    assert!(stores.iter().all(|s| s.parent_span_id == pipeline.span_id));
    assert_eq!(tag(stores[0], "len"), Some("2"));
    assert_eq!(tag(stores[1], "len"), Some("1"));

    let checksums = spans_named(seg, "checksum");
    assert_eq!(checksums.len(), 2);
    for (checksum, store) in checksums.iter().zip(&stores) {
        assert_eq!(checksum.parent_span_id, store.span_id);
        assert_eq!(checksum.span_type, SpanType::Local as i32);
    }
    for s in &seg.spans {
        assert_ended(s);
        assert!(!is_cancelled(s), "{s:#?}");
        assert!(!s.is_error);
    }
    assert!(skytrace::current_trace_id().is_none());
}

// ---- 2. methods, generics, `Type::method` names -------------------------------------------------

struct Repo<T> {
    items: Vec<T>,
}

#[trace]
impl<T: Clone + Send + Sync + 'static> Repo<T> {
    #[trace]
    fn len(&self) -> usize {
        self.items.len()
    }

    #[trace]
    fn push(&mut self, t: T) -> &mut Self {
        self.items.push(t);
        self
    }

    #[trace(name = "repo.all")]
    async fn all(&self) -> Vec<T> {
        hop().await;
        self.items.clone()
    }

    #[trace]
    #[allow(clippy::boxed_local)] // the `self: Box<Self>` receiver is the form under test
    fn into_first(self: Box<Self>) -> Option<T> {
        self.items.into_iter().next()
    }

    #[trace]
    fn reversed(mut self) -> Self {
        self.items.reverse();
        self
    }

    #[trace]
    fn pinned_len(self: Pin<&mut Self>) -> usize {
        self.items.len()
    }

    #[trace]
    fn map<U, F>(&self, f: F) -> Vec<U>
    where
        F: Fn(&T) -> U,
    {
        self.items.iter().map(f).collect()
    }
}

#[trace]
#[allow(clippy::needless_lifetimes)] // named lifetimes are the form under test
fn largest<'a, T>(items: &'a [T]) -> Option<&'a T>
where
    T: Ord,
{
    items.iter().max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_and_generics_are_named_type_method_and_return_unchanged() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/repo", &());
    let task = tokio::spawn(
        async {
            let mut repo = Repo {
                items: vec![1u32, 2],
            };
            assert_eq!(repo.len(), 2);
            // `&mut Self` comes back through the span: it can be chained and is `repo` itself.
            let back: *const Repo<u32> = repo.push(3).push(4);
            assert!(std::ptr::eq(back, &repo));
            assert_eq!(repo.all().await, [1, 2, 3, 4]);
            assert_eq!(Pin::new(&mut repo).pinned_len(), 4);
            assert_eq!(repo.map(|x| x * 10), [10, 20, 30, 40]);
            let repo = repo.reversed();
            assert_eq!(Box::new(repo).into_first(), Some(4));
            assert_eq!(largest(&[3, 9, 2]), Some(&9));
            assert_eq!(largest::<String>(&[]), None);
        }
        .in_span(entry),
    );
    task.await.unwrap();

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let expected = [
        ("Repo::len", 1),
        ("Repo::push", 2),
        ("repo.all", 1),
        ("Repo::pinned_len", 1),
        ("Repo::map", 1),
        ("Repo::reversed", 1),
        ("Repo::into_first", 1),
        ("largest", 2),
    ];
    assert_eq!(seg.spans.len(), 1 + 10, "{:#?}", seg.spans);
    for (name, count) in expected {
        let spans = spans_named(seg, name);
        assert_eq!(spans.len(), count, "{name}: {:#?}", seg.spans);
        for s in spans {
            // Each call is a child of the entry span, none of another (`push(3).push(4)`).
            assert_eq!(s.parent_span_id, 0, "{name}");
            assert_eq!(s.span_type, SpanType::Local as i32);
            assert_ended(s);
        }
    }
}

// ---- 3. async-trait ---------------------------------------------------------------------------

#[async_trait::async_trait]
trait Store {
    async fn get(&self, key: &str) -> Result<String, AppError>;
}

struct Mem;

#[trace]
#[async_trait::async_trait]
impl Store for Mem {
    #[trace(err, tags(key = key))]
    async fn get(&self, key: &str) -> Result<String, AppError> {
        hop().await;
        if key.is_empty() {
            return Err(AppError("empty key"));
        }
        Ok(key.to_uppercase())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_trait_methods_are_traced_inside_the_boxed_future() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/mem", &());
    let (a, b) = async {
        let a = Mem.get("a");
        let b = Mem.get("");
        // Between the calls and the first polls: if the span were made by the call (around the
        // boxing), it would come before this one.
        drop(Span::local("called"));
        (a.await, b.await)
    }
    .in_span(entry)
    .await;
    assert_eq!(a.unwrap(), "A");
    assert_eq!(b.unwrap_err().to_string(), "empty key");

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let called = span(seg, "called");
    let gets = spans_named(seg, "Mem::get");
    assert_eq!(gets.len(), 2, "{:#?}", seg.spans);
    for get in &gets {
        assert_eq!(parent_name(seg, "Mem::get"), "GET:/mem");
        assert_eq!(get.parent_span_id, 0);
        assert!(get.span_id > called.span_id, "{get:#?}");
        assert!(get.start_time >= called.start_time);
        assert_ended(get);
    }
    assert_eq!(tag(gets[0], "key"), Some("a"));
    assert!(!gets[0].is_error && gets[0].logs.is_empty());
    assert_eq!(tag(gets[1], "key"), Some(""));
    assert!(gets[1].is_error);
    assert_eq!(log_field(gets[1], "event"), Some("error"));
    assert_eq!(log_field(gets[1], "message"), Some("empty key"));
    assert!(!seg.spans[0].is_error, "the error stays on Mem::get");
}

// ---- 4. `err` ---------------------------------------------------------------------------------

#[trace(err)]
fn parse_port(s: &str) -> Result<u16, std::num::ParseIntError> {
    s.parse()
}

#[trace(err)]
async fn fetch(ok: bool) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    hop().await;
    if ok {
        Ok(1)
    } else {
        Err(Box::new(AppError("upstream down")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn err_marks_the_span_and_logs_the_message() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/err", &());
    tokio::spawn(
        async {
            assert!(parse_port("x").is_err());
            assert_eq!(parse_port("80").unwrap(), 80);
            assert_eq!(fetch(false).await.unwrap_err().to_string(), "upstream down");
            assert_eq!(fetch(true).await.unwrap(), 1);
        }
        .in_span(entry),
    )
    .await
    .unwrap();

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let parses = spans_named(seg, "parse_port");
    assert_eq!(parses.len(), 2);
    assert!(parses[0].is_error);
    assert_eq!(log_field(parses[0], "event"), Some("error"));
    assert_eq!(
        log_field(parses[0], "message"),
        Some("invalid digit found in string")
    );
    assert!(!parses[1].is_error && parses[1].logs.is_empty());

    let fetches = spans_named(seg, "fetch");
    assert_eq!(fetches.len(), 2);
    assert!(fetches[0].is_error);
    assert_eq!(log_field(fetches[0], "event"), Some("error"));
    assert_eq!(log_field(fetches[0], "message"), Some("upstream down"));
    assert!(!fetches[1].is_error && fetches[1].logs.is_empty());
    assert!(!seg.spans[0].is_error && seg.spans[0].logs.is_empty());
    for s in &seg.spans {
        assert_ended(s);
    }
}

// ---- 5. panics --------------------------------------------------------------------------------

#[trace]
fn explode() {
    panic!("boom")
}

#[trace]
async fn explode_async() {
    hop().await;
    panic!("async boom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_mark_the_span_as_error_and_the_segment_is_still_reported() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("job:sync", &());
    {
        let _in = entry.enter();
        assert!(std::panic::catch_unwind(explode).is_err());
        // The unwinding restored the context: this is the entry span's child again.
        drop(Span::local("after"));
    }
    drop(entry);
    let task = tokio::spawn(explode_async().in_span(tracer.entry_span("job:async", &())));
    assert!(task.await.unwrap_err().is_panic());

    let segments = collector.wait_for_segments(2, WAIT).await;
    let sync = skytrace_tests::segment(&segments, "job:sync");
    let explode = span(sync, "explode");
    assert!(explode.is_error);
    assert_eq!(log_field(explode, "error.kind"), Some("panic"));
    assert_ended(explode);
    assert_eq!(parent_name(sync, "explode"), "job:sync");
    assert_eq!(parent_name(sync, "after"), "job:sync");

    let task = skytrace_tests::segment(&segments, "job:async");
    let explode = span(task, "explode_async");
    assert!(explode.is_error);
    assert_eq!(log_field(explode, "error.kind"), Some("panic"));
    assert!(!is_cancelled(explode), "a panic is not a cancellation");
    assert_ended(explode);
    assert_eq!(parent_name(task, "explode_async"), "job:async");
    assert_ended(&task.spans[0]);
}

// ---- 6. cancellation --------------------------------------------------------------------------

#[trace]
async fn slow() {
    tokio::time::sleep(Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_traced_future_is_tagged_cancelled() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/timeout", &());
    let timed_out = async { tokio::time::timeout(Duration::from_millis(20), slow()).await }
        .in_span(entry)
        .await;
    assert!(timed_out.is_err());

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let slow = span(seg, "slow");
    assert!(is_cancelled(slow), "{slow:#?}");
    assert!(!slow.is_error);
    assert_ended(slow);
    assert_eq!(parent_name(seg, "slow"), "GET:/timeout");
    let entry = &seg.spans[0];
    assert!(!is_cancelled(entry));
    assert!(entry.end_time >= slow.end_time);
}

// ---- 7. concurrent children: `join!` and `select!` -----------------------------------------------

#[trace(tags(ms = ms))]
async fn leg(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[trace]
async fn fan_out() -> u64 {
    let (a, b) = tokio::join!(leg(5), leg(10));
    // `biased`: whenever the 50 ms leg could be ready the 1 ms one is too, so the 1 ms leg wins
    // however late the task is polled.
    let c = tokio::select! {
        biased;
        x = leg(1) => x,
        y = leg(50) => y,
    };
    a + b + c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_select_children_are_siblings_and_the_loser_is_cancelled() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/fan-out", &());
    let total = tokio::spawn(fan_out().in_span(entry)).await.unwrap();
    assert_eq!(total, 16);

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(seg.spans.len(), 6, "{:#?}", seg.spans);
    let fan_out = span(seg, "fan_out");
    assert_eq!(parent_name(seg, "fan_out"), "GET:/fan-out");
    let legs = spans_named(seg, "leg");
    assert_eq!(legs.len(), 4);
    let mut ms: Vec<_> = legs.iter().map(|l| tag(l, "ms").unwrap()).collect();
    ms.sort_unstable();
    assert_eq!(ms, ["1", "10", "5", "50"]);
    for leg in &legs {
        assert_eq!(leg.parent_span_id, fan_out.span_id, "{leg:#?}");
        assert_ended(leg);
        assert!(fan_out.end_time >= leg.end_time);
        assert_eq!(is_cancelled(leg), tag(leg, "ms") == Some("50"), "{leg:#?}");
    }
    assert!(!is_cancelled(fan_out));
}

// ---- 8. span limit ----------------------------------------------------------------------------

#[trace]
fn tiny(i: u32) -> u32 {
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_span_limit_run_but_are_not_recorded() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).span_limit(10));
    let entry = tracer.entry_span("GET:/limit", &());
    {
        let _in = entry.enter();
        for i in 0..50 {
            assert_eq!(tiny(i), i);
        }
    }
    drop(entry);

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(seg.spans.len(), 10);
    assert!(seg.is_size_limited);
    assert_eq!(spans_named(seg, "tiny").len(), 9);
}

// ---- 9. in through `#[entry_span]`, out through `#[exit_span]` -----------------------------------

#[exit_span(peer = "inventory:8080", name = "GET:/stock", layer = Http, component = HTTP)]
fn call_inventory() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    assert!(skytrace::inject(&mut headers));
    headers
}

#[exit_span(peer = addr, name = "SELECT", layer = Database, component = POSTGRESQL,
            tags(db.type = "sql", db.statement = sql))]
async fn query(addr: &str, sql: &str) -> u32 {
    hop().await;
    1
}

#[entry_span(carrier = headers, name = "GET:/orders", layer = Http, component = HTTP)]
async fn orders(headers: HashMap<String, String>) -> HashMap<String, String> {
    query("db:5432", "SELECT 1").await;
    call_inventory()
}

/// A job: no carrier, so always a trace of its own.
#[entry_span]
fn job() -> Option<String> {
    skytrace::current_trace_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_span_continues_a_hand_made_sw8_and_exit_span_propagates_it() {
    global_collector();
    // Field by field, as the protocol writes it: strings in standard base64 with padding.
    let b64 = |s: &str| STANDARD.encode(s);
    let sw8 = format!(
        "1-{}-{}-3-{}-{}-{}-{}",
        b64("1"),
        b64("5"),
        b64("mesh"),
        b64("instance"),
        b64("/api/v1/health"),
        b64("example.com:8080"),
    );
    // The protocol's worked example.
    assert_eq!(
        sw8,
        "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA=="
    );
    let headers = HashMap::from([("sw8".to_string(), sw8)]);
    let outgoing = tokio::spawn(orders(headers)).await.unwrap();

    let segments = global_segments("1", 1).await;
    assert_eq!(segments.len(), 1, "{segments:#?}");
    let seg = &segments[0];
    assert_eq!(seg.service, "svc");
    assert_eq!(seg.spans.len(), 3, "{:#?}", seg.spans);

    let entry = &seg.spans[0];
    assert_eq!(entry.operation_name, "GET:/orders");
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.parent_span_id, -1);
    assert_eq!(entry.span_layer, SpanLayer::Http as i32);
    assert_eq!(entry.component_id, 49);
    assert_eq!(entry.refs.len(), 1);
    let r = &entry.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.trace_id, "1");
    assert_eq!(r.parent_trace_segment_id, "5");
    assert_eq!(r.parent_span_id, 3);
    assert_eq!(r.parent_service, "mesh");
    assert_eq!(r.parent_service_instance, "instance");
    assert_eq!(r.parent_endpoint, "/api/v1/health");
    assert_eq!(r.network_address_used_at_peer, "example.com:8080");

    let select = span(seg, "SELECT");
    assert_eq!(select.span_type, SpanType::Exit as i32);
    assert_eq!(select.parent_span_id, entry.span_id);
    assert_eq!(select.peer, "db:5432");
    assert_eq!(select.span_layer, SpanLayer::Database as i32);
    assert_eq!(select.component_id, 22);
    assert_eq!(tag(select, "db.type"), Some("sql"));
    assert_eq!(tag(select, "db.statement"), Some("SELECT 1"));

    let stock = span(seg, "GET:/stock");
    assert_eq!(stock.span_type, SpanType::Exit as i32);
    assert_eq!(stock.parent_span_id, entry.span_id);
    assert_eq!(stock.peer, "inventory:8080");
    assert_eq!(stock.span_layer, SpanLayer::Http as i32);
    assert_eq!(stock.component_id, 49);
    for s in &seg.spans {
        assert_ended(s);
        assert!(s.refs.is_empty() || s.span_id == entry.span_id);
    }

    // What the exit span injected: the callee's view of this segment.
    let out = Sw8Header::decode(&outgoing["sw8"]).unwrap();
    assert!(out.sampled);
    assert_eq!(out.trace_id, "1");
    assert_eq!(out.parent_segment_id, seg.trace_segment_id);
    assert_ne!(out.parent_segment_id, "5");
    assert_eq!(out.parent_span_id, stock.span_id);
    assert_eq!(out.parent_service, "svc");
    assert_eq!(out.parent_service_instance, "svc-1");
    assert_eq!(out.parent_endpoint, entry.operation_name);
    assert_eq!(out.target_address, "inventory:8080");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_span_without_a_valid_sw8_starts_a_fresh_trace() {
    global_collector();
    let missing = tokio::spawn(orders(HashMap::new())).await.unwrap();
    let malformed = HashMap::from([("sw8".to_string(), "1-bad".to_string())]);
    let malformed = tokio::spawn(orders(malformed)).await.unwrap();

    let mut trace_ids = Vec::new();
    for outgoing in [missing, malformed] {
        let out = Sw8Header::decode(&outgoing["sw8"]).unwrap();
        assert_ne!(out.trace_id, "1");
        let segments = global_segments(&out.trace_id, 1).await;
        assert_eq!(segments.len(), 1);
        let seg = &segments[0];
        let entry = &seg.spans[0];
        assert_eq!(entry.operation_name, "GET:/orders");
        assert_eq!(entry.span_type, SpanType::Entry as i32);
        assert_eq!(entry.parent_span_id, -1);
        assert!(entry.refs.is_empty(), "{:#?}", entry.refs);
        assert_eq!(out.parent_segment_id, seg.trace_segment_id);
        assert_eq!(out.parent_span_id, span(seg, "GET:/stock").span_id);
        trace_ids.push(out.trace_id);
    }

    // No carrier at all: a job reports a segment of its own.
    let job_trace = job().expect("the job's trace is current inside it");
    assert!(skytrace::current_trace_id().is_none(), "and only inside it");
    let segments = global_segments(&job_trace, 1).await;
    let seg = &segments[0];
    assert_eq!(seg.spans.len(), 1);
    assert_eq!(seg.spans[0].operation_name, "job");
    assert_eq!(seg.spans[0].span_type, SpanType::Entry as i32);
    assert!(seg.spans[0].refs.is_empty());
    assert_ended(&seg.spans[0]);
    trace_ids.push(job_trace);

    trace_ids.sort();
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 3, "three distinct traces");
}

// ---- 10. no active trace costs nothing -------------------------------------------------------------

/// The system allocator, counting the allocations of a thread while it asks for it.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded to `System`; the counters are `const` thread-locals of `Cell`s,
// which neither allocate nor register destructors.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// How many allocations this thread made while running `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[trace(tags(n = n), err)]
fn quiet(n: u64) -> Result<u64, AppError> {
    Ok(n + 1)
}

#[trace]
async fn quiet_async(n: u64) -> u64 {
    n + 1
}

#[exit_span(peer = format_args!("host:{}", n))]
fn quiet_exit(n: u64) -> u64 {
    n
}

#[test]
fn with_no_active_trace_traced_fns_allocate_nothing() {
    assert!(skytrace::current_trace_id().is_none());
    let mut cx = Context::from_waker(Waker::noop());
    // The counter counts: a control.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8]))) >= 1);
    let allocations = allocations_in(|| {
        for n in 0..1_000 {
            assert!(matches!(quiet(n), Ok(m) if m == n + 1));
            let mut fut = std::pin::pin!(quiet_async(n));
            assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(m) if m == n + 1));
            assert_eq!(quiet_exit(n), n);
        }
    });
    assert_eq!(allocations, 0);
}

// ---- 11. tags formatted only when sampled -----------------------------------------------------------

struct Counted;

static FORMATS: AtomicUsize = AtomicUsize::new(0);

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        FORMATS.fetch_add(1, Ordering::SeqCst);
        f.write_str("c")
    }
}

#[trace(tags(v = Counted))]
fn tagged() {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_formatted_only_when_the_span_records() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).sample_per_3_secs(1));
    let formats = || FORMATS.load(Ordering::SeqCst);

    // No trace.
    let before = formats();
    tagged();
    assert_eq!(formats(), before);

    // Sampled: the window's first trace.
    let entry = tracer.entry_span("GET:/tagged", &());
    assert!(entry.is_recording());
    {
        let _in = entry.enter();
        for i in 1..=3 {
            tagged();
            assert_eq!(formats(), before + i);
        }
    }
    drop(entry);

    // Unsampled: a later trace of the same window (a window boundary may let one more through).
    let unsampled = (0..5)
        .map(|_| tracer.entry_span("GET:/tagged-unsampled", &()))
        .find(|e| !e.is_recording())
        .expect("the budget of 1 trace per 3 s is spent");
    {
        let _in = unsampled.enter();
        tagged();
        tagged();
    }
    drop(unsampled);
    assert_eq!(formats(), before + 3);

    let segments = collector.wait_for_segments(1, WAIT).await;
    let seg = skytrace_tests::segment(&segments, "GET:/tagged");
    let tagged = spans_named(seg, "tagged");
    assert_eq!(tagged.len(), 3);
    assert!(tagged.iter().all(|s| tag(s, "v") == Some("c")));
    assert!(
        segments
            .iter()
            .all(|s| s.spans.iter().all(|s| s.operation_name != "tagged")
                || s.spans[0].operation_name == "GET:/tagged")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_span_inside_an_active_trace_is_a_child_span() {
    global_collector();
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/outer", &());
    let inner_trace = {
        let _in = entry.enter();
        job()
    };
    drop(entry);

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(inner_trace.as_deref(), Some(seg.trace_id.as_str()));
    assert_eq!(seg.spans.len(), 2);
    let job = span(seg, "job");
    assert_eq!(job.span_type, SpanType::Local as i32);
    assert_eq!(parent_name(seg, "job"), "GET:/outer");
    // Nothing of it went to the global tracer.
    assert!(
        global_collector()
            .segments()
            .iter()
            .all(|s| s.trace_id != seg.trace_id)
    );
}
