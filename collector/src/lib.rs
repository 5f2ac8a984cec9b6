//! A small in-process SkyWalking collector (an OAP stand-in) for tests, demos and benchmarks.
//!
//! [`Collector`] runs a real tonic gRPC server on a loopback port and implements the collector
//! services of the SkyWalking data-collect protocol v3: `TraceSegmentReportService`,
//! `ManagementService`, `LogReportService`, `MeterReportService`,
//! `ConfigurationDiscoveryService` and `EventService`, and profiling's `ProfileTask` and
//! `PprofTask` (serving one task of each kind, see [`CollectorBuilder::profile_task`]).
//! Everything it receives is recorded and can be read back
//! ([`Collector::segments`], [`Collector::pings`], ...), awaited ([`Collector::wait_for_segments`],
//! [`Collector::wait_for`]) or followed live ([`Collector::subscribe`],
//! [`Collector::subscribe_events`]). [`render_trace_tree`] draws received segments as a trace
//! tree, like SkyWalking's trace view, and [`CollectorBuilder::ui`] serves a web page that shows
//! them as a waterfall across services, with their logs, the instances, meters and events,
//! updated live.
//!
//! ```
//! use std::time::Duration;
//! use skytrace_collector::Collector;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! rt.block_on(async {
//!     let collector = Collector::start().await.unwrap();
//!     // Point an agent at `collector.addr()`, e.g. "127.0.0.1:40123"...
//!     assert!(collector.addr().ip().is_loopback());
//!     let segments = collector.wait_for_segments(0, Duration::from_millis(10)).await;
//!     assert!(segments.is_empty());
//!     collector.shutdown().await;
//! });
//! ```

#![warn(missing_docs)]

mod flame;
mod profiling;
mod service;
mod tree;
mod ui;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use skytrace_proto::v3::{
    Command, Commands, ConfigurationSyncRequest, InstancePingPkg, InstanceProperties,
    KeyStringValuePair, LogData, MeterData, SegmentObject,
};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;

pub use flame::render_profile;
pub use profiling::{PprofReport, PprofTaskSpec, ProfileReport, ProfileTaskSpec};
pub use skytrace_proto;
pub use tree::{Detail, render_trace_tree, render_trace_tree_with, render_trace_tree_with_logs};

/// How many not-yet-received items a lagging [`Collector::subscribe`] or
/// [`Collector::subscribe_events`] receiver may fall behind before it misses some.
const BROADCAST_CAPACITY: usize = 4096;

/// How long [`Collector::shutdown`] waits for open connections to drain before it gives up on
/// them (the listening socket is closed before that wait starts).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP/2 stream window in stall mode: the protocol's default (64 KiB - 1).
const STALL_STREAM_WINDOW: u32 = 65_535;

/// The HTTP/2 connection window in stall mode, room for 128 stalled streams.
const STALL_CONNECTION_WINDOW: u32 = 128 * STALL_STREAM_WINDOW;

/// Everything a [`Collector`] has received so far, in arrival order.
///
/// Read a copy with [`Collector::received`], or look at it in place from the predicate of
/// [`Collector::wait_for`].
///
/// ```
/// use skytrace_collector::Received;
///
/// let received = Received::default();
/// assert!(received.segments.is_empty() && received.rejected == 0);
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Received {
    /// Segments from `TraceSegmentReportService/collect` (stored as each one arrives) and
    /// `collectInSync`.
    pub segments: Vec<SegmentObject>,
    /// How many `TraceSegmentReportService/collect` calls came (an agent that keeps one call
    /// open for many segments makes fewer than one per batch).
    pub segment_calls: usize,
    /// Every `ManagementService/reportInstanceProperties` request.
    pub instance_properties: Vec<InstanceProperties>,
    /// Every `ManagementService/keepAlive` request.
    pub pings: Vec<InstancePingPkg>,
    /// Log records from `LogReportService/collect`, stored as each one arrives.
    pub logs: Vec<LogData>,
    /// Meter values. Like OAP, those of a `MeterReportService/collect` stream are stored only
    /// once the agent completes the stream; those of `collectBatch` one collection at a time.
    /// They are stored exactly as sent: only the first element of a stream usually carries
    /// `service`, `serviceInstance` and `timestamp`.
    pub meters: Vec<MeterData>,
    /// Every `ConfigurationDiscoveryService/fetchConfigurations` request.
    pub configuration_requests: Vec<ConfigurationSyncRequest>,
    /// Events from `EventService/collect` (an agent's `Start` and `Shutdown`), stored as each
    /// one arrives.
    pub service_events: Vec<skytrace_proto::v3::Event>,
    /// Each distinct value of the `authentication` metadata seen on any call, in first-seen
    /// order (also those of rejected calls).
    pub tokens: Vec<String>,
    /// How many calls were rejected with `UNAUTHENTICATED` (see
    /// [`CollectorBuilder::require_token`]).
    pub rejected: usize,
    /// How many calls were answered with the error chosen by [`CollectorBuilder::fail_calls`] or
    /// [`CollectorBuilder::fail_service`].
    pub failed_calls: usize,
    /// Every `ProfileTask/getProfileTaskCommands` request.
    pub profile_task_queries: Vec<skytrace_proto::v3::ProfileTaskCommandQuery>,
    /// Thread dumps from `ProfileTask/collectSnapshot` (the Java and Python agents').
    pub thread_snapshots: Vec<skytrace_proto::v3::ThreadSnapshot>,
    /// Profiles from `ProfileTask/goProfileReport`, each stored once its last chunk came.
    pub profile_reports: Vec<ProfileReport>,
    /// Every `ProfileTask/reportTaskFinish` request.
    pub profile_task_finishes: Vec<skytrace_proto::v3::ProfileTaskFinishReport>,
    /// Every `PprofTask/getPprofTaskCommands` request.
    pub pprof_task_queries: Vec<skytrace_proto::v10::PprofTaskCommandQuery>,
    /// Profiles from `PprofTask/collect`, each stored once its stream ended.
    pub pprof_reports: Vec<PprofReport>,
    /// [`Received::failed_calls`] by service (`skywalking.v3.LogReportService`).
    pub failed_by_service: std::collections::BTreeMap<String, usize>,
}

