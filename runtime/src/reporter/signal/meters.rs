//! Meters: every period the worker reads the registry (on its own thread: gauges are user code)
//! into one `MeterDataCollection` and sends what it holds with `MeterReportService.collectBatch`.
//! While the backend is unreachable the reports wait in a bounded buffer; when it is full the
//! oldest is dropped and counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use skytrace_proto::v3::MeterDataCollection;
use tokio::time::{Interval, MissedTickBehavior};

use crate::meter::MeterRegistry;

/// What the meter signal needs from the configuration.
#[derive(Debug)]
pub(crate) struct MeterSettings {
    pub(crate) registry: &'static MeterRegistry,
    pub(crate) service: String,
    pub(crate) instance: String,
    pub(crate) period: Duration,
    /// Reports held while they cannot be sent (at least one).
    pub(crate) max_buffer_size: usize,
}

pub(crate) struct Meters {
    /// `None` when meters are off: the worker's branch then never fires.
    active: Option<Active>,
    /// Reports never sent; shared with the reporter's handle for the agent's health meters.
    dropped: Arc<AtomicU64>,
}

struct Active {
    settings: MeterSettings,
    period: Interval,
    buffer: VecDeque<MeterDataCollection>,
}

impl Meters {
    /// Must be called within the worker's runtime (it starts the period's timer).
    pub(crate) fn new(settings: Option<MeterSettings>, dropped: Arc<AtomicU64>) -> Meters {
        let active = settings.map(|settings| {
            // The configuration checks the period; clamp all the same (a zero would panic).
            let every = settings
                .period
                .clamp(Duration::from_millis(1), Duration::from_secs(86_400));
            let mut period = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // A tick missed during a long call or a back-off is made up by one, not by a burst.
            period.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Active {
                settings,
                period,
                buffer: VecDeque::new(),
            }
        });
        Meters { active, dropped }
    }

    /// Waits for the next period; never returns when meters are off.
    pub(crate) async fn tick(&mut self) {
        match &mut self.active {
            Some(active) => {
                active.period.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Reads every meter now into one report and buffers it (unless there is nothing to send).
    /// Gauge functions run here, on the worker's thread, outside every lock.
    pub(crate) fn collect(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        let s = &active.settings;
        let report = s
            .registry
            .collect(&s.service, &s.instance, crate::time::now_millis());
        if report.meter_data.is_empty() {
            return;
        }
        active.buffer.push_back(report);
        self.trim();
    }

    /// Everything buffered, to send in one call.
    pub(crate) fn take(&mut self) -> Vec<MeterDataCollection> {
        match &mut self.active {
            Some(active) => active.buffer.drain(..).collect(),
            None => Vec::new(),
        }
    }

    /// Puts back reports whose call failed, before any collected since, for the next period.
    pub(crate) fn restore(&mut self, reports: Vec<MeterDataCollection>) {
        let Some(active) = &mut self.active else {
            return;
        };
        for report in reports.into_iter().rev() {
            active.buffer.push_front(report);
        }
        self.trim();
    }

    /// Counts what is still buffered as dropped (the worker is stopping).
    pub(crate) fn close_and_count(&mut self) {
        let n = self.take().len();
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Drops the oldest reports beyond the buffer's size, counting them.
    fn trim(&mut self) {
        let Some(active) = &mut self.active else {
            return;
        };
        let max = active.settings.max_buffer_size.max(1);
        while active.buffer.len() > max {
            active.buffer.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meters(registry: &'static MeterRegistry, max: usize) -> (Meters, Arc<AtomicU64>) {
        let dropped = Arc::new(AtomicU64::new(0));
        let settings = MeterSettings {
            registry,
            service: "svc".into(),
            instance: "inst".into(),
            period: Duration::from_secs(1),
            max_buffer_size: max,
        };
        (Meters::new(Some(settings), Arc::clone(&dropped)), dropped)
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_and_counts() {
        let registry: &'static MeterRegistry = Box::leak(Box::new(MeterRegistry::new()));
        let counter = registry.counter("jobs").build().unwrap();
        let (mut meters, dropped) = meters(registry, 2);
        for _ in 0..3 {
            counter.inc();
            meters.collect();
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        let reports = meters.take();
        let values: Vec<_> = reports
            .iter()
            .map(|r| match &r.meter_data[0].metric {
                Some(skytrace_proto::v3::meter_data::Metric::SingleValue(v)) => v.value,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(values, [2.0, 3.0]);
        assert_eq!(reports[0].meter_data[0].service, "svc");
        // A failed call's reports go back in front of newer ones, within the bound.
        counter.inc();
        meters.collect();
        meters.restore(reports);
        assert_eq!(meters.take().len(), 2);
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        meters.collect();
        meters.close_and_count();
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn an_empty_registry_sends_nothing_and_off_never_ticks() {
        let registry: &'static MeterRegistry = Box::leak(Box::new(MeterRegistry::new()));
        let (mut meters, _) = meters(registry, 2);
        meters.collect();
        assert!(meters.take().is_empty());
        let mut off = Meters::new(None, Arc::new(AtomicU64::new(0)));
        let ticked = tokio::time::timeout(Duration::from_millis(20), off.tick()).await;
        assert!(ticked.is_err());
    }
}
