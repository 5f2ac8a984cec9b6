//! Meters: every period a thread of their own (`skytrace-meters`) reads the registry into one
//! `MeterDataCollection`, cut into parts that fit the message limit
//! ([`super::meter_reports`]), and this signal sends what is buffered with
//! `MeterReportService.collectBatch`.
//!
//! Gauges are the service's code, run once a period: on a thread of their own, a gauge that
//! takes seconds delays only the meters, never the segments or the logs. At shutdown the
//! registry is read once more, so a short job's last period is delivered with what is queued;
//! that reading gets at most [`FINAL_READ_BUDGET`]. While reports cannot be sent they wait in
//! a bounded buffer (the oldest dropped and counted); while OAP has no meter receiver they are
//! dropped and counted as they come.

use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::meter_reports::{ReportBuffer, split};
use crate::meter::MeterRegistry;
use crate::reporter::health::{Health, Signal};
use crate::reporter::transport::Transport;
use crate::reporter::worker::Shared;

/// Longest the shutdown waits for the registry's last reading (a gauge may be slow).
pub(crate) const FINAL_READ_BUDGET: Duration = Duration::from_secs(1);

/// What the meter signal needs from the configuration.
#[derive(Debug)]
pub(crate) struct MeterSettings {
    pub(crate) registry: &'static MeterRegistry,
    pub(crate) service: String,
    pub(crate) instance: String,
    pub(crate) period: Duration,
    /// Report messages held while they cannot be sent (at least one).
    pub(crate) max_buffer_size: usize,
    /// The transport's message limit: each message sent fits it.
    pub(crate) max_message_bytes: usize,
    /// The variable that sets it, for the line that names it.
    pub(crate) max_message_variable: &'static str,
}

pub(crate) struct Meters {
    /// `None` when meters are off.
    active: Option<Active>,
}

struct Active {
    buffer: Arc<Mutex<ReportBuffer>>,
    /// Notified by the reading thread when it has buffered a report.
    arrived: Arc<Notify>,
    /// Asks the reading thread for a reading now; answered on the channel given.
    reader: std_mpsc::Sender<oneshot::Sender<()>>,
}

impl Meters {
    /// Starts the reading thread (the first reading one period from now).
    pub(crate) fn start(settings: Option<MeterSettings>, dropped: Arc<AtomicU64>) -> Meters {
        let active = settings.and_then(|settings| {
            let buffer = Arc::new(Mutex::new(ReportBuffer::new(
                settings.max_buffer_size,
                dropped,
            )));
            let arrived = Arc::new(Notify::new());
            let (reader, requests) = std_mpsc::channel();
            let reading = Reading {
                settings,
                buffer: Arc::clone(&buffer),
                arrived: Arc::clone(&arrived),
                too_large_said: false,
            };
            let started = std::thread::Builder::new()
                .name("skytrace-meters".into())
                .spawn(move || reading.run(&requests));
            match started {
                Ok(_) => Some(Active {
                    buffer,
                    arrived,
                    reader,
                }),
                Err(e) => {
                    crate::say::say(&format!(
                        "skytrace: cannot start the meters' thread: {e}; meters are not reported"
                    ));
                    None
                }
            }
        });
        Meters { active }
    }

    /// Sends what the reading thread buffers until the shutdown, then reads once more and
    /// delivers what is left within the deadline.
    pub(crate) async fn run<T: Transport>(self, shared: Rc<Shared<T>>) {
        let Some(active) = &self.active else {
            shared.stopping().await;
            return;
        };
        let mut health = Health::new(Signal::Meters, shared.keep_tracing);
        while shared.deadline().is_none() {
            if shared
                .within_stop(active.arrived.notified(), None)
                .await
                .is_none()
            {
                break;
            }
            if health.is_absent() {
                active.lock().drop_all();
                continue;
            }
            if shared.ready(&health).await {
                active.send(&shared, &mut health).await;
            }
        }
        // Shutting down: the last period's values go with what is queued.
        if shared.past_deadline() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if active.reader.send(tx).is_ok() {
            let budget = shared
                .deadline()
                .map_or(FINAL_READ_BUDGET, |d| {
                    d.saturating_duration_since(Instant::now())
                })
                .min(FINAL_READ_BUDGET);
            // A slow gauge delays the reading: what it holds is then sent without it.
            let _ = tokio::time::timeout(budget, rx).await;
        }
        if !health.is_absent() && shared.ready(&health).await {
            active.send(&shared, &mut health).await;
        }
    }
}

