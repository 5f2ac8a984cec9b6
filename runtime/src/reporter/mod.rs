//! Where finished segments go: the [`Reporter`] trait and its implementations.

mod console;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "grpc")]
mod wire;

use std::time::Duration;

pub use console::{ConsoleReporter, DiscardReporter};
#[cfg(feature = "grpc")]
pub use grpc::GrpcReporter;

use crate::segment::Segment;

/// Receives finished segments.
///
/// `report` is called on the service's own threads, at the end of a request: it must return at
/// once, never wait on the network, and never panic.
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
    /// Never sent: the queue was full or the reporter had stopped.
    pub dropped: u64,
    /// Sent on a stream that failed or timed out: the collector may not have them.
    pub failed: u64,
    /// Whether a backend is reachable now.
    pub connected: bool,
}
