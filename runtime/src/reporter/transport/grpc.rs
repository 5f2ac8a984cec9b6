//! The gRPC transport: one connection at a time to one of the configured backends.
//!
//! - **Connecting** is lazy: the first call connects (through [`TcpConnector`], where TLS will
//!   wrap in). tonic's channel reconnects by itself when a connection that served a call drops
//!   (a restarted backend); the connector counts connections so the worker can introduce the
//!   instance again ([`Transport::session`]), and refuses a reconnect before any call succeeded
//!   (which would double the attempts against a backend that accepts and closes).
//! - **Failing over**: a failure that puts the connection in doubt (unreachable, reset, no answer
//!   within the timeout, `UNAVAILABLE` and the like) drops it and moves to the next backend.
//! - **Backing off**: after every failed attempt, connect or call, the next call waits. Within a
//!   round of the backends, [`PACE`] apart (so at most 10 attempts a second, whatever their
//!   number); after a full round of failures, or a failure that moves to no other backend, the
//!   [`Backoff`] delay, which grows 1.6× per failure up to 30 s and resets only once a call
//!   succeeds. A refused token (`UNAUTHENTICATED`, `PERMISSION_DENIED`) waits the longest
//!   delay at once.
//! - **Authenticating**: the token goes in every call's `authentication` metadata, as the Java
//!   agent sends it.
//! - **TLS** ([`super::tls`]): `https://` endpoints with tonic's rustls client around our
//!   connector. Certificate trouble is a failure like any other (`Trouble::Tls`): said once,
//!   backed off, new traces paused; each new connection reads the files again.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use skytrace_proto::v3::configuration_discovery_service_client::ConfigurationDiscoveryServiceClient;
use skytrace_proto::v3::event_service_client::EventServiceClient;
use skytrace_proto::v3::log_report_service_client::LogReportServiceClient;
use skytrace_proto::v3::management_service_client::ManagementServiceClient;
use skytrace_proto::v3::meter_report_service_client::MeterReportServiceClient;
use skytrace_proto::v3::profile_task_client::ProfileTaskClient;
use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, Event, GoProfileData, InstancePingPkg, InstanceProperties,
    LogData, MeterDataCollection, ProfileTaskCommandQuery, ProfileTaskFinishReport,
};
use skytrace_proto::v10::pprof_task_client::PprofTaskClient;
use skytrace_proto::v10::{PprofData, PprofProfilingStatus, PprofTaskCommandQuery};
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::connector::TcpConnector;
use super::framed;
use super::tls;
use super::{CallError, Refusal, RefusalKind, Transport};
use crate::config::TlsFiles;
use crate::reporter::backoff::Backoff;
use crate::reporter::batch::Batch;
use crate::reporter::message::{self, Failure, Peer, Trouble};

/// The least time between two attempts on different backends of one round.
pub(crate) const PACE: Duration = Duration::from_millis(100);

/// What the gRPC transport needs from the configuration.
#[derive(Debug)]
pub(crate) struct GrpcSettings {
    /// `host:port` each, at least one.
    pub(crate) backends: Vec<String>,
    pub(crate) token: Option<AsciiMetadataValue>,
    pub(crate) max_message_bytes: usize,
    /// TLS, when on.
    pub(crate) tls: Option<TlsFiles>,
}

#[derive(Debug)]
pub(crate) struct GrpcTransport {
    settings: GrpcSettings,
    link: RefCell<Link>,
    /// Held while a connection is being made, so that signals calling at once make one.
    connecting: tokio::sync::Mutex<()>,
    /// Held by a call made before the backend has answered one: until it has, calls go one at
    /// a time, so that a backend that refuses the token, or is not there, sees one call per
    /// attempt rather than one per signal.
    first_call: tokio::sync::Mutex<()>,
    connections: Arc<AtomicU64>,
}

/// The connection's state. Borrowed only between `.await`s: the signals' calls interleave.
#[derive(Debug)]
struct Link {
    /// The backend in use, or to try next.
    current: usize,
    /// Backends that failed since the last success or the last full back-off.
    failed_in_round: usize,
    channel: Option<Channel>,
    /// Moves on whenever the channel is given up: a failure seen by a call made on an older
    /// one was already booked (several signals see one broken connection at once).
    generation: u64,
    /// The channel's connector's permission to connect again (see [`TcpConnector`]).
    may_reconnect: Arc<AtomicBool>,
    backoff: Backoff,
    /// Whether a call succeeded on the current channel.
    answered: bool,
    ready_at: Option<Instant>,
    /// The failure that set `ready_at`, for a call made before it.
    last_failure: Option<Failure>,
}

