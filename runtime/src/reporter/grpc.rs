//! [`GrpcReporter`]: streams segments to OAP over gRPC.
//!
//! Design: the service's threads encode a finished segment of a few spans (see [`super::wire`]
//! for why there) and `try_send` it into a bounded queue; everything that touches
//! the network runs on one background thread with its own single-threaded tokio runtime, so the
//! reporter neither needs nor disturbs the service's runtime. The worker connects to one backend
//! at a time (round-robin, failing over on error, backing off while none answers), reports the
//! instance properties, sends keep-alives, and delivers the queue in batches: one `collect`
//! client stream per batch, so each batch is acknowledged before the next one is taken.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use skytrace_proto::v3::management_service_client::ManagementServiceClient;
use skytrace_proto::v3::{Commands, InstancePingPkg, InstanceProperties, KeyStringValuePair};
use tokio::sync::{mpsc, watch};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::wire::{Outgoing, Queued};
use super::{Reporter, ReporterStats};
use crate::config::Config;
use crate::segment::Segment;

/// Most segments sent on one `collect` stream.
const BATCH: usize = 500;
/// Longest a segment waits for others to share its `collect` stream.
const LINGER: Duration = Duration::from_millis(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a `collect` stream or management call may take before the backend counts as stalled.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The Java agent re-sends instance properties every 10 heartbeats.
const PROPERTIES_EVERY: u64 = 10;
/// How long the worker goes on delivering what is queued once its `GrpcReporter` is dropped
/// without [`Reporter::shutdown`]: as if shut down with this timeout.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const DISCONNECTED: u8 = 2;

#[derive(Default)]
struct Shared {
    state: AtomicU8,
    /// TCP connections opened so far. tonic reconnects a channel by itself after a backend
    /// restarts; this count is how the worker notices, to report the instance properties again.
    connections: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    fn set_state(&self, state: u8, backend: &str, why: &dyn std::fmt::Display) {
        let before = self.state.swap(state, Ordering::Relaxed);
        // One line per change of state, never one per attempt.
        if before != state {
            match state {
                CONNECTED => eprintln!("skytrace: reporting to {backend}"),
                _ => eprintln!("skytrace: OAP at {backend} unreachable ({why}); retrying"),
            }
        }
    }
}

struct Control {
    shutdown: watch::Sender<Option<Instant>>,
    done: std_mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

/// Streams segments to OAP's `TraceSegmentReportService/collect` over gRPC.
///
/// Never blocks the service: [`Reporter::report`] puts the segment in a bounded queue (size
/// `SW_AGENT_QUEUE_SIZE`) or, when it is full, drops it and counts it in
/// [`ReporterStats::dropped`]. Usually started by [`crate::init`]. [`Reporter::shutdown`]
/// delivers what is queued within a timeout and stops the background thread; a reporter
/// dropped without it (its last tracer gone) does the same with a timeout of 5 s.
///
/// ```no_run
/// use std::time::Duration;
/// use skytrace::{Config, GrpcReporter, Reporter, Tracer};
///
/// let config = Config::builder().backend_services("127.0.0.1:11800").build().unwrap();
/// let reporter = GrpcReporter::start(&config).unwrap();
/// let tracer = Tracer::new(&config, reporter);
/// drop(tracer.entry_span("job", &()));
/// let stats = tracer.reporter().shutdown(Duration::from_secs(5));
/// println!("sent {} dropped {}", stats.sent, stats.dropped);
/// ```
pub struct GrpcReporter {
    queue: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
    control: Mutex<Option<Control>>,
}

impl std::fmt::Debug for GrpcReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcReporter")
            .field("stats", &self.stats())
            .finish()
    }
}

struct Settings {
    backends: Vec<String>,
    service: String,
    instance: String,
    token: Option<AsciiMetadataValue>,
    heartbeat: Duration,
}

