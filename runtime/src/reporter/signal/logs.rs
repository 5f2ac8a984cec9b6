//! Log records for OAP's log view: the `tracing` and `log` bridges fill the process's log queue
//! ([`crate::logs`]); the worker drains it in batches of up to [`BATCH`], one
//! `LogReportService.collect` stream each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use skytrace_proto::v3::LogData;

use crate::log_sink::LogReceiver;

/// Most records sent in one call. The log queue caps each record's text
/// (`SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE`, 32 KiB by default), so a batch stays far below the
/// collector's message limit: the limit applies to each record of the stream, not the stream.
pub(crate) const BATCH: usize = 500;

pub(crate) struct Logs {
    /// `None` when logs are not reported, or once the queue was replaced or removed.
    queue: Option<LogReceiver>,
    /// A record taken out to see whether the queue is empty: sent first.
    peeked: Option<LogData>,
    /// Records taken from the queue but not delivered (the call failed, or the worker
    /// stopped); the queue itself counts those it could not take.
    lost: Arc<AtomicU64>,
}

impl Logs {
    pub(crate) fn new(queue: Option<LogReceiver>, lost: Arc<AtomicU64>) -> Logs {
        Logs {
            queue,
            peeked: None,
            lost,
        }
    }

    /// Waits for records and takes up to [`BATCH`]; never returns when there is no queue.
    pub(crate) async fn next_batch(&mut self) -> Vec<LogData> {
        loop {
            let Some(queue) = &mut self.queue else {
                return std::future::pending().await;
            };
            let mut batch: Vec<LogData> = self.peeked.take().into_iter().collect();
            if !batch.is_empty() {
                queue.drain_into(&mut batch);
                return batch;
            }
            if queue.recv_many(&mut batch, BATCH).await == 0 {
                // Closed and drained: another queue replaced this one, or it was removed.
                self.queue = None;
                continue;
            }
            return batch;
        }
    }

    /// What is waiting now, up to [`BATCH`], without waiting (for the shutdown).
    pub(crate) fn try_batch(&mut self) -> Vec<LogData> {
        let mut batch: Vec<LogData> = self.peeked.take().into_iter().collect();
        if let Some(queue) = &mut self.queue {
            queue.drain_into(&mut batch);
        }
        batch
    }

    /// Whether no record is waiting now.
    pub(crate) fn is_empty(&mut self) -> bool {
        if self.peeked.is_none() {
            self.peeked = self.queue.as_mut().and_then(LogReceiver::try_recv);
        }
        self.peeked.is_none()
    }

    /// `n` records were taken but not delivered.
    pub(crate) fn lost(&self, n: usize) {
        self.lost.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts what is still queued as lost and lets go of the queue (the worker is stopping):
    /// later records are dropped and counted by the queue's sender.
    pub(crate) fn close_and_count(&mut self) {
        // Bounded: the bridges may go on filling the queue meanwhile.
        for _ in 0..64 {
            let batch = self.try_batch();
            if batch.is_empty() {
                break;
            }
            self.lost(batch.len());
        }
        self.queue = None;
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
