//! What the service's threads may read about the reporter: whether to start new traces and
//! whether OAP is connected. One atomic, written by the worker only.
//!
//! - **Connected** means the last call to OAP succeeded and no call has been waiting for an
//!   answer longer than [`SLOW_CALL`]. A TCP connection alone is not enough: a black hole
//!   accepts connections too.
//! - **New traces start** while connected, and at start until the first call has failed or has
//!   waited [`SLOW_CALL`] for its answer. A backend that does not answer at start therefore
//!   costs the service at most 2 s of traces that are recorded, then dropped.
//! - After a failure, new traces stop until a call succeeds again (back-off decides when the
//!   next call is made), unless `SW_AGENT_KEEP_TRACING` is set.
//! - After shutdown, neither.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How long a call may wait for its answer before OAP counts as not answering (new traces
/// stop; the call still gets its full timeout to complete).
pub(crate) const SLOW_CALL: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// No call has completed yet.
    Starting = 0,
    /// The last call succeeded.
    Connected = 1,
    /// The last call failed, or one has waited longer than [`SLOW_CALL`].
    Down = 2,
    /// Shut down.
    Stopped = 3,
}

/// Shared between the reporter handle (read on the service's threads) and its worker.
#[derive(Debug, Default)]
pub(crate) struct Status {
    state: AtomicU8,
}

impl Status {
    pub(crate) fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            0 => State::Starting,
            1 => State::Connected,
            2 => State::Down,
            _ => State::Stopped,
        }
    }

    /// Sets the state, unless the reporter has stopped; returns the one before.
    pub(crate) fn set(&self, state: State) -> State {
        let mut before = self.state.load(Ordering::Relaxed);
        loop {
            if before == State::Stopped as u8 {
                return State::Stopped;
            }
            match self.state.compare_exchange_weak(
                before,
                state as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => before = now,
            }
        }
        match before {
            0 => State::Starting,
            1 => State::Connected,
            _ => State::Down,
        }
    }

    pub(crate) fn stop(&self) {
        self.state.store(State::Stopped as u8, Ordering::Relaxed);
    }

    /// Whether new traces should start (read once per new trace: one load).
    #[inline]
    pub(crate) fn is_available(&self) -> bool {
        self.state.load(Ordering::Relaxed) <= State::Connected as u8
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.state() == State::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_while_starting_or_connected_only() {
        let status = Status::default();
        assert!(status.is_available() && !status.is_connected());
        status.set(State::Connected);
        assert!(status.is_available() && status.is_connected());
        assert_eq!(status.set(State::Down), State::Connected);
        assert!(!status.is_available() && !status.is_connected());
        status.stop();
        assert_eq!(status.set(State::Connected), State::Stopped);
        assert!(!status.is_available() && !status.is_connected());
    }
}
