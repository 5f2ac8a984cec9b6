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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use skytrace_proto::v3::configuration_discovery_service_client::ConfigurationDiscoveryServiceClient;
use skytrace_proto::v3::event_service_client::EventServiceClient;
use skytrace_proto::v3::log_report_service_client::LogReportServiceClient;
use skytrace_proto::v3::management_service_client::ManagementServiceClient;
use skytrace_proto::v3::meter_report_service_client::MeterReportServiceClient;
use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, Event, InstancePingPkg, InstanceProperties, LogData,
    MeterDataCollection,
};
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::Transport;
use super::connector::TcpConnector;
use super::tls;
use crate::config::TlsFiles;
use crate::reporter::backoff::Backoff;
use crate::reporter::message::{self, Failure, Trouble};
use crate::reporter::wire::Outgoing;

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
    /// The backend in use, or to try next.
    current: usize,
    /// Backends that failed since the last success or the last full back-off.
    failed_in_round: usize,
    channel: Option<Channel>,
    /// The channel's connector's permission to connect again (see [`TcpConnector`]).
    may_reconnect: Arc<AtomicBool>,
    backoff: Backoff,
    /// Whether a call succeeded on the current channel.
    answered: bool,
    ready_at: Option<Instant>,
    connections: Arc<AtomicU64>,
}

impl GrpcTransport {
    pub(crate) fn new(mut settings: GrpcSettings) -> GrpcTransport {
        if settings.backends.is_empty() {
            // The configuration requires one; never index an empty list.
            settings.backends.push("127.0.0.1:11800".to_owned());
        }
        GrpcTransport {
            settings,
            current: 0,
            failed_in_round: 0,
            channel: None,
            may_reconnect: Arc::new(AtomicBool::new(false)),
            backoff: Backoff::new(),
            answered: false,
            ready_at: None,
            connections: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The connection to the current backend, made if there is none.
    async fn channel(&mut self, timeout: Duration) -> Result<Channel, Failure> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let backend = self.backend();
        let scheme = if self.settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoint = match Endpoint::from_shared(format!("{scheme}://{backend}")) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                let cause = format!("not a valid address ({})", message::cause(&e));
                return Err(self.fail(Trouble::Unreachable, cause, true));
            }
        };
        let mut endpoint = endpoint
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if let Some(files) = &self.settings.tls {
            // Another backend would not help a file that cannot be used: no failover.
            let config = match tls::client_config(files) {
                Ok(config) => config,
                Err(cause) => return Err(self.fail(Trouble::Tls, cause, false)),
            };
            endpoint = match endpoint.tls_config(config) {
                Ok(endpoint) => endpoint,
                Err(e) => {
                    let cause = tls::setup_cause(&e, files);
                    return Err(self.fail(Trouble::Tls, cause, false));
                }
            };
        }
        self.may_reconnect = Arc::new(AtomicBool::new(true));
        let connector = TcpConnector {
            connections: Arc::clone(&self.connections),
            may_connect: Arc::clone(&self.may_reconnect),
        };
        // The connector bounds the TCP connect; this bounds the HTTP/2 handshake after it.
        match tokio::time::timeout(timeout, endpoint.connect_with_connector(connector)).await {
            Ok(Ok(channel)) => {
                self.channel = Some(channel.clone());
                self.answered = false;
                Ok(channel)
            }
            Ok(Err(e)) => match tls::trouble(&e, self.mutual_tls()) {
                Some(cause) => Err(self.fail(Trouble::Tls, cause, true)),
                None => Err(self.fail(Trouble::Unreachable, message::cause(&e), true)),
            },
            Err(_) => {
                let cause = format!("no HTTP/2 handshake within {} s", timeout.as_secs());
                Err(self.fail(Trouble::Stalled, cause, true))
            }
        }
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

    /// Books the outcome of a call made with `timeout`.
    fn finish<T>(
        &mut self,
        result: Result<Result<tonic::Response<T>, tonic::Status>, tokio::time::error::Elapsed>,
        timeout: Duration,
        into_commands: impl FnOnce(T) -> Commands,
    ) -> Result<Commands, Failure> {
        match result {
            Ok(Ok(response)) => {
                self.may_reconnect.store(true, Ordering::Relaxed);
                self.answered = true;
                self.backoff.reset();
                self.failed_in_round = 0;
                self.ready_at = None;
                Ok(into_commands(response.into_inner()))
            }
            Ok(Err(status)) => {
                // A TLS 1.3 server refuses a client certificate after the client's side of
                // the handshake is done: the refusal comes with the first call.
                if let Some(cause) = tls::trouble(&status, self.mutual_tls()) {
                    return Err(self.fail(Trouble::Tls, cause, true));
                }
                // Or the refusal closed the connection before its alert reached the call
                // (tonic tried to reconnect, which the connector refuses before any answer).
                // The connector's refusal, a broken pipe: the connection is gone before any answer.
                let (trouble, reconnect) = classify(&status);
                if self.settings.tls.is_some() && !self.answered && trouble == Trouble::Unreachable
                {
                    let cause = tls::closed_after_handshake(self.mutual_tls());
                    return Err(self.fail(Trouble::Tls, cause, true));
                }
                let mut cause = status_cause(&status);
                if self.settings.tls.is_none() && !self.answered && trouble == Trouble::Unreachable
                {
                    cause = tls::plaintext_hint(cause);
                }
                Err(self.fail(trouble, cause, reconnect))
            }
            Err(_) => {
                let cause = format!("no answer within {} s", timeout.as_secs_f64().round());
                Err(self.fail(Trouble::Stalled, cause, true))
            }
        }
    }

