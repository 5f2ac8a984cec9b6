//! How the signals' calls reach OAP. A transport owns the connection: connecting, failing over
//! between the configured backends, backing off after the connection's failures, and
//! authenticating. The signals only say what to send, each on its own schedule; they share the
//! transport, and its calls run side by side (one HTTP/2 connection carries them all).
//!
//! A failed call is one of two things, and the difference is what keeps the signals apart:
//!
//! - [`CallError::Link`]: the connection itself failed (no connection, a reset, TLS, a refused
//!   token, or the segments' call unanswered). The transport has already backed off: every
//!   signal waits for [`Transport::ready_at`], and new traces pause until segments flow again.
//! - [`CallError::Refused`] / [`CallError::Timeout`]: the backend answered *this* call with an
//!   error, or did not answer it in time. The connection is fine; only the signal that made the
//!   call backs off (`super::health`).
//!
//! gRPC ([`grpc`]) is the default transport; the Kafka one (`kafka`, feature `kafka`) implements
//! the same trait: segments, meters, logs and management records to the topics OAP's
//! kafka-fetcher reads, the rest over gRPC when a backend is configured.

#[cfg(feature = "grpc")]
mod connector;
#[cfg(feature = "grpc")]
mod framed;
#[cfg(feature = "grpc")]
pub(crate) mod grpc;
#[cfg(feature = "kafka")]
pub(crate) mod kafka;
#[cfg(feature = "kafka")]
mod murmur2;
#[cfg(feature = "grpc")]
mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, Event, GoProfileData, InstancePingPkg, InstanceProperties,
    LogData, MeterDataCollection, ProfileTaskCommandQuery, ProfileTaskFinishReport,
};
use skytrace_proto::v10::{PprofData, PprofProfilingStatus, PprofTaskCommandQuery};

use super::batch::Batch;
use super::message::{Failure, Peer};

/// Why a call delivered nothing.
#[derive(Clone, Debug)]
pub(crate) enum CallError {
    /// The connection failed; the transport has backed off (see [`Transport::ready_at`]).
    Link(Failure),
    /// The backend answered this call with an error; the connection is fine.
    Refused(Refusal),
    /// The backend did not answer this call within its timeout; the connection is left alone
    /// (its own keep-alive pings tell whether it is dead).
    Timeout(String),
}

/// A backend's error answer to one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) kind: RefusalKind,
    /// The status in a few words: `INTERNAL: boom`.
    pub(crate) cause: String,
}

/// What a refusal means for the signal that met it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    /// `UNIMPLEMENTED`: this backend has no such receiver (not configured, or older). The
    /// signal goes quiet and asks again rarely: an OAP can be upgraded.
    Absent,
    /// `RESOURCE_EXHAUSTED` / `OUT_OF_RANGE`: the message was too large for the backend.
    TooLarge,
    /// Any other error status.
    Failed,
}

/// Which way a signal's calls go, for a transport with two: to a topic OAP's kafka-fetcher
/// reads, or over gRPC (what has no topic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    Topic,
    Grpc,
}

/// Sends what the signals give it. Every method takes `&self`: the signals call side by side,
/// on the reporter's one thread.
pub(crate) trait Transport {
    /// The backend in use (or tried next), for messages.
    fn backend(&self) -> String;

    /// The backend that answers the calls going `way`, as the lines name it: `OAP at
    /// host:port` (the Kafka transport: `Kafka at host:port` for what it produces).
    fn who(&self, way: Way) -> String {
        let _ = way;
        Peer::Oap.at(&self.backend())
    }

    /// When the next call may be made: `None` for now. Failures of the connection push it out
    /// (back-off); a call made before then fails at once.
    fn ready_at(&self) -> Option<Instant>;

    /// Changes each time a new connection is made: the instance properties go out again then,
    /// as OAP may be another one (or restarted) and not know this instance.
    fn session(&self) -> u64;

    /// Whether a call has succeeded on the connection in use.
    fn is_answering(&self) -> bool;

    /// The most bytes one message may have.
    fn max_message_bytes(&self) -> usize;

    /// The variable that sets [`Transport::max_message_bytes`], for the lines that name it.
    fn max_message_variable(&self) -> &'static str {
        "SW_AGENT_MAX_MESSAGE_SIZE"
    }

    /// Sends a batch's framed segments (`SegmentObject`s) in one call; none at all is a probe
    /// of the segment receiver. No answer within `timeout` is a failure of the connection.
    fn collect_segments(
        &self,
        segments: Batch,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Whether [`Transport::collect_segments_streamed`] works: one `collect` call kept open
    /// while several batches go through it. `false`: one call per batch.
    fn streams_segments(&self) -> bool {
        false
    }

    /// One `collect` call whose body is what comes through `frames` (each a batch framed as
    /// gRPC messages, see [`Batch`]), ended when every sender is gone; its answer.
    /// Only called when [`Transport::streams_segments`] says so.
    fn collect_segments_streamed(
        &self,
        frames: tokio::sync::mpsc::Receiver<bytes::Bytes>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>> {
        let _ = (frames, timeout);
        std::future::ready(Err(CallError::Timeout(
            "this transport does not stream segments".to_owned(),
        )))
    }

    /// Sends log records in one `LogReportService.collect` stream.
    fn collect_logs(
        &self,
        logs: Vec<LogData>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Sends meter reports (each a `MeterDataCollection`) in one `collectBatch` call.
    fn collect_meters(
        &self,
        reports: Vec<MeterDataCollection>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    fn report_properties(
        &self,
        properties: InstanceProperties,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    fn keep_alive(
        &self,
        ping: InstancePingPkg,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Asks for the dynamic configuration (`ConfigurationDiscoveryService/fetchConfigurations`).
    fn fetch_configurations(
        &self,
        request: ConfigurationSyncRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Sends events in one `EventService/collect` stream.
    fn report_events(
        &self,
        events: Vec<Event>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;
    /// Asks for trace-profiling tasks (`ProfileTask/getProfileTaskCommands`).
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    fn profile_task_commands(
        &self,
        query: ProfileTaskCommandQuery,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Sends a task's profile in one `ProfileTask/goProfileReport` stream of chunks.
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    fn report_profile(
        &self,
        chunks: Vec<GoProfileData>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Says a trace-profiling task is over here (`ProfileTask/reportTaskFinish`).
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    fn report_task_finish(
        &self,
        finish: ProfileTaskFinishReport,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Asks for on-demand profile tasks (`PprofTask/getPprofTaskCommands`).
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    fn pprof_task_commands(
        &self,
        query: PprofTaskCommandQuery,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, CallError>>;

    /// Uploads a profile (`PprofTask/collect`): the metadata, then, if the backend answers
    /// success, the content chunks. Returns the backend's answer to the metadata.
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    fn upload_pprof(
        &self,
        metadata: PprofData,
        content: Vec<PprofData>,
        timeout: Duration,
    ) -> impl Future<Output = Result<PprofProfilingStatus, CallError>>;
}
