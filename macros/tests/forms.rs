//! Every form the attributes accept, compiled and run in the mode this crate is built in: with
//! `enable`, the spans they record (through an in-memory reporter); without it, none at all.
//!
//! The behaviour tests through a real collector live in the `skytrace-tests` crate.

#![deny(warnings)]
#![allow(dead_code, clippy::boxed_local, clippy::manual_async_fn)]

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use skytrace::proto::v3::{SegmentObject, SpanObject};
use skytrace::{Config, Instrument, Reporter, Segment, Tracer, entry_span, exit_span, trace};

#[derive(Debug, PartialEq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::num::ParseIntError> for Error {
    fn from(e: std::num::ParseIntError) -> Self {
        Error(e.to_string())
    }
}

// ---- free fns -------------------------------------------------------------------------------

#[trace]
fn free(a: u32) -> u32 {
    a + 1
}

static EVALUATIONS: AtomicUsize = AtomicUsize::new(0);

fn counted() -> u32 {
    EVALUATIONS.fetch_add(1, Ordering::SeqCst);
    7
}

/// Docs, `#[must_use]` and `cfg` stay.
#[must_use]
#[cfg(not(any()))]
#[trace(
    name = "generic",
    tags(len = x.len(), kind = "vip", db.type = "sql"),
    layer = Database,
    component = 5,
    skip_analysis
)]
fn generic<'a, T: Clone + 'a, I>(x: &'a [T], _extra: I) -> Vec<T>
where
    I: IntoIterator<Item = T>,
{
    #![allow(unused_variables)]
    let unused = 1;
    x.to_vec()
}

/// Only `sync_spans` calls it: it counts how often its tag is evaluated.
#[trace(tags(n = counted()))]
fn tagged() {}

#[trace(err)]
fn parse(s: &str) -> Result<u32, Error> {
    if s.is_empty() {
        return Err(Error("empty".into()));
    }
    let n: u32 = s.parse()?;
    Ok(n)
}

#[trace(err)]
fn parse_boxed(s: &str) -> Result<impl fmt::Display, Box<dyn std::error::Error + Send + Sync>> {
    let n: u32 = s.parse()?;
    Ok(n)
}

#[trace]
fn early(x: u32) -> Option<u32> {
    if x == 0 {
        return None;
    }
    let y = x.checked_sub(1)?;
    Some(y)
}

#[trace]
fn returns_impl(x: u32) -> impl fmt::Display {
    x
}

/// # Safety
/// `p` must be valid for reads.
#[trace]
unsafe fn raw(p: *const u8) -> u8 {
    unsafe { *p }
}

/// # Safety
/// `p` must be valid for reads.
#[trace(err)]
unsafe fn raw_err(p: *const u8) -> Result<u8, Error> {
    Ok(unsafe { *p })
}

#[trace]
extern "C" fn callback(x: i32) -> i32 {
    x
}

#[trace]
fn panics() {
    panic!("boom")
}

#[trace]
fn diverges() -> ! {
    panic!("never returns")
}

#[trace(component = skytrace::component::RUST)]
fn component_path() {}

#[trace(component = RUST)]
fn component_known() {}

// ---- methods, impl-block naming ---------------------------------------------------------------

pub struct Repo {
    items: Vec<u8>,
    name: String,
    addr: String,
}

#[trace]
impl Repo {
    #[trace]
    fn by_ref(&self) -> usize {
        self.items.len()
    }

    #[trace(err)]
    fn by_mut(&mut self) -> Result<&mut u8, Error> {
        let first = self.items.first_mut().ok_or_else(|| Error("none".into()))?;
        Ok(first)
    }

    #[skytrace::trace]
    fn by_mut_plain(&mut self) -> &mut Vec<u8> {
        &mut self.items
    }

    #[trace]
    fn by_value(self) -> Self {
        self
    }

    #[trace]
    fn boxed(self: Box<Self>) -> usize {
        self.items.len()
    }

    #[trace]
    fn pinned(mut self: Pin<&mut Self>) -> usize {
        self.as_mut().items.len()
    }

    #[trace(tags(name = self.name))]
    async fn async_ref(&self) -> &str {
        &self.name
    }

    #[trace(err)]
    async fn async_mut(&mut self) -> Result<&mut String, Error> {
        Ok(&mut self.name)
    }

    #[trace]
    async fn async_value(self) -> String {
        self.name
    }

    #[trace]
    fn fut(&self) -> impl Future<Output = usize> + '_ {
        async move { self.items.len() }
    }

    #[trace(err)]
    fn fut_err(&self) -> impl Future<Output = Result<usize, Error>> + '_ {
        async move {
            let n: usize = "3".parse()?;
            Ok(n + self.items.len())
        }
    }

    #[trace]
    fn fut_other(&self) -> impl Future<Output = u8> + Send + Unpin {
        if self.items.is_empty() {
            return std::future::ready(0);
        }
        std::future::ready(1)
    }

    #[trace(err)]
    fn fut_other_err(&self) -> impl Future<Output = Result<u8, Error>> + Send {
        std::future::ready(Err(Error("ready".into())))
    }

    #[trace]
    fn boxed_fut(&self) -> Pin<Box<dyn Future<Output = Result<u8, Error>> + Send + '_>> {
        Box::pin(async move {
            let n: u8 = "1".parse()?;
            Ok(n + self.items.len() as u8)
        })
    }

    #[exit_span(peer = self.addr, name = "GET:/stock", layer = Http, component = HTTP)]
    fn call(&self) -> HashMap<String, String> {
        let mut headers = HashMap::new();
        skytrace::inject(&mut headers);
        headers
    }

    #[exit_span(peer = "db:5432", tags(db.statement = "SELECT 1"), err, layer = Database)]
    async fn query(&self) -> Result<u8, Error> {
        Ok(1)
    }
}