    fn mutual_tls(&self) -> bool {
        self.settings
            .tls
            .as_ref()
            .is_some_and(|tls| tls.identity.is_some())
    }

    /// Books a failed attempt: moves to the next backend when `reconnect`, and sets when the
    /// next attempt may be made.
    fn fail(&mut self, trouble: Trouble, cause: String, reconnect: bool) -> Failure {
        let backend = self.backend().to_owned();
        let count = self.settings.backends.len();
        if reconnect {
            self.channel = None;
            self.current = (self.current + 1) % count;
            self.failed_in_round += 1;
        }
        let retry_in = if trouble == Trouble::TokenRefused {
            // Another backend of the same cluster would refuse it too.
            self.failed_in_round = 0;
            self.backoff.give_up_for_now()
        } else if reconnect && self.failed_in_round < count {
            PACE
        } else {
            self.failed_in_round = 0;
            self.backoff.fail()
        };
        self.ready_at = Some(Instant::now() + retry_in);
        let next_backend = (count > 1 && reconnect).then(|| self.backend().to_owned());
        Failure {
            trouble,
            backend,
            cause,
            retry_in,
            next_backend,
        }
    }
}

/// What a failed call says about the backend, and whether its connection is still to be used.
fn classify(status: &tonic::Status) -> (Trouble, bool) {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => (Trouble::TokenRefused, false),
        Code::Unavailable
        | Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Internal => {
            // A status with a source was made here, by tonic, from a connection error; one
            // without came from the backend.
            let trouble = if std::error::Error::source(status).is_some() {
                Trouble::Unreachable
            } else {
                Trouble::Error
            };
            (trouble, true)
        }
        _ => (Trouble::Error, false),
    }
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
    fn backend(&self) -> &str {
        &self.settings.backends[self.current]
    }

    fn ready_at(&self) -> Option<Instant> {
        self.ready_at
    }

    fn session(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn max_message_bytes(&self) -> usize {
        self.settings.max_message_bytes
    }

    async fn collect_segments(
        &mut self,
        segments: Vec<Outgoing>,
        timeout: Duration,
    ) -> Result<Commands, Failure> {
        let channel = self.channel(timeout).await?;
        let mut grpc = tonic::client::Grpc::new(channel);
        let request = self.request(tokio_stream::iter(segments), timeout);
        let result = tokio::time::timeout(timeout, collect(&mut grpc, request)).await;
        self.finish(result, timeout, |commands| commands)
    }

    async fn collect_logs(
        &mut self,
        logs: Vec<LogData>,
        timeout: Duration,
    ) -> Result<Commands, Failure> {
        let mut client = LogReportServiceClient::new(self.channel(timeout).await?)
            .max_encoding_message_size(self.settings.max_message_bytes);
        let request = self.request(tokio_stream::iter(logs), timeout);
        let result = tokio::time::timeout(timeout, client.collect(request)).await;
        self.finish(result, timeout, |commands| commands)
    }

    async fn collect_meters(
        &mut self,
        reports: Vec<MeterDataCollection>,
        timeout: Duration,
    ) -> Result<Commands, Failure> {
        let mut client = MeterReportServiceClient::new(self.channel(timeout).await?)
            .max_encoding_message_size(self.settings.max_message_bytes);
        let request = self.request(tokio_stream::iter(reports), timeout);
        let result = tokio::time::timeout(timeout, client.collect_batch(request)).await;
        self.finish(result, timeout, |commands| commands)
    }

    async fn report_properties(
        &mut self,
        properties: InstanceProperties,
        timeout: Duration,
    ) -> Result<Commands, Failure> {
        let mut client = ManagementServiceClient::new(self.channel(timeout).await?);
        let request = self.request(properties, timeout);
        let result =
            tokio::time::timeout(timeout, client.report_instance_properties(request)).await;
        self.finish(result, timeout, |commands| commands)
    }

    async fn keep_alive(
        &mut self,
        ping: InstancePingPkg,
        timeout: Duration,
    ) -> Result<Commands, Failure> {
        let mut client = ManagementServiceClient::new(self.channel(timeout).await?);
        let request = self.request(ping, timeout);
        let result = tokio::time::timeout(timeout, client.keep_alive(request)).await;
        self.finish(result, timeout, |commands| commands)
    }

    async fn fetch_configurations(
        &mut self,
        request: ConfigurationSyncRequest,
        timeout: Duration,
    ) -> Result<Commands, Failure> {
        let mut client = ConfigurationDiscoveryServiceClient::new(self.channel(timeout).await?);
        let request = self.request(request, timeout);
        let result = tokio::time::timeout(timeout, client.fetch_configurations(request)).await;
        // An OAP without the configuration-discovery receiver answered all the same: no
        // configuration, not a failure (which would pause new traces).
        self.finish(unimplemented_as_none(result), timeout, |commands| commands)
    }

    async fn report_events(
        &mut self,
        events: Vec<Event>,
        timeout: Duration,
    ) -> Result<Commands, Failure> {
        let mut client = EventServiceClient::new(self.channel(timeout).await?);
        let request = self.request(tokio_stream::iter(events), timeout);
        let result = tokio::time::timeout(timeout, client.collect(request)).await;
        // An OAP without the event receiver: the events are not kept, and nothing is wrong.
        self.finish(unimplemented_as_none(result), timeout, |commands| commands)
    }
}

