//! Trace segments: a bounded queue filled by the service's threads (encoded there when small, see
//! [`crate::reporter::wire`]), delivered in batches of up to [`BATCH`], one `collect` call each.

use std::time::Duration;

use crate::reporter::message;
use crate::reporter::queue::{Counts, Receiver};
use crate::reporter::wire::{Outgoing, Queued};

/// Most segments sent in one call.
pub(crate) const BATCH: usize = 500;
/// Longest a segment waits for others to share its call. Each call costs an HTTP/2 stream and
/// a reply: under steady traffic, a few milliseconds of waiting make one call carry many.
pub(crate) const LINGER: Duration = Duration::from_millis(10);

pub(crate) struct Segments {
    pub(crate) queue: Receiver<Queued>,
    /// Whether a segment dropped for its size was said already (the first one is; the rest are
    /// only counted).
    too_large_said: bool,
}

impl Segments {
    pub(crate) fn new(queue: Receiver<Queued>) -> Segments {
        Segments {
            queue,
            too_large_said: false,
        }
    }

    /// Adds what is queued to `batch`, up to [`BATCH`], without waiting.
    pub(crate) fn fill(&mut self, batch: &mut Vec<Queued>) {
        self.queue.drain_into(batch, BATCH);
    }

    /// `batch` ready to send: each segment encoded, those over `max_bytes` left out and counted
    /// as dropped, so one huge segment never fails the call that carries the others.
    pub(crate) fn outgoing(&mut self, batch: Vec<Queued>, max_bytes: usize) -> Vec<Outgoing> {
        let mut out = Vec::with_capacity(batch.len());
        for queued in batch {
            match queued.into_outgoing_within(max_bytes) {
                Ok(outgoing) => out.push(outgoing),
                Err(too_large) => {
                    Counts::add(&self.queue.counts().dropped, 1);
                    if !self.too_large_said {
                        self.too_large_said = true;
                        eprintln!(
                            "{}",
                            message::too_large_line(&too_large.trace_id, too_large.len, max_bytes)
                        );
                    }
                }
            }
        }
        out
    }

    pub(crate) fn counts(&self) -> &Counts {
        self.queue.counts()
    }
}