// ---- traits -----------------------------------------------------------------------------------

trait Store {
    fn get(&self) -> u8;

    #[trace]
    fn default_method(&self) -> u8 {
        self.get()
    }
}

impl Store for Repo {
    #[trace]
    fn get(&self) -> u8 {
        1
    }
}

#[trace]
trait Named {
    fn name_of(&self) -> u8;

    #[trace]
    fn named_default(&self) -> u8 {
        self.name_of()
    }
}

impl Named for Repo {
    fn name_of(&self) -> u8 {
        2
    }
}

#[async_trait::async_trait]
trait AsyncStore {
    async fn load(&self, key: &str) -> Result<String, Error>;

    #[trace]
    async fn load_default(&self, key: &str) -> Result<String, Error> {
        self.load(key).await
    }
}

#[trace]
#[async_trait::async_trait]
impl AsyncStore for Repo {
    #[trace(err, tags(key = key))]
    async fn load(&self, key: &str) -> Result<String, Error> {
        if key.is_empty() {
            return Err(Error("no key".into()));
        }
        let n: u32 = key.parse()?;
        Ok(format!("{}{n}", self.name))
    }
}

pub struct Generic<T>(T);

#[trace]
impl<T: Clone + Send + Sync> Generic<T> {
    #[trace]
    async fn get(&self) -> T {
        self.0.clone()
    }
}

// ---- async fns --------------------------------------------------------------------------------

#[trace]
async fn no_ret() {}

#[trace]
async fn generic_async<T: fmt::Display + Send>(t: T) -> String {
    t.to_string()
}

#[trace]
async fn impl_arg(t: impl fmt::Display) -> impl fmt::Display {
    t.to_string()
}

#[trace]
async fn pattern_args((a, b): (u8, u8), _: u8) -> u8 {
    a + b
}

#[trace(err)]
async fn async_fails() -> Result<(), Error> {
    Err(Error("async bad".into()))
}

#[trace]
async fn forever() {
    std::future::pending::<()>().await
}

#[trace]
async fn outer() -> u32 {
    let (a, b) = tokio::join!(inner_a(), inner_b());
    a + b
}

#[trace]
async fn inner_a() -> u32 {
    tokio::task::yield_now().await;
    1
}

#[trace]
async fn inner_b() -> u32 {
    tokio::task::yield_now().await;
    2
}

// ---- entry spans ------------------------------------------------------------------------------