impl GrpcTransport {
    pub(crate) fn new(mut settings: GrpcSettings) -> GrpcTransport {
        if settings.backends.is_empty() {
            // The configuration requires one; never index an empty list.
            settings.backends.push("127.0.0.1:11800".to_owned());
        }
        GrpcTransport {
            settings,
            link: RefCell::new(Link {
                current: 0,
                failed_in_round: 0,
                channel: None,
                generation: 0,
                may_reconnect: Arc::new(AtomicBool::new(false)),
                backoff: Backoff::new(),
                answered: false,
                ready_at: None,
                last_failure: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
            first_call: tokio::sync::Mutex::new(()),
            connections: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The connection to the current backend, made if there is none, with its generation.
    async fn channel(&self, timeout: Duration) -> Result<(Channel, u64), Failure> {
        if let Some(found) = self.usable()? {
            return Ok(found);
        }
        let _connecting = self.connecting.lock().await;
        // Another signal may have connected, or failed to, while this one waited.
        if let Some(found) = self.usable()? {
            return Ok(found);
        }
        let (backend, generation) = {
            let link = self.link.borrow();
            (self.backend_at(link.current).to_owned(), link.generation)
        };
        // TLS, when on, is our connector's: tonic speaks HTTP/2 over what it hands back.
        let endpoint = match Endpoint::from_shared(format!("http://{backend}")) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                let cause = format!("not a valid address ({})", message::cause(&e));
                return Err(self.fail(generation, Trouble::Unreachable, cause, true));
            }
        };
        let endpoint = endpoint
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let tls = match &self.settings.tls {
            // Another backend would not help a file that cannot be used: no failover.
            Some(files) => match tls::client_config(files) {
                Ok(config) => Some(config),
                Err(cause) => return Err(self.fail(generation, Trouble::Tls, cause, false)),
            },
            None => None,
        };
        let may_connect = Arc::new(AtomicBool::new(true));
        self.link.borrow_mut().may_reconnect = Arc::clone(&may_connect);
        let connector = TcpConnector {
            connections: Arc::clone(&self.connections),
            may_connect,
            tls,
        };
        // The connector bounds the TCP connect; this bounds the HTTP/2 handshake after it.
        match tokio::time::timeout(timeout, endpoint.connect_with_connector(connector)).await {
            Ok(Ok(channel)) => {
                let mut link = self.link.borrow_mut();
                link.channel = Some(channel.clone());
                link.answered = false;
                Ok((channel, link.generation))
            }
            Ok(Err(e)) => match tls::trouble(&e, self.mutual_tls()) {
                Some(cause) => Err(self.fail(generation, Trouble::Tls, cause, true)),
                None => Err(self.fail(generation, Trouble::Unreachable, message::cause(&e), true)),
            },
            Err(_) => {
                let cause = format!("no HTTP/2 handshake within {} s", timeout.as_secs());
                Err(self.fail(generation, Trouble::Stalled, cause, true))
            }
        }
    }

    /// The channel in use, if there is one and the transport is not backing off.
    fn usable(&self) -> Result<Option<(Channel, u64)>, Failure> {
        let link = self.link.borrow();
        if let Some(at) = link.ready_at
            && at > Instant::now()
        {
            // A call made during the back-off (another signal's failure just set it).
            let mut failure = link.last_failure.clone().unwrap_or_else(|| Failure {
                trouble: Trouble::Unreachable,
                peer: Peer::Oap,
                backend: self.backend_at(link.current).to_owned(),
                cause: "backing off".to_owned(),
                retry_in: Duration::ZERO,
                next_backend: None,
            });
            failure.retry_in = at.saturating_duration_since(Instant::now());
            return Err(failure);
        }
        Ok(link
            .channel
            .clone()
            .map(|channel| (channel, link.generation)))
    }

    fn backend_at(&self, index: usize) -> &str {
        &self.settings.backends[index % self.settings.backends.len()]
    }

    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.settings.token {
            request
                .metadata_mut()
                .insert("authentication", token.clone());
        }
        request.set_timeout(timeout);
        request
    }

    /// Makes one call on the connection: `make` gets the channel. For the segments' call
    /// (`segments`), no answer within `timeout` counts against the connection (a black hole),
    /// and so does a refusal when another backend could take them.
    async fn call<R, F, Fut>(
        &self,
        timeout: Duration,
        segments: bool,
        make: F,
    ) -> Result<R, CallError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        crate::reporter::quiet::keep_this_thread_quiet();
        let _alone = if self.link.borrow().answered {
            None
        } else {
            let alone = self.first_call.lock().await;
            (!self.link.borrow().answered).then_some(alone)
        };
        let (channel, generation) = self.channel(timeout).await.map_err(CallError::Link)?;
        match tokio::time::timeout(timeout, make(channel)).await {
            Ok(Ok(response)) => {
                self.answered(generation);
                Ok(response.into_inner())
            }
            // tonic's own deadline (the `grpc-timeout` it sends) may fire first: the same case.
            Ok(Err(status)) if is_deadline(&status) => {
                let cause = format!("no answer within {} s", timeout.as_secs_f64().round());
                if segments {
                    Err(CallError::Link(self.fail(
                        generation,
                        Trouble::Stalled,
                        cause,
                        true,
                    )))
                } else {
                    Err(CallError::Timeout(cause))
                }
            }
            Ok(Err(status)) => match self.failed_call(&status, generation) {
                CallError::Refused(refusal) if segments => {
                    Err(self.refused_segments(refusal, generation))
                }
                other => Err(other),
            },
            Err(_) => {
                let cause = format!("no answer within {} s", timeout.as_secs_f64().round());
                if segments {
                    Err(CallError::Link(self.fail(
                        generation,
                        Trouble::Stalled,
                        cause,
                        true,
                    )))
                } else {
                    Err(CallError::Timeout(cause))
                }
            }
        }
    }