impl Received {
    fn count_failed(&mut self, service: &str) {
        self.failed_calls += 1;
        *self
            .failed_by_service
            .entry(service.to_owned())
            .or_default() += 1;
    }
}

/// One thing a [`Collector`] received, as delivered by [`Collector::subscribe_events`].
///
/// ```
/// use skytrace_collector::Event;
/// use skytrace_collector::skytrace_proto::v3::InstancePingPkg;
///
/// let event = Event::Ping(InstancePingPkg::default());
/// assert!(matches!(event, Event::Ping(_)));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A trace segment.
    Segment(SegmentObject),
    /// An instance-properties report.
    InstanceProperties(InstanceProperties),
    /// A keep-alive.
    Ping(InstancePingPkg),
    /// A log record.
    Log(LogData),
    /// The meter values of one completed `collect` stream or of one `collectBatch` collection.
    Meters(Vec<MeterData>),
    /// A configuration-discovery request.
    ConfigurationRequest(ConfigurationSyncRequest),
    /// An event of `EventService/collect` (an agent's `Start` or `Shutdown`).
    ServiceEvent(skytrace_proto::v3::Event),
    /// A profile of a trace-profiling task (`ProfileTask/goProfileReport`), all chunks in.
    ProfileReport(ProfileReport),
    /// A trace-profiling task finished on an instance (`ProfileTask/reportTaskFinish`).
    ProfileTaskFinish(skytrace_proto::v3::ProfileTaskFinishReport),
    /// An on-demand profile (`PprofTask/collect`), its stream ended.
    PprofReport(PprofReport),
    /// A call rejected for a missing or wrong `authentication` token.
    Rejected {
        /// The gRPC path of the call, e.g. `/skywalking.v3.ManagementService/keepAlive`.
        rpc: &'static str,
    },
}

/// State shared by the [`Collector`] handle and the gRPC handlers.
pub(crate) struct Shared {
    received: Mutex<Received>,
    /// Bumped on every change of `received`, to wake [`Collector::wait_for`].
    version: watch::Sender<u64>,
    segments_tx: broadcast::Sender<SegmentObject>,
    events_tx: broadcast::Sender<Event>,
    required_token: Option<String>,
    /// Every call (with an accepted token) is answered with this code.
    fail_calls: Option<tonic::Code>,
    /// TCP connections accepted so far.
    connections: AtomicU64,
    stall: bool,
    /// Count-only mode: segments are counted here, not decoded nor kept.
    count_only: bool,
    /// Services answered with an error of their own: `UNIMPLEMENTED` for an OAP without their
    /// receivers, another code for a broken one.
    answered: Vec<(String, tonic::Code)>,
    /// Whether `received` keeps what arrives (see [`CollectorBuilder::store`]).
    store: bool,
    /// Segments counted but not stored (count-only mode, or `store(false)`).
    counted: AtomicU64,
    /// Becomes `true` (or its sender is dropped) when the collector stops.
    shutdown: watch::Receiver<bool>,
    /// The dynamic configuration served, if any.
    dynamic_config: Mutex<Option<Served>>,
    /// Configuration-discovery commands sent so far (their `SerialNumber`).
    serial: AtomicU64,
    /// The profiling tasks served (`profiling.rs`).
    profiling: Mutex<profiling::State>,
    /// Raw bytes every `fetchConfigurations` is answered with, if set.
    raw_configuration_reply: Option<Arc<Vec<u8>>>,
    /// What the web view shows, when it is served (see [`CollectorBuilder::ui`]).
    ui: Option<Arc<ui::Store>>,
}