#[entry_span(carrier = headers, name = "GET:/users/{id}", layer = Http, component = 49, peer = remote)]
async fn handler(headers: &http::HeaderMap, remote: std::net::SocketAddr, id: u64) -> String {
    // Without `enable` the attribute is gone: arguments it alone used would be unused.
    let _ = (headers, remote);
    format!("{id}")
}

#[entry_span(carrier = headers, name = "GET:/in")]
async fn incoming(headers: HashMap<String, String>, repo: &Repo) -> HashMap<String, String> {
    drop(headers);
    let _ = repo.query().await;
    repo.call()
}

#[entry_span(carrier = request)]
async fn handler_request(request: http::Request<()>) -> usize {
    request.headers().len()
}

#[entry_span]
fn job() -> u8 {
    free(1) as u8
}

fn assert_send<T: Send>(_: T) {}

/// Instrumenting adds no `Send` requirement, and keeps every `Send` future `Send`.
fn futures_stay_send(repo: &Repo) {
    assert_send(repo.async_ref());
    assert_send(no_ret());
    assert_send(repo.load("1"));
    assert_send(handler_request(http::Request::new(())));
    assert_send(repo.fut_other());
}

// ---- the checks -------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<SegmentObject>>>);

impl Reporter for Collect {
    fn report(&self, segment: Segment) {
        self.0.lock().unwrap().push(segment.into_proto());
    }
}

fn tracer() -> (Tracer, Collect) {
    let collect = Collect::default();
    let config = Config::builder()
        .service_name("svc")
        .instance_name("svc-1")
        .build()
        .unwrap();
    (Tracer::new(&config, collect.clone()), collect)
}

fn span<'a>(segment: &'a SegmentObject, name: &str) -> &'a SpanObject {
    segment
        .spans
        .iter()
        .find(|s| s.operation_name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:#?}", segment.spans))
}

fn parent<'a>(segment: &'a SegmentObject, name: &str) -> &'a str {
    let parent = span(segment, name).parent_span_id;
    segment
        .spans
        .iter()
        .find(|s| s.span_id == parent)
        .map_or("<none>", |s| s.operation_name.as_str())
}

fn repo() -> Repo {
    Repo {
        items: vec![1],
        name: "n".into(),
        addr: "inventory:8080".into(),
    }
}

/// Whether the attributes instrument in this build. `cfg!(feature = "enable")` here cannot tell:
/// a proc macro is built for the host, and in a workspace build its features are resolved apart
/// from this test's (other crates turn `enable` on for it through `skytrace/enable`).
fn instrumented() -> bool {
    #[trace]
    fn probe() {}

    let (tracer, collect) = tracer();
    {
        let root = tracer.entry_span("probe-root", &());
        let _entered = root.enter();
        probe();
    }
    let segments = collect.0.lock().unwrap();
    segments[0].spans.len() == 2
}

/// Says in the test log which mode these tests ran in.
#[test]
fn mode() {
    let on = instrumented();
    eprintln!(
        "skytrace-macros forms: instrumentation {}",
        if on { "on" } else { "off" }
    );
    if cfg!(feature = "enable") {
        assert!(on, "built with `enable` but nothing was instrumented");
    }
}

#[test]
fn without_a_trace_values_flow_and_nothing_is_recorded() {
    assert_eq!(free(1), 2);
    assert_eq!(generic(&[1u8, 2], Vec::new()), [1, 2]);
    assert_eq!(parse("12"), Ok(12));
    assert_eq!(parse(""), Err(Error("empty".into())));
    assert!(parse("x").is_err());
    assert_eq!(parse_boxed("5").unwrap().to_string(), "5");
    assert_eq!(early(0), None);
    assert_eq!(early(3), Some(2));
    assert_eq!(returns_impl(4).to_string(), "4");
    let byte = 9u8;
    assert_eq!(unsafe { raw(&byte) }, 9);
    assert_eq!(unsafe { raw_err(&byte) }, Ok(9));
    assert_eq!(callback(3), 3);
    assert!(std::panic::catch_unwind(panics).is_err());
    assert!(std::panic::catch_unwind(|| diverges()).is_err());
    component_path();
    component_known();
    let mut r = repo();
    assert_eq!(r.by_ref(), 1);
    assert_eq!(*r.by_mut().unwrap(), 1);
    r.by_mut_plain().push(2);
    assert_eq!(Box::new(r.by_value()).boxed(), 2);
    let mut r = repo();
    assert_eq!(Pin::new(&mut r).pinned(), 1);
    assert_eq!(r.default_method(), 1);
    assert_eq!(r.named_default(), 2);
    assert!(r.call().is_empty());
    assert_eq!(job(), 2);
}

