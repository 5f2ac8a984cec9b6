//! Where finished segments go: the [`Reporter`] trait and its implementations.
//!
//! The gRPC reporter is built from parts, one idea each:
//!
//! | module | what |
//! |---|---|
//! | [`wire`] | segments to protobuf bytes, strings cut to their limits (no gRPC needed) |
//! | [`queue`] | a bounded queue per signal, drops counted |
//! | `signal::*` | one module per signal: what it queues and the calls it makes |
//! | `transport::*` | connecting, failover, back-off, authentication (gRPC; room for Kafka) |
//! | `worker` | the one thread that drains the signals through the transport |
//! | `status`, `message`, `backoff`, `commands` | what the service reads, what is printed, when to retry, where OAP's commands go |
//!
//! The clock's re-anchoring is the runtime's ([`crate::time`]): every reporter, this trait's
//! custom ones included, gets the same times.

#[cfg(feature = "grpc")]
mod backoff;
#[cfg(feature = "grpc")]
mod batch;
#[cfg(feature = "grpc")]
mod commands;
mod console;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "grpc")]
mod health;
#[cfg(feature = "grpc")]
mod message;
#[cfg(feature = "grpc")]
mod queue;
#[cfg(feature = "grpc")]
mod quiet;
#[cfg(feature = "grpc")]
mod signal;
#[cfg(feature = "grpc")]
mod status;
#[cfg(feature = "grpc")]
mod transport;
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
mod wire;
#[cfg(feature = "grpc")]
mod worker;

use std::time::Duration;

pub use console::{ConsoleReporter, DiscardReporter};
#[cfg(feature = "grpc")]
pub use grpc::GrpcReporter;
#[cfg(feature = "grpc")]
pub(crate) use grpc::ReporterOptions;

use crate::segment::Segment;

/// Receives finished segments.
///
/// `report` is called on the service's own threads, at the end of a request: it must return at
/// once, never wait on the network, and never panic.
///
/// Signals other than segments (logs, meters) will come as further methods with default bodies
/// that drop what they are given, so a reporter written for segments only keeps compiling and
/// working.
pub trait Reporter: Send + Sync + 'static {
    /// Takes a finished segment.
    fn report(&self, segment: Segment);

    /// Whether new traces should start. A reporter that knows its backend is unreachable says
    /// `false`, so that an outage costs the service nothing (see `SW_AGENT_KEEP_TRACING`).
    fn is_available(&self) -> bool {
        true
    }

    /// Counters since start.
    fn stats(&self) -> ReporterStats {
        ReporterStats::default()
    }

    /// Delivers what is queued within `timeout`, then stops. Returns the final counters.
    fn shutdown(&self, timeout: Duration) -> ReporterStats {
        let _ = timeout;
        self.stats()
    }
}

/// What a reporter has done with the segments it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReporterStats {
    /// Waiting in the queue right now.
    pub queued: u64,
    /// Delivered and acknowledged by the collector.
    pub sent: u64,
    /// Never sent: the queue was full, the reporter had stopped, or the segment was over the
    /// message size limit even with its long values cut.
    pub dropped: u64,
    /// Sent on a stream that failed or timed out: the collector may not have them.
    pub failed: u64,
    /// Whether the backend answers: the last call succeeded and none has been waiting longer
    /// than 2 s for its answer. False before the first call, and after shutdown.
    pub connected: bool,
}

/// What the reporter knows of the agent's health: the segments' fate (see
/// [`crate::meter::AgentHealth`]).
impl From<ReporterStats> for crate::meter::AgentHealth {
    fn from(stats: ReporterStats) -> Self {
        crate::meter::AgentHealth {
            segments_sent: Some(stats.sent),
            segments_dropped: Some(stats.dropped),
            segments_failed: Some(stats.failed),
            segments_queued: Some(stats.queued),
            ..crate::meter::AgentHealth::default()
        }
    }
}