    /// One segments' `collect` call with `body` (see `framed`).
    async fn collect_segments_body(
        &self,
        body: tonic::body::Body,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let token = self.settings.token.as_ref();
        self.call(timeout, true, |channel| async move {
            framed::collect(channel, body, token, timeout)
                .await
                .map(tonic::Response::new)
        })
        .await
    }

    /// A call on `generation`'s channel was answered (with its result or an error status of
    /// the backend's): the connection works.
    fn answered(&self, generation: u64) {
        let mut link = self.link.borrow_mut();
        if link.generation != generation {
            return;
        }
        link.may_reconnect.store(true, Ordering::Relaxed);
        link.answered = true;
        link.backoff.reset();
        link.failed_in_round = 0;
        link.ready_at = None;
        link.last_failure = None;
    }

    /// What a call's error status means: the connection's failure, or the backend's answer.
    fn failed_call(&self, status: &tonic::Status, generation: u64) -> CallError {
        let mutual = self.mutual_tls();
        // A TLS 1.3 server refuses a client certificate after the client's side of the
        // handshake is done: the refusal comes with the first call.
        if let Some(cause) = tls::trouble(status, mutual) {
            return CallError::Link(self.fail(generation, Trouble::Tls, cause, true));
        }
        let answered = self.link.borrow().answered;
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => {
                // The token goes with every call: no signal can get through.
                let cause = status_cause(status);
                return CallError::Link(self.fail(generation, Trouble::TokenRefused, cause, false));
            }
            _ => {}
        }
        // A status with a source was made here, by tonic, from a connection error; one
        // without came from the backend.
        if std::error::Error::source(status).is_some() {
            // Or the refusal of a certificate closed the connection before its alert reached
            // the call (tonic tried to reconnect, which the connector refuses before any
            // answer): the connection is gone before any answer.
            if self.settings.tls.is_some() && !answered {
                let cause = tls::closed_after_handshake(mutual);
                return CallError::Link(self.fail(generation, Trouble::Tls, cause, true));
            }
            let mut cause = status_cause(status);
            if self.settings.tls.is_none() && !answered {
                cause = tls::plaintext_hint(cause);
            }
            return CallError::Link(self.fail(generation, Trouble::Unreachable, cause, true));
        }
        // The backend answered: the connection works, whatever it thinks of this call.
        self.answered(generation);
        let kind = match status.code() {
            Code::Unimplemented => RefusalKind::Absent,
            Code::ResourceExhausted | Code::OutOfRange => RefusalKind::TooLarge,
            _ => RefusalKind::Failed,
        };
        CallError::Refused(Refusal {
            kind,
            cause: status_cause(status),
        })
    }

    fn mutual_tls(&self) -> bool {
        self.settings
            .tls
            .as_ref()
            .is_some_and(|tls| tls.identity.is_some())
    }

    /// Books a failure of `generation`'s connection: moves to the next backend when
    /// `reconnect`, and sets when the next attempt may be made. A failure of a connection
    /// already given up changes nothing (it was booked when it was given up).
    fn fail(&self, generation: u64, trouble: Trouble, cause: String, reconnect: bool) -> Failure {
        let mut link = self.link.borrow_mut();
        let count = self.settings.backends.len();
        if link.generation != generation
            && let Some(failure) = &link.last_failure
        {
            return failure.clone();
        }
        let backend = self.backend_at(link.current).to_owned();
        if reconnect {
            link.channel = None;
            link.generation += 1;
            link.answered = false;
            link.current = (link.current + 1) % count;
            link.failed_in_round += 1;
        }
        let retry_in = if trouble == Trouble::TokenRefused {
            // Another backend of the same cluster would refuse it too.
            link.failed_in_round = 0;
            link.backoff.give_up_for_now()
        } else if reconnect && link.failed_in_round < count {
            PACE
        } else {
            link.failed_in_round = 0;
            link.backoff.fail()
        };
        link.ready_at = Some(Instant::now() + retry_in);
        let next_backend =
            (count > 1 && reconnect).then(|| self.backend_at(link.current).to_owned());
        let failure = Failure {
            trouble,
            peer: Peer::Oap,
            backend,
            cause,
            retry_in,
            next_backend,
        };
        link.last_failure = Some(failure.clone());
        failure
    }

    /// The segments' call met a refusal: with several backends, another may take the
    /// segments, so the connection moves on (every signal follows). With one, it stays.
    fn refused_segments(&self, refusal: Refusal, generation: u64) -> CallError {
        if self.settings.backends.len() > 1 && refusal.kind != RefusalKind::Absent {
            return CallError::Link(self.fail(generation, Trouble::Error, refusal.cause, true));
        }
        CallError::Refused(refusal)
    }
}