#[tokio::test]
async fn async_forms_without_a_trace() {
    let mut r = repo();
    assert_eq!(r.async_ref().await, "n");
    r.async_mut().await.unwrap().push('!');
    assert_eq!(r.fut().await, 1);
    assert_eq!(r.fut_err().await, Ok(4));
    assert_eq!(r.fut_other().await, 1);
    assert!(r.fut_other_err().await.is_err());
    assert_eq!(r.boxed_fut().await, Ok(2));
    assert_eq!(r.query().await, Ok(1));
    assert_eq!(r.load("7").await.unwrap(), "n!7");
    assert!(r.load("").await.is_err());
    assert_eq!(r.load_default("1").await.unwrap(), "n!1");
    assert_eq!(Generic(5u8).get().await, 5);
    no_ret().await;
    assert_eq!(generic_async(3).await, "3");
    assert_eq!(impl_arg(4).await.to_string(), "4");
    assert_eq!(pattern_args((1, 2), 0).await, 3);
    assert!(async_fails().await.is_err());
    assert_eq!(outer().await, 3);
    let addr = "127.0.0.1:1".parse().unwrap();
    assert_eq!(handler(&http::HeaderMap::new(), addr, 5).await, "5");
    assert_eq!(handler_request(http::Request::new(())).await, 0);
    assert_eq!(r.async_value().await, "n!");
    futures_stay_send(&repo());
}

#[test]
fn sync_spans() {
    let (tracer, collect) = tracer();
    EVALUATIONS.store(0, Ordering::SeqCst);
    tagged(); // no trace: the tag is still evaluated, once (when instrumented at all)
    let enabled = instrumented();
    let once = usize::from(enabled);
    assert_eq!(EVALUATIONS.load(Ordering::SeqCst), once);
    {
        let root = tracer.entry_span("root", &());
        let _entered = root.enter();
        free(1);
        tagged();
        let _ = generic(&[1u8], Vec::new());
        let _ = parse("x");
        let _ = parse("12");
        let mut r = repo();
        r.by_ref();
        let _ = r.by_mut();
        r.named_default();
        r.default_method();
        component_known();
        let _ = std::panic::catch_unwind(panics);
    }
    assert_eq!(EVALUATIONS.load(Ordering::SeqCst), 2 * once);
    let segments = collect.0.lock().unwrap();
    assert_eq!(segments.len(), 1);
    let s = &segments[0];
    if !enabled {
        assert_eq!(s.spans.len(), 1, "{:#?}", s.spans);
        return;
    }
    for name in [
        "free",
        "tagged",
        "generic",
        "parse",
        "Repo::by_ref",
        "Repo::by_mut",
        "Named::named_default",
        "default_method",
        "component_known",
        "panics",
    ] {
        assert_eq!(parent(s, name), "root", "{name}");
    }
    assert_eq!(parent(s, "get"), "default_method");
    let g = span(s, "generic");
    assert_eq!(g.span_layer, 1);
    assert_eq!(g.component_id, 5);
    assert!(g.skip_analysis);
    let tags: Vec<_> = g.tags.iter().map(|t| (&*t.key, &*t.value)).collect();
    assert_eq!(tags, [("len", "1"), ("kind", "vip"), ("db.type", "sql")]);
    assert_eq!(span(s, "tagged").tags[0].value, "7");
    assert_eq!(span(s, "component_known").component_id, 11000);
    let parses: Vec<_> = s
        .spans
        .iter()
        .filter(|x| x.operation_name == "parse")
        .collect();
    assert!(parses[0].is_error);
    let log = &parses[0].logs[0].data;
    assert!(
        log.iter()
            .any(|kv| kv.key == "message" && kv.value == "invalid digit found in string"),
        "{log:?}"
    );
    assert!(!parses[1].is_error);
    assert!(!span(s, "Repo::by_mut").is_error);
    assert!(span(s, "panics").is_error);
}