/// A call answered `UNIMPLEMENTED` by the server itself (not by a transport error) as an answer
/// with no commands: that backend lacks an optional receiver, and is up.
fn unimplemented_as_none<E>(
    result: Result<Result<tonic::Response<Commands>, tonic::Status>, E>,
) -> Result<Result<tonic::Response<Commands>, tonic::Status>, E> {
    match result {
        Ok(Err(status))
            if status.code() == Code::Unimplemented
                && std::error::Error::source(&status).is_none() =>
        {
            Ok(Ok(tonic::Response::new(Commands::default())))
        }
        other => other,
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
        .map_err(|e| tonic::Status::from_error(Box::new(e)))?;
    let path =
        http::uri::PathAndQuery::from_static("/skywalking.v3.TraceSegmentReportService/collect");
    let codec = tonic_prost::ProstCodec::<Outgoing, Commands>::default();
    grpc.client_streaming(request, path, codec).await
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

    #[test]
    fn a_round_of_backends_is_paced_then_backed_off() {
        let mut t = transport(&["a:1", "b:2", "c:3"]);
        let f = t.fail(Trouble::Unreachable, "x".into(), true);
        assert_eq!((f.backend.as_str(), f.retry_in), ("a:1", PACE));
        assert_eq!(f.next_backend.as_deref(), Some("b:2"));
        assert_eq!(
            t.fail(Trouble::Unreachable, "x".into(), true).retry_in,
            PACE
        );
        // The third failure ends the round: the back-off's first delay.
        let f = t.fail(Trouble::Unreachable, "x".into(), true);
        assert!(f.retry_in > PACE && f.retry_in <= Duration::from_millis(600));
        assert_eq!(t.backend(), "a:1");
        // The next round's end waits longer.
        t.fail(Trouble::Unreachable, "x".into(), true);
        t.fail(Trouble::Unreachable, "x".into(), true);
        let g = t.fail(Trouble::Unreachable, "x".into(), true);
        assert!(g.retry_in >= Duration::from_millis(640), "{g:?}");
    }

    #[test]
    fn one_backend_backs_off_on_every_failure() {
        let mut t = transport(&["a:1"]);
        let first = t.fail(Trouble::Unreachable, "x".into(), true).retry_in;
        let second = t.fail(Trouble::Error, "x".into(), false).retry_in;
        assert!(first >= Duration::from_millis(400) && second >= Duration::from_millis(640));
        assert!(
            t.fail(Trouble::Error, "x".into(), true)
                .next_backend
                .is_none()
        );
    }

    #[test]
    fn a_refused_token_waits_the_longest_on_the_same_backend() {
        let mut t = transport(&["a:1", "b:2"]);
        let (trouble, reconnect) = classify(&tonic::Status::unauthenticated("no"));
        let f = t.fail(trouble, "x".into(), reconnect);
        assert!(f.retry_in >= Duration::from_secs(24));
        assert_eq!(t.backend(), "a:1");
        assert!(t.ready_at().is_some());
    }

    #[test]
    fn statuses_read_as_their_codes() {
        assert_eq!(
            status_cause(&tonic::Status::unauthenticated("missing token")),
            "UNAUTHENTICATED: missing token"
        );
        assert_eq!(status_cause(&tonic::Status::internal("")), "INTERNAL");
        assert_eq!(
            classify(&tonic::Status::internal("boom")),
            (Trouble::Error, true)
        );
        assert_eq!(
            classify(&tonic::Status::resource_exhausted("big")),
            (Trouble::Error, false)
        );
    }
}
