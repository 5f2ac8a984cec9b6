//! Log records for OAP's log view: the `tracing` and `log` bridges fill the process's log queue
//! ([`crate::logs`]); this signal drains it in batches of up to [`BATCH`], one
//! `LogReportService.collect` stream each.
//!
//! Its failures are its own: a log receiver that errs backs off the logs alone, and the records
//! of a failed call are counted as lost, never held (the queue behind them is bounded, and the
//! bridges keep filling it). One that OAP does not have (`UNIMPLEMENTED`) quiets the signal:
//! records are drained and counted as they come, and the receiver is asked again rarely. A
//! record whose message is over the transport's limit is dropped alone and counted, so it
//! cannot fail the batch it would travel in.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use skytrace_proto::v3::LogData;

use crate::log_sink::LogReceiver;
use crate::reporter::health::{Health, Signal};
use crate::reporter::transport::Transport;
use crate::reporter::worker::Shared;

/// Most records sent in one call. The limit of the transport applies to each record of the
/// stream, not to the stream.
pub(crate) const BATCH: usize = 500;

pub(crate) struct Logs {
    /// `None` when logs are not reported, or once the queue was replaced or removed.
    queue: Option<LogReceiver>,
    /// A record taken out to see whether the queue is empty: sent first.
    peeked: Option<LogData>,
    /// Records taken from the queue but not delivered (the call failed, OAP has no log
    /// receiver, the record was too large, or the worker stopped); the queue itself counts
    /// those it could not take.
    lost: Arc<AtomicU64>,
    /// Whether a record dropped for its size was said already.
    too_large_said: bool,
}

impl Logs {
    pub(crate) fn new(queue: Option<LogReceiver>, lost: Arc<AtomicU64>) -> Logs {
        Logs {
            queue,
            peeked: None,
            lost,
            too_large_said: false,
        }
    }

    /// Delivers the log queue until the shutdown's deadline.
    pub(crate) async fn run<T: Transport>(mut self, shared: Rc<Shared<T>>) {
        let mut health = Health::new(Signal::Logs, shared.keep_tracing);
        loop {
            if shared.past_deadline() {
                break;
            }
            let stopping = shared.deadline().is_some();
            if stopping && self.is_empty() {
                break;
            }
            if self.queue.is_none() && self.peeked.is_none() {
                // Logs are not reported (or the queue was removed): nothing to do.
                shared.stopping().await;
                break;
            }
            if health.is_absent() {
                // OAP has no log receiver: what comes is counted, not held.
                if !stopping
                    && let Some(Some(batch)) = shared
                        .within_stop(self.next_batch(), health.ready_at())
                        .await
                {
                    self.lost(batch.len());
                }
                if stopping {
                    let batch = self.try_batch();
                    self.lost(batch.len());
                }
                continue;
            }
            if !shared.ready(&health).await {
                continue;
            }
            let batch = if stopping {
                self.try_batch()
            } else {
                match shared.within_stop(self.next_batch(), None).await {
                    Some(Some(batch)) => batch,
                    // No queue any more (looked at again above), or a shutdown.
                    Some(None) | None => continue,
                }
            };
            let batch = self.within_limit(
                batch,
                shared.transport.max_message_bytes(),
                shared.transport.max_message_variable(),
            );
            if batch.is_empty() {
                continue;
            }
            let count = batch.len();
            let call = shared.transport.collect_logs(batch, shared.call_timeout());
            let delivered = match shared.within_deadline(call).await {
                Some(result) => shared.book(&mut health, result).is_ok(),
                None => false,
            };
            if !delivered {
                self.lost(count);
            }
        }
    }

    /// Waits for records and takes up to [`BATCH`]; `None` once there is no queue.
    async fn next_batch(&mut self) -> Option<Vec<LogData>> {
        loop {
            let queue = self.queue.as_mut()?;
            let mut batch: Vec<LogData> = self.peeked.take().into_iter().collect();
            if !batch.is_empty() {
                queue.drain_into(&mut batch);
                return Some(batch);
            }
            if queue.recv_many(&mut batch, BATCH).await == 0 {
                // Closed and drained: another queue replaced this one, or it was removed.
                self.queue = None;
                continue;
            }
            return Some(batch);
        }
    }

    /// What is waiting now, up to [`BATCH`], without waiting (for the shutdown).
    fn try_batch(&mut self) -> Vec<LogData> {
        let mut batch: Vec<LogData> = self.peeked.take().into_iter().collect();
        if let Some(queue) = &mut self.queue {
            queue.drain_into(&mut batch);
        }
        batch
    }

    /// Whether no record is waiting now.
    fn is_empty(&mut self) -> bool {
        if self.peeked.is_none() {
            self.peeked = self.queue.as_mut().and_then(LogReceiver::try_recv);
        }
        self.peeked.is_none()
    }

    /// `batch` without the records whose message is over `max_bytes`, counted as lost.
    /// `variable` sets the limit: it is named in the line.
    fn within_limit(
        &mut self,
        mut batch: Vec<LogData>,
        max_bytes: usize,
        variable: &str,
    ) -> Vec<LogData> {
        let before = batch.len();
        let mut largest = 0;
        batch.retain(|log| {
            let len = log.encoded_len();
            largest = largest.max(len);
            len <= max_bytes
        });
        let dropped = before - batch.len();
        if dropped > 0 {
            self.lost(dropped);
            if !self.too_large_said {
                self.too_large_said = true;
                crate::say::say(&format!(
                    "skytrace: dropped a log record of {largest} bytes, over the {max_bytes}-byte \
                     message limit ({variable}); the others of its batch go on, \
                     later ones are only counted"
                ));
            }
        }
        batch
    }

    /// `n` records were taken but not delivered.
    fn lost(&self, n: usize) {
        self.lost.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Logs {
    /// Counts what is still queued as lost and lets go of the queue (the worker is stopping):
    /// later records are dropped and counted by the queue's sender.
    fn drop(&mut self) {
        // Bounded: the bridges may go on filling the queue meanwhile.
        for _ in 0..64 {
            let batch = self.try_batch();
            if batch.is_empty() {
                break;
            }
            self.lost(batch.len());
        }
        if self.queue.take().is_some() {
            // Records are no longer built for a queue nobody drains.
            crate::log_sink::reporter_stopped();
        }
    }
}

/// Taking what is waiting, without waiting.
trait DrainInto {
    fn drain_into(&mut self, batch: &mut Vec<LogData>);
}

impl DrainInto for LogReceiver {
    /// Moves waiting records into `batch` until it holds [`BATCH`].
    fn drain_into(&mut self, batch: &mut Vec<LogData>) {
        while batch.len() < BATCH {
            match self.try_recv() {
                Some(log) => batch.push(log),
                None => break,
            }
        }
    }
}
