//! How the worker's calls reach OAP. A transport owns connecting, failing over between the
//! configured backends, backing off after failures and authenticating; the worker only says what
//! to send. gRPC ([`grpc`]) is the one there is; a Kafka transport would implement the same trait
//! (segments to `skywalking-segments`, properties and pings to `skywalking-managements`).

#[cfg(feature = "grpc")]
mod connector;
#[cfg(feature = "grpc")]
pub(crate) mod grpc;
#[cfg(feature = "grpc")]
mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, Event, InstancePingPkg, InstanceProperties, LogData,
    MeterDataCollection,
};

use super::message::Failure;
use super::wire::Outgoing;

/// Sends what the worker gives it. Calls return OAP's commands, or a failure the transport has
/// already counted in its back-off.
pub(crate) trait Transport {
    /// The backend in use (or tried next), for messages.
    fn backend(&self) -> &str;

    /// When the next call may be made: `None` for now. Failures push it out (back-off).
    fn ready_at(&self) -> Option<Instant>;

    /// Changes each time a new connection is made: the instance properties go out again then,
    /// as OAP may be another one (or restarted) and not know this instance.
    fn session(&self) -> u64;

    /// The most bytes one message may have.
    fn max_message_bytes(&self) -> usize;

    /// Sends encoded segments (`SegmentObject`s) in one call.
    fn collect_segments(
        &mut self,
        segments: Vec<Outgoing>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, Failure>>;

    /// Sends log records in one `LogReportService.collect` stream.
    fn collect_logs(
        &mut self,
        logs: Vec<LogData>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, Failure>>;

    /// Sends meter reports (one `MeterDataCollection` per period) in one `collectBatch` call.
    fn collect_meters(
        &mut self,
        reports: Vec<MeterDataCollection>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, Failure>>;

    fn report_properties(
        &mut self,
        properties: InstanceProperties,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, Failure>>;

    fn keep_alive(
        &mut self,
        ping: InstancePingPkg,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, Failure>>;

    /// Asks for the dynamic configuration (`ConfigurationDiscoveryService/fetchConfigurations`).
    /// A backend that does not serve it answers no commands.
    fn fetch_configurations(
        &mut self,
        request: ConfigurationSyncRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, Failure>>;

    /// Sends events in one `EventService/collect` stream. A backend that does not serve it
    /// answers no commands, as if it had taken them.
    fn report_events(
        &mut self,
        events: Vec<Event>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Commands, Failure>>;
}