impl GrpcReporter {
    /// Starts the background reporter thread for `config`'s backends.
    pub fn start(config: &Config) -> std::io::Result<GrpcReporter> {
        let token = match &config.authentication {
            Some(t) => Some(MetadataValue::try_from(t.as_str()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "SW_AGENT_AUTHENTICATION is not valid gRPC metadata",
                )
            })?),
            None => None,
        };
        let settings = Settings {
            backends: config.backends.clone(),
            service: config.service_name.clone(),
            instance: config.instance_name.clone(),
            token,
            heartbeat: config.heartbeat_period,
        };
        let (queue, rx) = mpsc::channel(config.queue_size);
        let shared = Arc::new(Shared {
            state: AtomicU8::new(CONNECTING),
            ..Shared::default()
        });
        let (shutdown, shutdown_rx) = watch::channel(None);
        let (done_tx, done) = std_mpsc::channel();
        let worker_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("skytrace-reporter".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(
                        Worker {
                            settings,
                            queue: rx,
                            shared: worker_shared,
                            shutdown: shutdown_rx,
                            orphaned: std::cell::Cell::new(None),
                            next_backend: 0,
                        }
                        .run(),
                    ),
                    Err(e) => {
                        eprintln!("skytrace: cannot start the reporter runtime: {e}");
                        worker_shared.state.store(DISCONNECTED, Ordering::Relaxed);
                    }
                }
                let _ = done_tx.send(());
            })?;
        Ok(GrpcReporter {
            queue,
            shared,
            control: Mutex::new(Some(Control {
                shutdown,
                done,
                thread,
            })),
        })
    }
}

