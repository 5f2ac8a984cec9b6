//! One signal's health, apart from every other's: its own back-off after the backend refused
//! its calls, its quiet spell while the backend has no receiver for it, and what is said about
//! it — once per change, never once per attempt.
//!
//! The connection's health is the transport's ([`super::transport`]); this is only what one
//! backend answered one signal. A log receiver answering `INTERNAL` backs off the logs and
//! nothing else: segments, meters and the rest go on over the same connection.

use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::message;
use super::transport::{Refusal, RefusalKind, Way};

/// How long a signal stays quiet once the backend said it has no receiver for it
/// (`UNIMPLEMENTED`): long enough not to bother an OAP configured without it, short enough to
/// find an upgraded one the same day.
pub(crate) const ABSENT_RETRY: Duration = Duration::from_secs(600);

/// What the reporter sends, one kind of call each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Segments,
    Logs,
    Meters,
    Management,
    Configuration,
    Events,
    /// Trace profiling (`ProfileTask`).
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    Profiling,
    /// On-demand profiles (`PprofTask`).
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    Pprof,
}

impl Signal {
    /// The signal in a sentence: `OAP refused the {what}`.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Signal::Segments => "segments",
            Signal::Logs => "log records",
            Signal::Meters => "meter reports",
            Signal::Management => "instance properties and keep-alives",
            Signal::Configuration => "dynamic configuration",
            Signal::Events => "events",
            Signal::Profiling => "profiling tasks and profiles",
            Signal::Pprof => "on-demand profile tasks and profiles",
        }
    }

    /// Which way its calls go: OAP's kafka-fetcher has a topic for segments, logs, meters and
    /// management records, not for the rest.
    pub(crate) fn way(self) -> Way {
        match self {
            Signal::Segments | Signal::Logs | Signal::Meters | Signal::Management => Way::Topic,
            Signal::Configuration | Signal::Events | Signal::Profiling | Signal::Pprof => Way::Grpc,
        }
    }

    /// The receiver OAP may be configured without.
    pub(crate) fn receiver(self) -> &'static str {
        match self {
            Signal::Segments => "trace receiver (TraceSegmentReportService)",
            Signal::Logs => "log receiver (LogReportService)",
            Signal::Meters => "meter receiver (MeterReportService)",
            Signal::Management => "management receiver (ManagementService)",
            Signal::Configuration => "configuration discovery (ConfigurationDiscoveryService)",
            Signal::Events => "event receiver (EventService)",
            Signal::Profiling => "profile receiver (ProfileTask)",
            Signal::Pprof => "pprof receiver (PprofTask)",
        }
    }

    /// What happens to this signal's items while its calls fail.
    fn meanwhile(self, keep_tracing: bool) -> &'static str {
        match self {
            Signal::Segments if keep_tracing => {
                "new traces still recorded (SW_AGENT_KEEP_TRACING) and dropped when the queue is \
                 full"
            }
            Signal::Segments => "new traces paused",
            Signal::Logs => "records meanwhile dropped and counted; tracing goes on",
            Signal::Meters => "reports kept in the bounded buffer meanwhile; tracing goes on",
            Signal::Management
            | Signal::Configuration
            | Signal::Events
            | Signal::Profiling
            | Signal::Pprof => "tracing goes on",
        }
    }
}

/// What was said last about a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Said {
    Refused(RefusalKind),
    TimedOut,
}

/// One signal's back-off and voice.
#[derive(Debug)]
pub(crate) struct Health {
    signal: Signal,
    keep_tracing: bool,
    backoff: Backoff,
    /// When the next call may be made; `None` for now.
    ready_at: Option<Instant>,
    said: Option<Said>,
}

impl Health {
    pub(crate) fn new(signal: Signal, keep_tracing: bool) -> Health {
        Health {
            signal,
            keep_tracing,
            backoff: Backoff::new(),
            ready_at: None,
            said: None,
        }
    }

    /// The signal this is the health of.
    pub(crate) fn signal(&self) -> Signal {
        self.signal
    }

    /// When this signal may call again: `None` for now.
    pub(crate) fn ready_at(&self) -> Option<Instant> {
        self.ready_at.filter(|&at| at > Instant::now())
    }

    /// Whether the backend said it has no receiver for this signal, and it is not yet time
    /// to ask again.
    pub(crate) fn is_absent(&self) -> bool {
        self.said == Some(Said::Refused(RefusalKind::Absent)) && self.ready_at().is_some()
    }

    /// A call of this signal succeeded: the back-off starts over, and a trouble said before
    /// is said to be over.
    /// `who` names the backend; it is made only when a line is said (a call succeeds many
    /// times a second, and formatting the name each time cost ≈ 750 instructions a call).
    pub(crate) fn succeeded(&mut self, who: impl FnOnce() -> String) {
        self.backoff.reset();
        self.ready_at = None;
        if self.said.take().is_some() && self.signal != Signal::Segments {
            // (The segments' recovery is the connection's line: new traces resume.)
            crate::say::say(&format!(
                "skytrace: {} takes the {} again",
                who(),
                self.signal.what()
            ));
        }
    }