impl Active {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReportBuffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends every buffered report in one call; they go back in the buffer if it fails.
    async fn send<T: Transport>(&self, shared: &Shared<T>, health: &mut Health) {
        let reports = self.lock().take();
        if reports.is_empty() {
            return;
        }
        // A clone (a few kB once per period) so that a failed call loses nothing.
        let call = shared
            .transport
            .collect_meters(reports.clone(), shared.call_timeout());
        let delivered = match shared.within_deadline(call).await {
            Some(result) => shared.book(health, result).is_ok(),
            None => false,
        };
        if !delivered {
            self.lock().restore(reports);
        }
    }
}

impl Drop for Meters {
    /// What is still buffered is never sent: counted. The reading thread stops at its next
    /// wake-up (its channel is gone).
    fn drop(&mut self) {
        if let Some(active) = &self.active {
            active.lock().drop_all();
        }
    }
}

/// The reading thread's state.
struct Reading {
    settings: MeterSettings,
    buffer: Arc<Mutex<ReportBuffer>>,
    arrived: Arc<Notify>,
    too_large_said: bool,
}

impl Reading {
    /// Reads the registry every period, and whenever asked, until the signal is gone.
    fn run(mut self, requests: &std_mpsc::Receiver<oneshot::Sender<()>>) {
        // The configuration checks the period; clamp all the same.
        let period = self
            .settings
            .period
            .clamp(Duration::from_millis(1), Duration::from_secs(86_400));
        let mut next = Instant::now() + period;
        loop {
            match requests.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(reply) => {
                    self.read();
                    let _ = reply.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.read();
                    // A reading that overran its period is followed by the next one, not by a
                    // burst of the ones missed.
                    next = (next + period).max(Instant::now());
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Reads every meter now into the buffer (unless there is nothing to send). Gauge functions
    /// run here, outside every lock of the agent.
    fn read(&mut self) {
        let s = &self.settings;
        let report = s
            .registry
            .collect(&s.service, &s.instance, crate::time::now_millis());
        if report.meter_data.is_empty() {
            return;
        }
        let (parts, too_large) = split(report, s.max_message_bytes);
        if too_large > 0 && !self.too_large_said {
            self.too_large_said = true;
            crate::say::say(&format!(
                "skytrace: {too_large} meter(s) over the {}-byte message limit ({}) even alone \
                 were left out of the report (counted as dropped); said once",
                s.max_message_bytes, s.max_message_variable
            ));
        }
        {
            let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.count_dropped(too_large);
            buffer.push(parts);
        }
        self.arrived.notify_one();
    }
}

/// A report made in tests: what the reading thread would buffer.
#[cfg(test)]
pub(crate) fn read_once(settings: &MeterSettings) -> Vec<skytrace_proto::v3::MeterDataCollection> {
    let report = settings
        .registry
        .collect(&settings.service, &settings.instance, 0);
    split(report, settings.max_message_bytes).0
}

#[cfg(test)]
mod tests {
    use skytrace_proto::v3::meter_data::Metric;

    use super::*;

    #[test]
    fn a_reading_holds_every_meter_with_the_service_on_the_first() {
        let registry: &'static MeterRegistry = Box::leak(Box::new(MeterRegistry::new()));
        let counter = registry.counter("jobs").build().unwrap();
        counter.inc();
        let settings = MeterSettings {
            registry,
            service: "svc".into(),
            instance: "inst".into(),
            period: Duration::from_secs(1),
            max_buffer_size: 2,
            max_message_bytes: 4 * 1024 * 1024,
            max_message_variable: "SW_AGENT_MAX_MESSAGE_SIZE",
        };
        let reports = read_once(&settings);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].meter_data[0].service, "svc");
        assert!(matches!(
            &reports[0].meter_data[0].metric,
            Some(Metric::SingleValue(v)) if v.value == 1.0
        ));
    }
}