impl Reporter for GrpcReporter {
    fn report(&self, segment: Segment) {
        // A place in the queue first: a segment that would be dropped is not encoded.
        match self.queue.try_reserve() {
            Ok(permit) => permit.send(Queued::new(segment)),
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn is_available(&self) -> bool {
        self.shared.state.load(Ordering::Relaxed) != DISCONNECTED
    }

    fn stats(&self) -> ReporterStats {
        ReporterStats {
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            connected: self.shared.state.load(Ordering::Relaxed) == CONNECTED,
        }
    }

    fn shutdown(&self, timeout: Duration) -> ReporterStats {
        let control = self
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(control) = control {
            let _ = control.shutdown.send(Some(Instant::now() + timeout));
            // The worker stops at the deadline; a little slack covers its last call returning.
            if control
                .done
                .recv_timeout(timeout + Duration::from_millis(500))
                .is_ok()
            {
                let _ = control.thread.join();
            }
        }
        self.stats()
    }
}

struct Worker {
    settings: Settings,
    queue: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<Option<Instant>>,
    /// Set once the `GrpcReporter` is gone without a shutdown: the deadline it gets instead.
    orphaned: std::cell::Cell<Option<Instant>>,
    next_backend: usize,
}

/// Why the worker left a connection.
enum Leave {
    /// The backend failed: connect again (to the next backend).
    Reconnect,
    /// Shut down, or every sender is gone.
    Stop,
}

impl Worker {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.deadline_passed() || (self.deadline().is_some() && self.queue.is_empty()) {
                break;
            }
            let backend =
                self.settings.backends[self.next_backend % self.settings.backends.len()].clone();
            self.next_backend = self.next_backend.wrapping_add(1);
            match self.connect(&backend).await {
                Ok(channel) => {
                    backoff = BACKOFF_MIN;
                    if let Leave::Stop = self.serve(channel, &backend).await {
                        break;
                    }
                }
                Err(e) => {
                    self.shared
                        .set_state(DISCONNECTED, &backend, &ErrorChain(&*e));
                    // Try the next backend at once; back off once every backend has failed.
                    if self
                        .next_backend
                        .is_multiple_of(self.settings.backends.len())
                    {
                        self.sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
        // What could not be delivered is lost; count it rather than losing it silently.
        self.queue.close();
        while self.queue.try_recv().is_ok() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// When to stop: the shutdown's deadline, or, once the `GrpcReporter` was dropped without
    /// one, [`ORPHAN_GRACE`] from when that was noticed. (Before this, a dropped reporter whose
    /// backend was down retried for ever, and its waits, which end early on a shutdown signal,
    /// ended at once: a thread spinning on connection attempts.)
    fn deadline(&self) -> Option<Instant> {
        if let Some(deadline) = *self.shutdown.borrow() {
            return Some(deadline);
        }
        if let Some(deadline) = self.orphaned.get() {
            return Some(deadline);
        }
        // The sender lives in the `GrpcReporter`; it is gone when the reporter is, and so are
        // the queue's senders (a closed queue with nothing in it has nothing left to deliver).
        if self.shutdown.has_changed().is_err() || self.queue.is_closed() {
            let deadline = Instant::now() + ORPHAN_GRACE;
            self.orphaned.set(Some(deadline));
            return Some(deadline);
        }
        None
    }

    fn deadline_passed(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// How long a call may take: the call timeout, cut short by a shutdown deadline.
    fn call_timeout(&self) -> Duration {
        match self.deadline() {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(CALL_TIMEOUT),
            None => CALL_TIMEOUT,
        }
    }

    /// Sleeps for `d`, waking early when a shutdown is requested.
    async fn sleep(&mut self, d: Duration) {
        let deadline = self.deadline();
        if deadline.is_some() {
            tokio::time::sleep(d.min(Duration::from_millis(50))).await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.shutdown.changed() => {}
        }
    }

    async fn connect(&self, backend: &str) -> Result<Channel, Box<dyn std::error::Error>> {
        let endpoint = Endpoint::from_shared(format!("http://{backend}"))?
            .connect_timeout(CONNECT_TIMEOUT.min(self.call_timeout()))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let connector = CountingConnector {
            shared: Arc::clone(&self.shared),
        };
        Ok(endpoint.connect_with_connector(connector).await?)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.settings.token {
            request
                .metadata_mut()
                .insert("authentication", token.clone());
        }
        request.set_timeout(self.call_timeout());
        request
    }

    async fn serve(&mut self, channel: Channel, backend: &str) -> Leave {
        let mut management = ManagementServiceClient::new(channel.clone());
        if let Err(e) = self.report_properties(&mut management).await {
            self.shared.set_state(DISCONNECTED, backend, &e);
            return Leave::Reconnect;
        }
        self.shared.set_state(CONNECTED, backend, &"");
        let mut reported_on = self.shared.connections.load(Ordering::Relaxed);
        let mut segments = tonic::client::Grpc::new(channel);
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await; // the first tick is immediate; properties were just sent
        let mut beats: u64 = 0;
        loop {
            let connections = self.shared.connections.load(Ordering::Relaxed);
            if connections != reported_on {
                // The channel reconnected underneath (a restarted backend): introduce this
                // instance again, as after any reconnect.
                reported_on = connections;
                if let Err(e) = self.report_properties(&mut management).await {
                    self.shared.set_state(DISCONNECTED, backend, &e);
                    return Leave::Reconnect;
                }
            }
            let first = if self.deadline().is_some() {
                match self.queue.try_recv() {
                    Ok(segment) => segment,
                    Err(_) => return Leave::Stop,
                }
            } else {
                tokio::select! {
                    segment = self.queue.recv() => match segment {
                        Some(segment) => segment,
                        None => return Leave::Stop,
                    },
                    _ = heartbeat.tick() => {
                        beats += 1;
                        crate::time::resync();
                        let result = if beats.is_multiple_of(PROPERTIES_EVERY) {
                            self.report_properties(&mut management).await
                        } else {
                            self.keep_alive(&mut management).await
                        };
                        if let Err(e) = result {
                            self.shared.set_state(DISCONNECTED, backend, &e);
                            return Leave::Reconnect;
                        }
                        continue;
                    }
                    _ = self.shutdown.changed() => continue,
                }
            };
            if self.deadline_passed() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return Leave::Stop;
            }
            let mut batch = Vec::with_capacity(BATCH.min(self.queue.len() + 1));
            batch.push(first);
            // Each `collect` stream costs an HTTP/2 stream and a reply: under steady traffic,
            // waiting a few milliseconds for company makes one stream carry many segments.
            // Not while shutting down, when only what is queued counts.
            // The linger is a plain sleep, not a wait on the queue: a waiting receiver is woken by
            // every segment sent, and that wake-up (a futex call on the service's thread, a
            // context switch on this one) cost more than encoding and sending the segment.
            self.drain_into(&mut batch);
            if batch.len() < BATCH && self.deadline().is_none() {
                self.sleep(LINGER).await;
                self.drain_into(&mut batch);
            }
            let count = batch.len() as u64;
            let stream = tokio_stream::iter(batch.into_iter().map(Queued::into_outgoing));
            let request = self.request(stream);
            let timeout = self.call_timeout();
            match tokio::time::timeout(timeout, collect(&mut segments, request)).await {
                Ok(Ok(_)) => {
                    self.shared.sent.fetch_add(count, Ordering::Relaxed);
                    self.shared.set_state(CONNECTED, backend, &"");
                }
                Ok(Err(status)) => {
                    self.shared.failed.fetch_add(count, Ordering::Relaxed);
                    if reconnect_on(&status) {
                        self.shared
                            .set_state(DISCONNECTED, backend, &status.message());
                        return Leave::Reconnect;
                    }
                }
                Err(_) => {
                    self.shared.failed.fetch_add(count, Ordering::Relaxed);
                    self.shared
                        .set_state(DISCONNECTED, backend, &"collect stream stalled");
                    return Leave::Reconnect;
                }
            }
        }
    }

    /// Moves queued segments into `batch`, up to [`BATCH`], without waiting.
    fn drain_into(&mut self, batch: &mut Vec<Queued>) {
        while batch.len() < BATCH {
            match self.queue.try_recv() {
                Ok(segment) => batch.push(segment),
                Err(_) => break,
            }
        }
    }

    async fn report_properties(
        &self,
        client: &mut ManagementServiceClient<Channel>,
    ) -> Result<(), tonic::Status> {
        let properties = crate::host::instance_properties()
            .into_iter()
            .map(|(key, value)| KeyStringValuePair { key, value })
            .collect();
        let request = self.request(InstanceProperties {
            service: self.settings.service.clone(),
            service_instance: self.settings.instance.clone(),
            properties,
            layer: String::new(),
        });
        client.report_instance_properties(request).await.map(drop)
    }

    async fn keep_alive(
        &self,
        client: &mut ManagementServiceClient<Channel>,
    ) -> Result<(), tonic::Status> {
        let request = self.request(InstancePingPkg {
            service: self.settings.service.clone(),
            service_instance: self.settings.instance.clone(),
            layer: String::new(),
        });
        client.keep_alive(request).await.map(drop)
    }
}

/// Opens plain TCP connections for tonic, counting them (see [`Shared::connections`]).
#[derive(Clone)]
struct CountingConnector {
    shared: Arc<Shared>,
}

impl tower_service::Service<http::Uri> for CountingConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            // `[::1]` in a URI is `::1` to the resolver.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(11800);
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            shared.connections.fetch_add(1, Ordering::Relaxed);
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// An error with its sources, for one readable line ("transport error: connection refused").
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// `TraceSegmentReportService/collect`, with segments encoded by us ([`Outgoing`]) rather than
/// converted to `SegmentObject` first.
async fn collect(
    grpc: &mut tonic::client::Grpc<Channel>,
    request: tonic::Request<impl tokio_stream::Stream<Item = Outgoing> + Send + 'static>,
) -> Result<tonic::Response<Commands>, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("collector not ready: {e}")))?;
    let path =
        http::uri::PathAndQuery::from_static("/skywalking.v3.TraceSegmentReportService/collect");
    let codec = tonic_prost::ProstCodec::<Outgoing, Commands>::default();
    grpc.client_streaming(request, path, codec).await
}

/// Statuses after which the connection itself is suspect; others (say, a rejected token) are
/// answers from a healthy backend.
fn reconnect_on(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Internal
    )
}
