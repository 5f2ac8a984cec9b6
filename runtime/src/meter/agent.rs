//! The agent's own health as meters: what happened to the segments, logs and meter reports
//! skytrace was given, read from the reporter once per period.

use std::sync::Arc;

use super::names;
use super::registry::{MeterRegistry, Source, SourceKind};

/// The agent's counters at one moment, as the reporter knows them. Totals are since start;
/// `segments_queued` is the queue depth now. A `None` is not sent (the reporter does not count
/// it), so OAP shows no data rather than a false zero.
///
/// ```
/// use skytrace::meter::{AgentHealth, MeterRegistry};
///
/// let registry = MeterRegistry::new();
/// registry.register_agent_health(|| {
///     let mut health = AgentHealth::default();
///     health.segments_sent = Some(42);
///     health
/// });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentHealth {
    /// Segments started.
    pub segments_created: Option<u64>,
    /// Segments finished and handed to the reporter.
    pub segments_finished: Option<u64>,
    /// Segments delivered and acknowledged.
    pub segments_sent: Option<u64>,
    /// Segments never sent (queue full, reporter stopped).
    pub segments_dropped: Option<u64>,
    /// Segments sent on a stream that failed.
    pub segments_failed: Option<u64>,
    /// Segments waiting in the queue now.
    pub segments_queued: Option<u64>,
    /// Log records never sent.
    pub log_records_dropped: Option<u64>,
    /// Meter reports never sent.
    pub meter_reports_dropped: Option<u64>,
}

impl AgentHealth {
    fn pairs(&self) -> [(&'static str, Option<u64>); 8] {
        [
            (names::AGENT_SEGMENTS_CREATED, self.segments_created),
            (names::AGENT_SEGMENTS_FINISHED, self.segments_finished),
            (names::AGENT_SEGMENTS_SENT, self.segments_sent),
            (names::AGENT_SEGMENTS_DROPPED, self.segments_dropped),
            (names::AGENT_SEGMENTS_FAILED, self.segments_failed),
            (names::AGENT_SEGMENTS_QUEUED, self.segments_queued),
            (names::AGENT_LOG_RECORDS_DROPPED, self.log_records_dropped),
            (
                names::AGENT_METER_REPORTS_DROPPED,
                self.meter_reports_dropped,
            ),
        ]
    }
}

type ReadHealth = dyn Fn() -> AgentHealth + Send + Sync;

struct AgentSource {
    read: Box<ReadHealth>,
}

impl Source for AgentSource {
    fn collect(&self, out: &mut Vec<(&'static str, f64)>) {
        let health = (self.read)();
        for (name, value) in health.pairs() {
            if let Some(value) = value {
                out.push((name, value as f64));
            }
        }
    }
}

impl MeterRegistry {
    /// Adds the agent's health meters (`instance_rust_agent_*`), with `read` called once per
    /// period, outside the registry's lock, on the thread that collects. A second call
    /// replaces the first (a new reporter replaces the old one).
    pub fn register_agent_health(&self, read: impl Fn() -> AgentHealth + Send + Sync + 'static) {
        let source = AgentSource {
            read: Box::new(read),
        };
        self.set_source(SourceKind::Agent, Arc::new(source));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_stats_fill_what_they_know() {
        let stats = crate::reporter::ReporterStats {
            queued: 1,
            sent: 2,
            dropped: 3,
            failed: 4,
            connected: true,
        };
        let source = AgentSource {
            read: Box::new(move || stats.into()),
        };
        let mut out = Vec::new();
        source.collect(&mut out);
        assert_eq!(
            out,
            vec![
                (names::AGENT_SEGMENTS_SENT, 2.0),
                (names::AGENT_SEGMENTS_DROPPED, 3.0),
                (names::AGENT_SEGMENTS_FAILED, 4.0),
                (names::AGENT_SEGMENTS_QUEUED, 1.0),
            ]
        );
    }

    #[test]
    fn every_agent_name_has_a_field() {
        let pairs = AgentHealth::default().pairs();
        let agent: Vec<_> = names::ALL
            .iter()
            .filter(|n| n.starts_with("instance_rust_agent_"))
            .collect();
        assert_eq!(pairs.len(), agent.len());
        assert!(pairs.iter().all(|(n, _)| agent.contains(&n)));
    }
}