/// Whether `status` is tonic's own deadline for the call (the `grpc-timeout` it sent), not an
/// answer or a failure of the connection.
fn is_deadline(status: &tonic::Status) -> bool {
    let mut next = std::error::Error::source(status);
    while let Some(e) = next {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A failed call's cause in a few words: the connection error tonic saw, or the status OAP
/// answered (`UNAUTHENTICATED: missing or wrong token`).
fn status_cause(status: &tonic::Status) -> String {
    if let Some(source) = std::error::Error::source(status) {
        return message::join_causes(
            std::iter::once(status.message().to_owned()).chain(chain(source)),
        );
    }
    let code = code_name(status.code());
    if status.message().is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {}", status.message())
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut texts = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        texts.push(e.to_string());
        next = e.source();
    }
    texts
}

/// The status code as gRPC's documents spell it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Transport for GrpcTransport {
    fn backend(&self) -> String {
        self.backend_at(self.link.borrow().current).to_owned()
    }

    fn ready_at(&self) -> Option<Instant> {
        self.link.borrow().ready_at
    }

    fn session(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn is_answering(&self) -> bool {
        self.link.borrow().answered
    }

    fn max_message_bytes(&self) -> usize {
        self.settings.max_message_bytes
    }

    async fn collect_segments(
        &self,
        segments: Batch,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        // Framed here, once: a retry after a failure is a later batch, not this one again.
        let body = framed::whole_body(segments.into_body());
        self.collect_segments_body(body, timeout).await
    }

    fn streams_segments(&self) -> bool {
        true
    }

    async fn collect_segments_streamed(
        &self,
        frames: tokio::sync::mpsc::Receiver<bytes::Bytes>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        self.collect_segments_body(framed::streamed_body(frames), timeout)
            .await
    }

    async fn collect_logs(
        &self,
        logs: Vec<LogData>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(tokio_stream::iter(logs), timeout);
        let max = self.settings.max_message_bytes;
        self.call(timeout, false, |channel| async move {
            let mut client = LogReportServiceClient::new(channel).max_encoding_message_size(max);
            client.collect(request).await
        })
        .await
    }

    async fn collect_meters(
        &self,
        reports: Vec<MeterDataCollection>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(tokio_stream::iter(reports), timeout);
        let max = self.settings.max_message_bytes;
        self.call(timeout, false, |channel| async move {
            let mut client = MeterReportServiceClient::new(channel).max_encoding_message_size(max);
            client.collect_batch(request).await
        })
        .await
    }

    async fn report_properties(
        &self,
        properties: InstanceProperties,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(properties, timeout);
        self.call(timeout, false, |channel| async move {
            ManagementServiceClient::new(channel)
                .report_instance_properties(request)
                .await
        })
        .await
    }

    async fn keep_alive(
        &self,
        ping: InstancePingPkg,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(ping, timeout);
        self.call(timeout, false, |channel| async move {
            ManagementServiceClient::new(channel)
                .keep_alive(request)
                .await
        })
        .await
    }

    async fn fetch_configurations(
        &self,
        request: ConfigurationSyncRequest,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(request, timeout);
        self.call(timeout, false, |channel| async move {
            ConfigurationDiscoveryServiceClient::new(channel)
                .fetch_configurations(request)
                .await
        })
        .await
    }

    async fn report_events(
        &self,
        events: Vec<Event>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(tokio_stream::iter(events), timeout);
        self.call(timeout, false, |channel| async move {
            EventServiceClient::new(channel).collect(request).await
        })
        .await
    }
    async fn profile_task_commands(
        &self,
        query: ProfileTaskCommandQuery,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(query, timeout);
        self.call(timeout, false, |channel| async move {
            ProfileTaskClient::new(channel)
                .get_profile_task_commands(request)
                .await
        })
        .await
    }

    async fn report_profile(
        &self,
        chunks: Vec<GoProfileData>,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(tokio_stream::iter(chunks), timeout);
        self.call(timeout, false, |channel| async move {
            ProfileTaskClient::new(channel)
                .go_profile_report(request)
                .await
        })
        .await
    }

    async fn report_task_finish(
        &self,
        finish: ProfileTaskFinishReport,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(finish, timeout);
        self.call(timeout, false, |channel| async move {
            ProfileTaskClient::new(channel)
                .report_task_finish(request)
                .await
        })
        .await
    }

    async fn pprof_task_commands(
        &self,
        query: PprofTaskCommandQuery,
        timeout: Duration,
    ) -> Result<Commands, CallError> {
        let request = self.request(query, timeout);
        self.call(timeout, false, |channel| async move {
            PprofTaskClient::new(channel)
                .get_pprof_task_commands(request)
                .await
        })
        .await
    }

    async fn upload_pprof(
        &self,
        metadata: PprofData,
        content: Vec<PprofData>,
        timeout: Duration,
    ) -> Result<PprofProfilingStatus, CallError> {
        // The metadata goes first and is answered before the content is sent, as OAP and the
        // Go agent do: a profile OAP refuses (too large) is never sent.
        let (tx, rx) = tokio::sync::mpsc::channel::<PprofData>(4);
        let request = self.request(tokio_stream::wrappers::ReceiverStream::new(rx), timeout);
        self.call(timeout, false, |channel| async move {
            let _ = tx.send(metadata).await;
            let mut answers = PprofTaskClient::new(channel)
                .collect(request)
                .await?
                .into_inner();
            let status = answers
                .message()
                .await?
                .map_or(PprofProfilingStatus::PprofExecutionTaskError, |a| {
                    a.status()
                });
            if status == PprofProfilingStatus::PprofProfilingSuccess {
                for chunk in content {
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
            }
            drop(tx);
            while answers.message().await?.is_some() {}
            Ok(tonic::Response::new(status))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(backends: &[&str]) -> GrpcTransport {
        GrpcTransport::new(GrpcSettings {
            backends: backends.iter().map(|b| b.to_string()).collect(),
            token: None,
            max_message_bytes: 100,
            tls: None,
        })
    }

    /// A failure of the connection in use now.
    fn fail(t: &GrpcTransport, trouble: Trouble, reconnect: bool) -> Failure {
        let generation = t.link.borrow().generation;
        t.fail(generation, trouble, "x".into(), reconnect)
    }

    #[test]
    fn a_round_of_backends_is_paced_then_backed_off() {
        let t = transport(&["a:1", "b:2", "c:3"]);
        let f = fail(&t, Trouble::Unreachable, true);
        assert_eq!((f.backend.as_str(), f.retry_in), ("a:1", PACE));
        assert_eq!(f.next_backend.as_deref(), Some("b:2"));
        assert_eq!(fail(&t, Trouble::Unreachable, true).retry_in, PACE);
        // The third failure ends the round: the back-off's first delay.
        let f = fail(&t, Trouble::Unreachable, true);
        assert!(f.retry_in > PACE && f.retry_in <= Duration::from_millis(600));
        assert_eq!(t.backend(), "a:1");
        // The next round's end waits longer.
        fail(&t, Trouble::Unreachable, true);
        fail(&t, Trouble::Unreachable, true);
        let g = fail(&t, Trouble::Unreachable, true);
        assert!(g.retry_in >= Duration::from_millis(640), "{g:?}");
    }

    #[test]
    fn one_backend_backs_off_on_every_failure() {
        let t = transport(&["a:1"]);
        let first = fail(&t, Trouble::Unreachable, true).retry_in;
        let second = fail(&t, Trouble::Error, false).retry_in;
        assert!(first >= Duration::from_millis(400) && second >= Duration::from_millis(640));
        assert!(fail(&t, Trouble::Error, true).next_backend.is_none());
    }

    #[test]
    fn a_connection_given_up_is_booked_once_however_many_calls_saw_it_fail() {
        let t = transport(&["a:1", "b:2"]);
        let generation = t.link.borrow().generation;
        let first = t.fail(generation, Trouble::Unreachable, "reset".into(), true);
        // The other signals' calls on the same connection fail too: nothing moves again.
        for _ in 0..5 {
            let again = t.fail(generation, Trouble::Unreachable, "reset".into(), true);
            assert_eq!(again.backend, first.backend);
        }
        assert_eq!(t.backend(), "b:2");
        assert_eq!(t.link.borrow().failed_in_round, 1);
        // A success seen late on the old connection resets nothing either.
        t.answered(generation);
        assert!(t.ready_at().is_some());
    }

    #[test]
    fn a_refused_token_waits_the_longest_on_the_same_backend() {
        let t = transport(&["a:1", "b:2"]);
        let generation = t.link.borrow().generation;
        let error = t.failed_call(&tonic::Status::unauthenticated("no"), generation);
        let CallError::Link(f) = error else {
            panic!("{error:?}")
        };
        assert_eq!(f.trouble, Trouble::TokenRefused);
        assert!(f.retry_in >= Duration::from_secs(24));
        assert_eq!(t.backend(), "a:1");
        assert!(t.ready_at().is_some());
    }

    #[test]
    fn a_status_from_the_backend_is_that_calls_alone() {
        let t = transport(&["a:1"]);
        let generation = t.link.borrow().generation;
        for (status, kind) in [
            (tonic::Status::internal("boom"), RefusalKind::Failed),
            (tonic::Status::unavailable("busy"), RefusalKind::Failed),
            (tonic::Status::unimplemented(""), RefusalKind::Absent),
            (
                tonic::Status::resource_exhausted("big"),
                RefusalKind::TooLarge,
            ),
            (tonic::Status::out_of_range("big"), RefusalKind::TooLarge),
        ] {
            match t.failed_call(&status, generation) {
                CallError::Refused(refusal) => assert_eq!(refusal.kind, kind),
                other => panic!("{status:?}: {other:?}"),
            }
        }
        assert!(t.ready_at().is_none(), "the connection is not backed off");
        // With several backends, only the segments move on.
        let t = transport(&["a:1", "b:2"]);
        let refusal = Refusal {
            kind: RefusalKind::Failed,
            cause: "INTERNAL".into(),
        };
        assert!(matches!(
            t.refused_segments(refusal, generation),
            CallError::Link(_)
        ));
        assert_eq!(t.backend(), "b:2");
    }

    #[test]
    fn statuses_read_as_their_codes() {
        assert_eq!(
            status_cause(&tonic::Status::unauthenticated("missing token")),
            "UNAUTHENTICATED: missing token"
        );
        assert_eq!(status_cause(&tonic::Status::internal("")), "INTERNAL");
    }
}