    /// The backend refused a call of this signal: backs off (the longest at once when it has
    /// no receiver for it) and says so once. Returns how long until the next call.
    pub(crate) fn refused(&mut self, who: &str, refusal: &Refusal) -> Duration {
        let retry_in = match refusal.kind {
            RefusalKind::Absent => ABSENT_RETRY,
            RefusalKind::TooLarge | RefusalKind::Failed => self.backoff.fail(),
        };
        self.ready_at = Some(Instant::now() + retry_in);
        let said = Said::Refused(refusal.kind);
        if self.said != Some(said) {
            self.said = Some(said);
            crate::say::say(&self.refusal_line(who, refusal, retry_in));
        }
        retry_in
    }

    /// A call of this signal got no answer in time (the connection itself is left alone).
    pub(crate) fn timed_out(&mut self, who: &str, cause: &str) -> Duration {
        let retry_in = self.backoff.fail();
        self.ready_at = Some(Instant::now() + retry_in);
        if self.said != Some(Said::TimedOut) {
            self.said = Some(Said::TimedOut);
            crate::say::say(&format!(
                "skytrace: {who} did not answer the {} call ({cause}); retrying in \
                 {}, {}",
                self.signal.what(),
                message::seconds(retry_in),
                self.signal.meanwhile(self.keep_tracing)
            ));
        }
        retry_in
    }

    fn refusal_line(&self, who: &str, refusal: &Refusal, retry_in: Duration) -> String {
        let signal = self.signal;
        let cause = crate::say::quote(&refusal.cause, 200);
        match refusal.kind {
            // The instance's events are two, at start and at shutdown: not asked again.
            RefusalKind::Absent if signal == Signal::Events => format!(
                "skytrace: {who} has no {} ({cause}): the instance's events are not \
                 reported; tracing goes on",
                signal.receiver(),
            ),
            RefusalKind::Absent => format!(
                "skytrace: {who} has no {} ({cause}): {} not reported, asking again \
                 in {} min; {}",
                signal.receiver(),
                signal.what(),
                ABSENT_RETRY.as_secs() / 60,
                Signal::Events.meanwhile(false)
            ),
            RefusalKind::TooLarge => format!(
                "skytrace: {who} refused the {} as too large ({cause}); retrying in \
                 {}, {}",
                signal.what(),
                message::seconds(retry_in),
                signal.meanwhile(self.keep_tracing)
            ),
            RefusalKind::Failed => format!(
                "skytrace: {who} refused the {}: {cause}; retrying in {}, {}",
                signal.what(),
                message::seconds(retry_in),
                signal.meanwhile(self.keep_tracing)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(kind: RefusalKind) -> Refusal {
        Refusal {
            kind,
            cause: "INTERNAL: boom".into(),
        }
    }

    #[test]
    fn a_refused_signal_backs_off_alone_and_resets_on_success() {
        let mut logs = Health::new(Signal::Logs, false);
        let first = logs.refused("oap:11800", &refusal(RefusalKind::Failed));
        let second = logs.refused("oap:11800", &refusal(RefusalKind::Failed));
        assert!(second > first, "{first:?} then {second:?}");
        assert!(logs.ready_at().is_some() && !logs.is_absent());
        logs.succeeded(|| "oap:11800".to_owned());
        assert!(logs.ready_at().is_none());
        let again = logs.refused("oap:11800", &refusal(RefusalKind::Failed));
        assert!(again <= first.mul_f64(1.5), "started over: {again:?}");
    }

    #[test]
    fn no_receiver_quiets_the_signal_for_long() {
        let mut meters = Health::new(Signal::Meters, false);
        let wait = meters.refused("oap:11800", &refusal(RefusalKind::Absent));
        assert_eq!(wait, ABSENT_RETRY);
        assert!(meters.is_absent());
    }

    #[test]
    fn lines_name_the_backend_the_signal_the_cause_and_that_tracing_goes_on() {
        let logs = Health::new(Signal::Logs, false);
        let line = logs.refusal_line(
            "OAP at oap:11800",
            &refusal(RefusalKind::Failed),
            Duration::from_millis(500),
        );
        assert_eq!(
            line,
            "skytrace: OAP at oap:11800 refused the log records: INTERNAL: boom; retrying in \
             0.5 s, records meanwhile dropped and counted; tracing goes on"
        );
        let absent = Refusal {
            kind: RefusalKind::Absent,
            cause: "UNIMPLEMENTED".into(),
        };
        let line = logs.refusal_line("OAP at oap:11800", &absent, ABSENT_RETRY);
        assert_eq!(
            line,
            "skytrace: OAP at oap:11800 has no log receiver (LogReportService) (UNIMPLEMENTED): \
             log records not reported, asking again in 10 min; tracing goes on"
        );
    }
}