/// A dynamic configuration as `fetchConfigurations` serves it.
#[derive(Clone, Debug)]
struct Served {
    uuid: String,
    pairs: Vec<(String, String)>,
}

impl Served {
    fn new(pairs: Vec<(String, String)>) -> Served {
        // Like OAP, the UUID follows the content: the same pairs, the same UUID.
        use std::hash::{Hash, Hasher};
        #[allow(deprecated)] // SipHash with fixed keys: the same UUID in every process
        let mut hasher = std::hash::SipHasher::new();
        pairs.hash(&mut hasher);
        Served {
            uuid: format!("{:016x}", hasher.finish()),
            pairs,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Received> {
        // A panicking `wait_for` predicate may poison the lock; the data stays usable.
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the recorded data, then wakes waiters and publishes `event`.
    pub(crate) fn record(&self, f: impl FnOnce(&mut Received), event: Option<Event>) {
        if self.store {
            f(&mut self.lock());
        }
        self.version.send_modify(|v| *v = v.wrapping_add(1));
        if let Some(event) = event {
            if let Some(ui) = &self.ui {
                ui.observe(&event);
            }
            // No receiver is not an error.
            let _ = self.events_tx.send(event);
        }
    }

    /// `make()` if anybody listens to events or the web view is served (so nothing is cloned
    /// for nobody).
    pub(crate) fn event(&self, make: impl FnOnce() -> Event) -> Option<Event> {
        (self.events_tx.receiver_count() > 0 || self.ui.is_some()).then(make)
    }

    pub(crate) fn record_segment(&self, segment: SegmentObject) {
        // Stored before it is published, so a subscriber finds it in `segments()`.
        let live = (self.segments_tx.receiver_count() > 0).then(|| segment.clone());
        let event = self.event(|| Event::Segment(segment.clone()));
        if !self.store {
            self.counted.fetch_add(1, Ordering::Relaxed);
        }
        self.record(|r| r.segments.push(segment), event);
        if let Some(segment) = live {
            let _ = self.segments_tx.send(segment);
        }
    }

    pub(crate) fn stall(&self) -> bool {
        self.stall
    }

    pub(crate) fn raw_configuration_reply(&self) -> Option<Arc<Vec<u8>>> {
        self.raw_configuration_reply.clone()
    }

    pub(crate) fn count_only(&self) -> bool {
        self.count_only
    }

    /// The error every call of `service` (`skywalking.v3.EventService`) gets, if any; other
    /// than `UNIMPLEMENTED` it is counted in [`Received::failed_calls`].
    pub(crate) fn error_for(&self, service: &str) -> Option<tonic::Status> {
        let (_, code) = self.answered.iter().find(|(s, _)| s == service)?;
        if *code == tonic::Code::Unimplemented {
            return Some(tonic::Status::unimplemented("unknown service"));
        }
        self.record(|r| r.count_failed(service), None);
        Some(tonic::Status::new(
            *code,
            "failing this service's calls, as configured",
        ))
    }

    /// A segment received in count-only mode.
    pub(crate) fn count_segment(&self) {
        self.counted.fetch_add(1, Ordering::Relaxed);
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records the call's `authentication` token and checks it against the required one.
    pub(crate) fn authorize<T>(
        &self,
        rpc: &'static str,
        request: &tonic::Request<T>,
    ) -> Result<(), tonic::Status> {
        let token = request
            .metadata()
            .get("authentication")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let accepted = match &self.required_token {
            None => true,
            Some(required) => token.as_deref() == Some(required.as_str()),
        };
        if token.is_some() || !accepted {
            self.record(
                |r| {
                    if let Some(token) = token
                        && !r.tokens.contains(&token)
                    {
                        r.tokens.push(token);
                    }
                    if !accepted {
                        r.rejected += 1;
                    }
                },
                (!accepted).then_some(Event::Rejected { rpc }),
            );
        }
        if !accepted {
            return Err(tonic::Status::unauthenticated(
                "missing or wrong `authentication` token",
            ));
        }
        if let Some(code) = self.fail_calls {
            let service = rpc.split('/').nth(1).unwrap_or_default();
            self.record(|r| r.count_failed(service), None);
            return Err(tonic::Status::new(
                code,
                "failing every call, as configured",
            ));
        }
        Ok(())
    }

    /// The answer to a `fetchConfigurations` that sent `uuid`: nothing when no configuration
    /// is served or the agent has this one, else a `ConfigurationDiscoveryCommand`.
    pub(crate) fn configuration_for(&self, uuid: &str) -> Commands {
        let served = self
            .dynamic_config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(served) = served.filter(|s| s.uuid != uuid) else {
            return Commands::default();
        };
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let pair = |key: &str, value: String| KeyStringValuePair {
            key: key.to_owned(),
            value,
        };
        let mut args = vec![
            pair("SerialNumber", serial.to_string()),
            pair("UUID", served.uuid),
        ];
        args.extend(served.pairs.into_iter().map(|(k, v)| pair(&k, v)));
        Commands {
            commands: vec![Command {
                command: "ConfigurationDiscoveryCommand".to_owned(),
                args,
            }],
        }
    }

    /// Completes when the collector stops.
    pub(crate) async fn stopped(&self) {
        let mut shutdown = self.shutdown.clone();
        // An error means the sender is gone: the collector was dropped.
        let _ = shutdown.wait_for(|stop| *stop).await;
    }

    /// Runs `f` unless the collector stops first (then `None`).
    pub(crate) async fn unless_stopped<F: Future>(&self, f: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = f => Some(out),
            () = self.stopped() => None,
        }
    }
}

/// A running collector: a tonic gRPC server on its own port, recording everything agents send.
///
/// Dropping it stops the server (without waiting); [`Collector::shutdown`] stops it and waits
/// until the port is released. The server runs on the tokio runtime that called
/// [`CollectorBuilder::start`], so that runtime must keep running while agents report.
///
/// ```
/// use skytrace_collector::Collector;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// rt.block_on(async {
///     let collector = Collector::builder().require_token("secret").start().await.unwrap();
///     assert_eq!(collector.segment_count(), 0);
///     assert!(collector.tokens().is_empty());
///     collector.shutdown().await;
/// });
/// ```
pub struct Collector {
    addr: SocketAddr,
    tls: bool,
    ui_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    ui_task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("addr", &self.addr)
            .field("ui_addr", &self.ui_addr)
            .field("stall", &self.shared.stall)
            .field("require_token", &self.shared.required_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A builder to choose the address, stall mode or a required token.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().stall(true);
    /// # drop(builder);
    /// ```
    pub fn builder() -> CollectorBuilder {
        CollectorBuilder::default()
    }

    /// Starts a collector on `127.0.0.1` and a free port: `Collector::builder().start()`.
    ///
    /// Must be called within a tokio runtime with I/O and time enabled.
    ///
    /// ```
    /// use skytrace_collector::Collector;
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// rt.block_on(async {
    ///     let collector = Collector::start().await.unwrap();
    ///     assert_ne!(collector.addr().port(), 0);
    /// });
    /// ```
    pub async fn start() -> io::Result<Collector> {
        Self::builder().start().await
    }

    /// The address the server listens on (the actual port when started on port 0).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// let backend = collector.addr().to_string(); // e.g. for SW_AGENT_COLLECTOR_BACKEND_SERVICES
    /// assert!(collector.addr().ip().is_loopback());
    /// assert!(backend.starts_with("127."));
    /// # });
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's URL for a tonic client: `http://{addr}`.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert_eq!(collector.url(), format!("http://{}", collector.addr()));
    /// # });
    /// ```
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The address the web view is served on, when it is (see [`CollectorBuilder::ui`]); the
    /// actual port when it was asked on port 0.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert_eq!(collector.ui_addr(), None); // not asked for
    /// # });
    /// ```
    pub fn ui_addr(&self) -> Option<SocketAddr> {
        self.ui_addr
    }

    /// The web view's address for a browser, `http://127.0.0.1:8080/`, when it is served. An
    /// unspecified address (`0.0.0.0`, `[::]`) is given as the loopback one of its family.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use skytrace_collector::Collector;
    ///
    /// let collector = Collector::builder()
    ///     .ui("127.0.0.1:0".parse().unwrap())
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// let url = collector.ui_url().unwrap();
    /// assert_eq!(url, format!("http://{}/", collector.ui_addr().unwrap()));
    /// # });
    /// ```
    pub fn ui_url(&self) -> Option<String> {
        let mut addr = self.ui_addr?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Some(format!("http://{addr}/"))
    }

    /// Serves `pairs` as the dynamic configuration from now on (see
    /// [`CollectorBuilder::dynamic_config`]); an empty list serves a configuration without
    /// pairs, which sends every agent's settings back to their configured values.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// collector.set_dynamic_config([("agent.trace.ignore_path", "/health")]);
    /// collector.set_dynamic_config(Vec::<(String, String)>::new());
    /// # });
    /// ```
    pub fn set_dynamic_config<K: Into<String>, V: Into<String>>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        *self
            .shared
            .dynamic_config
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Served::new(pairs));
    }

    /// A copy of everything received so far.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.received().pings.is_empty());
    /// # });
    /// ```
    pub fn received(&self) -> Received {
        self.shared.lock().clone()
    }

    /// Forgets everything received so far (tokens and the rejected count included).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// collector.clear();
    /// assert_eq!(collector.segment_count(), 0);
    /// # });
    /// ```
    pub fn clear(&self) {
        self.shared.counted.store(0, Ordering::Relaxed);
        self.shared.record(|r| *r = Received::default(), None);
    }

    /// How many TCP connections the collector has accepted so far: what an agent reconnecting
    /// too eagerly shows up in.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert_eq!(collector.connections(), 0);
    /// # });
    /// ```
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// All segments received so far, in arrival order.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.segments().is_empty());
    /// # });
    /// ```
    pub fn segments(&self) -> Vec<SegmentObject> {
        self.shared.lock().segments.clone()
    }

    /// How many segments were received so far.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert_eq!(collector.segment_count(), 0);
    /// # });
    /// ```
    pub fn segment_count(&self) -> usize {
        // Count-only mode counts what `collect` streamed; `collectInSync` still stores.
        let counted = usize::try_from(self.shared.counted.load(Ordering::Relaxed));
        self.shared
            .lock()
            .segments
            .len()
            .saturating_add(counted.unwrap_or(usize::MAX))
    }

    /// Waits until at least `n` segments have arrived or `timeout` has passed, then returns all
    /// segments received so far (possibly fewer than `n` after a timeout).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// let segments = collector.wait_for_segments(1, Duration::from_millis(20)).await;
    /// assert!(segments.is_empty()); // nobody reported
    /// # });
    /// ```
    pub async fn wait_for_segments(&self, n: usize, timeout: Duration) -> Vec<SegmentObject> {
        self.wait_for(timeout, |r| r.segments.len() >= n).await;
        self.segments()
    }

    /// Waits until `pred` holds for what has been received, or `timeout` has passed. Returns
    /// whether `pred` held.
    ///
    /// `pred` is called with the collector's data locked: it must not call methods of the
    /// collector itself.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// let got_ping = collector
    ///     .wait_for(Duration::from_millis(20), |r| r.pings.iter().any(|p| p.service == "shop"))
    ///     .await;
    /// assert!(!got_ping);
    /// # });
    /// ```
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&Received) -> bool) -> bool {
        let mut changes = self.shared.version.subscribe();
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        loop {
            changes.borrow_and_update();
            if pred(&self.shared.lock()) {
                return true;
            }
            let changed = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, changes.changed()).await,
                None => Ok(changes.changed().await),
            };
            if !matches!(changed, Ok(Ok(()))) {
                return pred(&self.shared.lock());
            }
        }
    }

    /// Every `reportInstanceProperties` request received so far.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.instance_properties().is_empty());
    /// # });
    /// ```
    pub fn instance_properties(&self) -> Vec<InstanceProperties> {
        self.shared.lock().instance_properties.clone()
    }

    /// Every `keepAlive` request received so far.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.pings().is_empty());
    /// # });
    /// ```
    pub fn pings(&self) -> Vec<InstancePingPkg> {
        self.shared.lock().pings.clone()
    }

    /// Each distinct value of the `authentication` metadata seen on any call so far, in
    /// first-seen order (rejected calls included).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.tokens().is_empty());
    /// # });
    /// ```
    pub fn tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.clone()
    }

    /// Every log record received so far.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.logs().is_empty());
    /// # });
    /// ```
    pub fn logs(&self) -> Vec<LogData> {
        self.shared.lock().logs.clone()
    }

    /// Every meter value received so far (see [`Received::meters`] for when they count as
    /// received).
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.meters().is_empty());
    /// # });
    /// ```
    pub fn meters(&self) -> Vec<MeterData> {
        self.shared.lock().meters.clone()
    }

    /// Every `fetchConfigurations` request received so far.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// assert!(collector.configuration_requests().is_empty());
    /// # });
    /// ```
    pub fn configuration_requests(&self) -> Vec<ConfigurationSyncRequest> {
        self.shared.lock().configuration_requests.clone()
    }

    /// Each segment as it arrives from now on. A receiver that falls more than a few thousand
    /// segments behind gets [`broadcast::error::RecvError::Lagged`].
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// let mut segments = collector.subscribe();
    /// assert!(segments.try_recv().is_err()); // nothing yet
    /// # });
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<SegmentObject> {
        self.shared.segments_tx.subscribe()
    }

    /// Everything as it arrives from now on: segments, properties, keep-alives, logs, meters,
    /// configuration requests and rejected calls.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::start().await.unwrap();
    /// let mut events = collector.subscribe_events();
    /// assert!(events.try_recv().is_err()); // nothing yet
    /// # });
    /// ```
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.shared.events_tx.subscribe()
    }

    /// Stops the server and waits until it is gone: the port is released, so a new collector
    /// can bind the same address. Open `collect` streams (stalled ones too) are ended with
    /// `UNAVAILABLE`.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// use skytrace_collector::Collector;
    ///
    /// let first = Collector::start().await.unwrap();
    /// let addr = first.addr();
    /// first.shutdown().await;
    /// let second = Collector::builder().addr(addr).start().await.unwrap();
    /// assert_eq!(second.addr(), addr);
    /// # });
    /// ```
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.ui_task.take() {
            // It stops accepting at once and drops its connections (long polls included).
            let _ = task.await;
        }
        if let Some(mut task) = self.task.take() {
            // The listener is closed as soon as the server sees the signal; connections then
            // drain. Don't wait forever on a peer that keeps one open.
            if tokio::time::timeout(DRAIN_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Configures and starts a [`Collector`].
///
/// ```
/// use skytrace_collector::Collector;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// rt.block_on(async {
///     let collector = Collector::builder()
///         .addr("127.0.0.1:0".parse().unwrap())
///         .require_token("secret")
///         .start()
///         .await
///         .unwrap();
///     collector.shutdown().await;
/// });
/// ```
#[derive(Clone, Debug)]
pub struct CollectorBuilder {
    addr: SocketAddr,
    stall: bool,
    count_only: bool,
    answered: Vec<(String, tonic::Code)>,
    store: bool,
    required_token: Option<String>,
    fail_calls: Option<tonic::Code>,
    tls: Option<Tls>,
    dynamic_config: Option<Vec<(String, String)>>,
    profile_task: Option<ProfileTaskSpec>,
    pprof_task: Option<PprofTaskSpec>,
    pprof_max_size: usize,
    raw_configuration_reply: Option<Arc<Vec<u8>>>,
    ui: Option<SocketAddr>,
    ui_keep: usize,
}

/// TLS as served: the server's certificate chain and key, and the CA of the client
/// certificates it requires (mutual TLS), all PEM.
#[derive(Clone)]
struct Tls {
    chain: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("mutual", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

/// A loopback address for one collector (see [`CollectorBuilder::addr`]).
fn loopback_of_its_own() -> Ipv4Addr {
    if !cfg!(target_os = "linux") {
        return Ipv4Addr::LOCALHOST;
    }
    // std's `RandomState` is randomly keyed per instance: enough to spread collectors over the
    // 16 million addresses, without a random-number crate.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    let [a, b, c, ..] = hasher.finish().to_le_bytes();
    // Not .0 or .255 in the last place, which some tools read as network or broadcast.
    Ipv4Addr::new(127, a, b, c.clamp(1, 254))
}

impl Default for CollectorBuilder {
    fn default() -> Self {
        CollectorBuilder {
            addr: SocketAddr::from((loopback_of_its_own(), 0)),
            stall: false,
            count_only: false,
            answered: Vec::new(),
            store: true,
            required_token: None,
            fail_calls: None,
            tls: None,
            dynamic_config: None,
            profile_task: None,
            pprof_task: None,
            pprof_max_size: profiling::DEFAULT_PPROF_MAX_SIZE,
            raw_configuration_reply: None,
            ui: None,
            ui_keep: ui::DEFAULT_KEEP,
        }
    }
}

impl CollectorBuilder {
    /// The address to listen on. Default: a free port on a loopback address of the collector's
    /// own — on Linux a random one of `127.0.0.0/8`, elsewhere `127.0.0.1`. Agents still
    /// reconnecting to an earlier collector (a test's, after it ended) then cannot reach this one
    /// when the system hands it the same port number: several collectors in one test process
    /// each see only their own agents.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().addr("127.0.0.1:11800".parse().unwrap());
    /// # drop(builder);
    /// ```
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Stall mode, a stuck OAP: the streaming `collect` calls (traces, logs, meters and
    /// `collectBatch`) are accepted but never read from nor answered, so the client's HTTP/2
    /// flow control backs up (each stream's window is then the HTTP/2 default of 64 KiB).
    /// Unary calls (`keepAlive`, `reportInstanceProperties`, `collectInSync`,
    /// `fetchConfigurations`) are still answered, also on the same connection, as long as
    /// fewer than about 128 streams are stalled on it. Stalled calls end with `UNAVAILABLE`
    /// when the collector stops. Default off.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().stall(true);
    /// # drop(builder);
    /// ```
    pub fn stall(mut self, yes: bool) -> Self {
        self.stall = yes;
        self
    }

    /// Count-only mode, for benchmarks: trace segments (`TraceSegmentReportService/collect`) are
    /// read off the stream and counted ([`Collector::segment_count`]) but not decoded, kept or
    /// published — OAP's work, which would otherwise take CPU the benchmark's load needs. So
    /// [`Collector::segments`], [`Collector::wait_for_segments`] and subscribers see none of
    /// them (`collectInSync` still stores). The stream's gRPC framing is still checked, the token
    /// too, and the call answered as usual. Default off.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().count_only(true);
    /// # drop(builder);
    /// ```
    pub fn count_only(mut self, yes: bool) -> Self {
        self.count_only = yes;
        self
    }

    /// Answers every call of `service` (its full name, `skywalking.v3.EventService`) with
    /// `UNIMPLEMENTED`, as an OAP without that receiver (an older one, or one configured
    /// without it) does. May be given several times.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .without_service("skywalking.v3.EventService")
    ///     .without_service("skywalking.v3.ConfigurationDiscoveryService");
    /// # drop(builder);
    /// ```
    pub fn without_service(mut self, service: impl Into<String>) -> Self {
        self.answered
            .push((service.into(), tonic::Code::Unimplemented));
        self
    }

    /// Answers every call of `service` (its full name) with `code`, counted in
    /// [`Received::failed_calls`]: one broken receiver in an OAP whose others work.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .fail_service("skywalking.v3.EventService", tonic::Code::Internal);
    /// # drop(builder);
    /// ```
    pub fn fail_service(mut self, service: impl Into<String>, code: tonic::Code) -> Self {
        self.answered.push((service.into(), code));
        self
    }

    /// Whether what arrives is kept in memory, for [`Collector::received`],
    /// [`Collector::segments`], [`Collector::wait_for`] and the other readers. Default on: a
    /// test's collector keeps everything, for ever. Off, nothing is kept, so memory stays flat
    /// however long the collector runs: arrivals are only published to subscribers
    /// ([`Collector::subscribe`], [`Collector::subscribe_events`]) and segments counted
    /// ([`Collector::segment_count`]); the readers see nothing, and tokens and rejected calls
    /// are not recorded. The `skytrace-collector` binary runs so, keeping a bounded window of
    /// recent segments of its own.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().store(false);
    /// # drop(builder);
    /// ```
    pub fn store(mut self, yes: bool) -> Self {
        self.store = yes;
        self
    }

    /// Rejects every call whose `authentication` metadata is not `token` with
    /// `UNAUTHENTICATED`. Default: no token required.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().require_token("secret");
    /// # drop(builder);
    /// ```
    pub fn require_token(mut self, token: impl Into<String>) -> Self {
        self.required_token = Some(token.into());
        self
    }

    /// An OAP answering errors: every call whose token is accepted is answered with `code`
    /// (before anything is read or stored), and counted in [`Received::failed_calls`].
    /// Default: calls succeed.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder().fail_calls(tonic::Code::Internal);
    /// # drop(builder);
    /// ```
    pub fn fail_calls(mut self, code: tonic::Code) -> Self {
        self.fail_calls = Some(code);
        self
    }

    /// Serves TLS (rustls) with this certificate chain (the server's own first) and private
    /// key, both PEM; [`Collector::url`] becomes `https://`. The agent must trust the chain's
    /// CA and connect with TLS. Default: plaintext.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .tls(b"-----BEGIN CERTIFICATE-----...".to_vec(), b"-----BEGIN PRIVATE KEY-----...".to_vec());
    /// # drop(builder);
    /// ```
    pub fn tls(mut self, cert_chain_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        let client_ca = self.tls.take().and_then(|tls| tls.client_ca);
        self.tls = Some(Tls {
            chain: cert_chain_pem.into(),
            key: key_pem.into(),
            client_ca,
        });
        self
    }

    /// Mutual TLS: with [`CollectorBuilder::tls`], requires every client to present a
    /// certificate signed by this CA (PEM); others are refused during the handshake.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .tls(b"chain".to_vec(), b"key".to_vec())
    ///     .require_client_cert(b"ca".to_vec());
    /// # drop(builder);
    /// ```
    pub fn require_client_cert(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        let ca = Some(ca_pem.into());
        match &mut self.tls {
            Some(tls) => tls.client_ca = ca,
            None => {
                self.tls = Some(Tls {
                    chain: Vec::new(),
                    key: Vec::new(),
                    client_ca: ca,
                })
            }
        }
        self
    }

    /// Serves a dynamic configuration, as OAP's configuration discovery does:
    /// `fetchConfigurations` answers a `ConfigurationDiscoveryCommand` with `SerialNumber`,
    /// `UUID` (which follows the pairs) and these pairs, or nothing when the agent sent the
    /// current UUID. Change it later with [`Collector::set_dynamic_config`]. Default: no
    /// configuration (every fetch is answered with nothing).
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .dynamic_config([("agent.trace.ignore_path", "/health,/metrics")]);
    /// # drop(builder);
    /// ```
    pub fn dynamic_config<K: Into<String>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.dynamic_config = Some(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Answers every `fetchConfigurations` with `bytes` as the reply message, whatever they
    /// hold: what a hostile or broken OAP could send (a string that is not UTF-8, a reply over
    /// the agent's message limit). The request is recorded as usual.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .configuration_reply_bytes(vec![0x0a, 0x02, 0xff, 0xfe]);
    /// ```
    pub fn configuration_reply_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.raw_configuration_reply = Some(Arc::new(bytes));
        self
    }

    /// Also serves the web view on `addr` (HTTP): one page, compiled into the collector, with
    /// the traces received (a list to filter, and each trace as a waterfall across services
    /// with its spans' tags, logs and log records), the instances with their properties and
    /// last keep-alive, meters as small time series, events and log records; it follows new
    /// data as it arrives. [`Collector::ui_url`] is its address. It keeps the last
    /// [`CollectorBuilder::ui_keep`] segments and log records, whatever [`CollectorBuilder::store`]
    /// says; in count-only mode it sees no `collect`ed segments. Give a loopback address (as
    /// `127.0.0.1:8080`): what agents send can hold personal data, and bound to loopback the
    /// page answers only requests that name a loopback address or `localhost`. Default: no web
    /// view.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .ui("127.0.0.1:8080".parse().unwrap());
    /// # drop(builder);
    /// ```
    pub fn ui(mut self, addr: SocketAddr) -> Self {
        self.ui = Some(addr);
        self
    }

    /// How many of the latest segments (and, apart, log records) the web view keeps; older
    /// ones are dropped and counted, so memory stays bounded however long the collector runs.
    /// Default 10 000; at least 1.
    ///
    /// ```
    /// let builder = skytrace_collector::Collector::builder()
    ///     .ui("127.0.0.1:0".parse().unwrap())
    ///     .ui_keep(1_000);
    /// # drop(builder);
    /// ```
    pub fn ui_keep(mut self, segments: usize) -> Self {
        self.ui_keep = segments.max(1);
        self
    }

    /// Binds the address and starts serving on the current tokio runtime (which needs I/O and
    /// time enabled). Fails if the address (or the web view's) cannot be bound, or the TLS
    /// certificate or key cannot be used.
    ///
    /// ```
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let collector = skytrace_collector::Collector::builder().start().await.unwrap();
    /// # collector.shutdown().await;
    /// # });
    /// ```
    pub async fn start(self) -> io::Result<Collector> {
        let listener = TcpListener::bind(self.addr).await?;
        let addr = listener.local_addr()?;
        let ui_listener = match self.ui {
            Some(ui_addr) => Some(TcpListener::bind(ui_addr).await.map_err(|e| {
                io::Error::new(e.kind(), format!("the web view's address {ui_addr}: {e}"))
            })?),
            None => None,
        };
        let ui_store = ui_listener
            .as_ref()
            .map(|_| Arc::new(ui::Store::new(self.ui_keep)));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            received: Mutex::new(Received::default()),
            version: watch::Sender::new(0),
            segments_tx: broadcast::Sender::new(BROADCAST_CAPACITY),
            events_tx: broadcast::Sender::new(BROADCAST_CAPACITY),
            required_token: self.required_token,
            fail_calls: self.fail_calls,
            connections: AtomicU64::new(0),
            stall: self.stall,
            count_only: self.count_only,
            answered: self.answered,
            store: self.store,
            counted: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
            dynamic_config: Mutex::new(self.dynamic_config.map(Served::new)),
            serial: AtomicU64::new(0),
            profiling: profiling::State::new(
                self.profile_task,
                self.pprof_task,
                self.pprof_max_size,
            ),
            raw_configuration_reply: self.raw_configuration_reply,
            ui: ui_store.clone(),
        });

        let routes = service::Routes::new(service::Handler::new(Arc::clone(&shared)));
        let mut server = tonic::transport::Server::builder();
        if self.stall {
            // Small stream windows so a stalled stream backs up early; a large connection
            // window so that unread data of stalled streams doesn't block the other calls.
            server = server
                .initial_stream_window_size(STALL_STREAM_WINDOW)
                .initial_connection_window_size(STALL_CONNECTION_WINDOW);
        }
        let tls = self.tls.is_some();
        if let Some(Tls {
            chain,
            key,
            client_ca,
        }) = self.tls
        {
            use tonic::transport::{Certificate, Identity, ServerTlsConfig};
            let mut config = ServerTlsConfig::new().identity(Identity::from_pem(chain, key));
            if let Some(ca) = client_ca {
                config = config.client_ca_root(Certificate::from_pem(ca));
            }
            server = server
                .tls_config(config)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }

        let counted = Arc::clone(&shared);
        let incoming = TcpListenerStream::new(listener).map(move |conn| {
            conn.inspect(|stream| {
                counted.connections.fetch_add(1, Ordering::Relaxed);
                // Small messages on loopback: don't let Nagle delay them.
                let _ = stream.set_nodelay(true);
            })
        });
        let mut ui_addr = None;
        let mut ui_task = None;
        if let (Some(listener), Some(store)) = (ui_listener, ui_store) {
            ui_addr = Some(listener.local_addr()?);
            ui_task = Some(tokio::spawn(ui::serve(
                listener,
                store,
                shutdown_rx.clone(),
            )));
        }
        let mut stop = shutdown_rx;
        let signal = async move {
            // An error means the `Collector` was dropped: stop too.
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let task = tokio::spawn(async move {
            if let Err(err) = server
                .serve_with_incoming_shutdown(routes, incoming, signal)
                .await
            {
                eprintln!("skytrace-collector: server on {addr} failed: {err}");
            }
        });

        Ok(Collector {
            addr,
            tls,
            ui_addr,
            shared,
            shutdown: shutdown_tx,
            task: Some(task),
            ui_task,
        })
    }
}