#[tokio::test]
async fn async_spans() {
    let (tracer, collect) = tracer();
    let root = tracer.entry_span("root", &());
    async {
        outer().await;
        let r = repo();
        let _ = r.load("5").await;
        let _ = r.load("").await;
        r.fut().await;
        let _ = r.fut_other_err().await;
        let _ = r.boxed_fut().await;
        Generic(1u8).get().await;
        let _ = async_fails().await;
        r.async_ref().await;
        // Dropped before completion.
        let mut never = Box::pin(forever());
        let _ = futures_poll_once(never.as_mut()).await;
        drop(never);
    }
    .in_span(root)
    .await;
    let segments = collect.0.lock().unwrap();
    let s = &segments[0];
    if !instrumented() {
        assert_eq!(s.spans.len(), 1, "{:#?}", s.spans);
        return;
    }
    assert_eq!(parent(s, "outer"), "root");
    assert_eq!(parent(s, "inner_a"), "outer");
    assert_eq!(parent(s, "inner_b"), "outer");
    let loads: Vec<_> = s
        .spans
        .iter()
        .filter(|x| x.operation_name == "Repo::load")
        .collect();
    assert_eq!(loads.len(), 2);
    assert!(!loads[0].is_error);
    assert_eq!(loads[0].tags[0].value, "5");
    assert!(loads[1].is_error);
    assert!(span(s, "Repo::fut_other_err").is_error);
    assert!(!span(s, "Repo::boxed_fut").is_error);
    assert!(span(s, "async_fails").is_error);
    assert_eq!(parent(s, "Generic::get"), "root");
    assert_eq!(span(s, "Repo::async_ref").tags[0].value, "n");
    let cancelled = span(s, "forever");
    assert!(
        cancelled
            .tags
            .iter()
            .any(|t| t.key == "cancelled" && t.value == "true")
    );
    for x in &s.spans {
        assert!(x.end_time >= x.start_time);
    }
}

/// Polls `f` once.
async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut f).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

#[tokio::test]
async fn entry_from_sw8_and_exit_injects() {
    use skytrace::Sw8Header;
    let (tracer, collect) = tracer();
    let previous = tracer.install_global();
    let sw8 = Sw8Header {
        sampled: true,
        trace_id: "trace-1".into(),
        parent_segment_id: "segment-5".into(),
        parent_span_id: 3,
        parent_service: "mesh".into(),
        parent_service_instance: "instance".into(),
        parent_endpoint: "/api/v1/health".into(),
        target_address: "example.com:8080".into(),
    };
    let headers = HashMap::from([("sw8".to_owned(), sw8.encode())]);
    let out = incoming(headers, &repo()).await;
    if let Some(previous) = previous {
        previous.install_global();
    }
    let segments = collect.0.lock().unwrap();
    // Other tests may start traces on the global tracer meanwhile (`job()`): look for ours.
    let ours = segments.iter().find(|s| {
        s.spans
            .first()
            .is_some_and(|f| f.operation_name == "GET:/in")
    });
    if !instrumented() {
        assert!(ours.is_none());
        assert!(out.is_empty());
        return;
    }
    let s = ours.expect("the segment of GET:/in");
    assert_eq!(s.trace_id, "trace-1");
    let entry = &s.spans[0];
    assert_eq!(entry.operation_name, "GET:/in");
    assert_eq!(entry.refs[0].parent_trace_segment_id, "segment-5");
    assert_eq!(entry.refs[0].parent_span_id, 3);
    let query = span(s, "Repo::query");
    assert_eq!(query.peer, "db:5432");
    assert_eq!(query.tags[0].key, "db.statement");
    let exit = span(s, "GET:/stock");
    assert_eq!(exit.peer, "inventory:8080");
    assert_eq!(exit.span_layer, 3);
    let header = Sw8Header::decode(&out["sw8"]).unwrap();
    assert_eq!(header.trace_id, "trace-1");
    assert_eq!(header.parent_segment_id, s.trace_segment_id);
    assert_eq!(header.parent_span_id, exit.span_id);
    assert_eq!(header.parent_endpoint, "GET:/in");
    assert_eq!(header.target_address, "inventory:8080");
}
