//! Trace segments: a bounded queue filled by the service's threads (encoded there when small, see
//! [`crate::reporter::wire`]), delivered in batches of up to [`BATCH`]. Over gRPC one `collect`
//! call stays open for [`STREAM_WINDOW`] and carries every batch made meanwhile (a client
//! stream, as OAP reads it: each segment as it arrives); the Kafka transport sends each batch
//! on its own.
//!
//! This is the signal new traces follow: they pause when its calls fail (or the connection
//! does) and resume when one succeeds. With nothing queued while they are paused, an empty
//! `collect` is the probe that finds the segment receiver back.

use std::rc::Rc;
use std::time::Duration;

use skytrace_proto::v3::Commands;
use tokio::sync::mpsc::error::TrySendError;

use crate::reporter::batch::Batch;
use crate::reporter::health::{Health, Signal};
use crate::reporter::message;
use crate::reporter::queue::{Counts, List, Receiver};
use crate::reporter::status::SLOW_CALL;
use crate::reporter::transport::{CallError, Transport};
use crate::reporter::wire;
use crate::reporter::worker::{Shared, watched};

/// Most segments sent in one call.
pub(crate) const BATCH: usize = 500;
/// Longest a segment waits for others to share its batch (none waits once a whole batch is
/// queued). Each batch costs the reporter's thread a wake-up, a timer and a write (≈ 16 k
/// instructions): under steady traffic, waiting makes one batch carry many. 50 ms: a service
/// of a thousand requests a second pays that cost once per fifty segments (at the Java agent's
/// 20 ms consume cycle, once per twenty: ≈ 500 instructions a request more); the segments
/// reach OAP 30 ms later, which its minute-long metrics and its trace storage's flush (seconds)
/// do not show. The queue holds the same at most: its bound is in items, not time.
pub(crate) const LINGER: Duration = Duration::from_millis(50);
/// How long one streamed `collect` call stays open, carrying the batches made meanwhile. A call
/// costs an HTTP/2 stream, its headers and an answer (≈ 70 k instructions on the reporter's
/// thread, once per linger under steady traffic); a batch inside an open call costs its DATA
/// frames. The call is booked when it ends: what it carried counts as sent (or failed) then,
/// and new traces pause or resume then, at most this much later than a call per batch would.
pub(crate) const STREAM_WINDOW: Duration = Duration::from_secs(1);
/// The room the queue's next list is made with, in bytes of frames: the last batch's and a
/// quarter more, within these (above, the service's threads grow it as they add).
const ROOM: std::ops::RangeInclusive<usize> = 4 * 1024..=256 * 1024;

pub(crate) struct Segments {
    pub(crate) queue: Receiver<Batch>,
    /// Whether a segment dropped for its size was said already (the first one is; the rest are
    /// only counted).
    too_large_said: bool,
    /// The room of the queue's next list (see [`ROOM`]).
    room: usize,
    /// Segments taken from the queue beyond a batch (a backlog), sent in the next batches;
    /// their places in the queue are still taken.
    carry: Batch,
}

impl Segments {
    pub(crate) fn new(queue: Receiver<Batch>) -> Segments {
        Segments {
            queue,
            too_large_said: false,
            room: *ROOM.start(),
            carry: Batch::default(),
        }
    }

    /// Delivers the queue until the shutdown's deadline (or until every sender is gone and
    /// nothing is left).
    pub(crate) async fn run<T: Transport + 'static>(mut self, shared: Rc<Shared<T>>) {
        let mut health = Health::new(Signal::Segments, shared.keep_tracing);
        let mut stop = shared.stop_signal();
        // The first call is a probe of the segment receiver: a backend that does not answer it
        // within `SLOW_CALL` pauses new traces at once, whether or not any were made yet.
        if shared.ready(&health).await {
            self.send(Batch::default(), &shared, &mut health).await;
        }
        loop {
            if shared.past_deadline() {
                break;
            }
            let stopping = shared.deadline().is_some();
            if stopping && self.carry.is_empty() && self.queue.is_empty() {
                break;
            }
            if !shared.ready(&health).await {
                continue;
            }
            let batch = if stopping {
                // Shutting down: only what is queued counts, without lingering.
                let batch = self.queued();
                if batch.is_empty() {
                    break;
                }
                batch
            } else {
                // In this order: while new traces are paused but still recorded
                // (`SW_AGENT_KEEP_TRACING`), a queued segment is the probe. Left to chance, an
                // empty probe went first half the time, failed, and grew the back-off the
                // segment then waited out.
                tokio::select! {
                    biased;
                    waiting = self.wait() => if waiting {
                        self.lingered().await
                    } else {
                        // Every sender is gone and nothing is left.
                        break;
                    },
                    () = probe_due(&shared) => Batch::default(),
                    _ = stop.changed() => continue,
                }
            };
            if !stopping && !batch.is_empty() && shared.transport.streams_segments() {
                self.stream(batch, &shared, &mut health).await;
            } else {
                self.send(batch, &shared, &mut health).await;
            }
        }
    }

    /// Sends `batch`, and the batches made within [`STREAM_WINDOW`] after it, through one
    /// `collect` call, and books them all by its answer. A batch made after the call has ended
    /// (early: an error answer, a broken connection) counts as failed with it.
    async fn stream<T: Transport + 'static>(
        &mut self,
        batch: Batch,
        shared: &Rc<Shared<T>>,
        health: &mut Health,
    ) {
        let outgoing = self.outgoing_of(batch, shared);
        if outgoing.frames() == 0 {
            return;
        }
        let mut count = outgoing.frames();
        // At most one batch waits for the connection: a backend that stops reading leaves the
        // next ones in the queue (bounded), never in a growing buffer.
        let (frames, body) = tokio::sync::mpsc::channel(1);
        let _ = frames.try_send(outgoing.into_body());
        let call = CallTask::spawn(Rc::clone(shared), body);
        tokio::pin!(call);
        let close_at = tokio::time::Instant::now() + STREAM_WINDOW;
        // One timer for the window, not one a batch.
        let close = tokio::time::sleep_until(close_at);
        tokio::pin!(close);
        let mut stop = shared.stop_signal();
        let mut answer = None;
        // While traffic is steady (the last batch held more than one segment) the next batch is
        // taken a linger after this one, without waiting on the queue: a waiting receiver is
        // woken by the first segment, and that wake-up (this thread parked and unparked, a
        // futex call on the service's thread) cost as much again as the linger's own. A batch
        // of one goes back to waiting: a quiet service is not woken for nothing.
        let mut ticking = count > 1;
        'feed: loop {
            let batch = if ticking {
                // The call's answer is watched through the linger (its task's handle, cheap to
                // look at), as it is while waiting on the queue; the stop and the window's end
                // are looked at after it, without a timer or a future of their own.
                tokio::select! {
                    biased;
                    result = &mut call => {
                        answer = Some(result);
                        break 'feed;
                    }
                    () = self.linger() => {}
                }
                if tokio::time::Instant::now() >= close_at || stop.has_changed().unwrap_or(true) {
                    break 'feed;
                }
                let batch = self.queued();
                if batch.is_empty() {
                    ticking = false;
                    continue;
                }
                batch
            } else {
                let waiting = tokio::select! {
                    result = &mut call => {
                        answer = Some(result);
                        break 'feed;
                    }
                    waiting = self.wait() => waiting,
                    () = &mut close => break 'feed,
                    _ = stop.changed() => break 'feed,
                };
                // `false`: every sender is gone and nothing is left.
                if !waiting {
                    break;
                }
                self.lingered().await
            };
            ticking = batch.len() > 1;
            let outgoing = self.outgoing_of(batch, shared);
            if outgoing.frames() == 0 {
                continue;
            }
            let n = outgoing.frames();
            // Should the call have ended meanwhile (an error answer, a broken connection), the
            // body is gone: the batch counts as failed and the answer is awaited below.
            let body = match frames.try_send(outgoing.into_body()) {
                Ok(()) => {
                    count += n;
                    continue;
                }
                Err(TrySendError::Closed(_)) => {
                    Counts::add(&self.counts().failed, n);
                    break 'feed;
                }
                // The connection has not taken the last batch yet.
                Err(TrySendError::Full(body)) => body,
            };
            let send = frames.send(body);
            tokio::pin!(send);
            // Waits while the connection takes no more (HTTP/2's flow control): a backend that
            // stops reading is as slow as one that does not answer.
            let slow = tokio::time::sleep(SLOW_CALL);
            tokio::pin!(slow);
            let mut said_slow = false;
            loop {
                tokio::select! {
                    sent = &mut send => {
                        if sent.is_err() {
                            Counts::add(&self.counts().failed, n);
                            break 'feed;
                        }
                        count += n;
                        break;
                    }
                    result = &mut call => {
                        answer = Some(result);
                        Counts::add(&self.counts().failed, n);
                        break 'feed;
                    }
                    () = &mut slow, if !said_slow => {
                        said_slow = true;
                        shared.segments_slow();
                    }
                }
            }
        }
        // The body ends: the backend answers once it has read it.
        drop(frames);
        let result = match answer {
            Some(result) => Some(result),
            None => watched(call, || shared.segments_slow(), shared.stop_signal()).await,
        };
        self.book(result, count, shared, health);
    }

    /// Waits until a segment is there to send (`true`): carried from the last batch, or
    /// queued; `false` once every sender is gone and nothing is left.
    async fn wait(&mut self) -> bool {
        if !self.carry.is_empty() {
            return true;
        }
        self.queue.wait().await
    }

    /// What is queued, up to [`BATCH`], after a [`LINGER`] unless the batch is full already.
    /// The linger is a plain sleep, not a wait on the queue: a waiting receiver is woken by
    /// every segment sent, and that wake-up (a futex call on the service's thread, a context
    /// switch on this one) cost more than encoding and sending the segment.
    async fn lingered(&mut self) -> Batch {
        self.linger().await;
        self.queued()
    }

    /// A [`LINGER`], unless a whole batch is queued already: a service that makes more than a
    /// batch a linger is delivered as fast as the connection takes it, not a batch a linger
    /// (at [`BATCH`] segments every 50 ms, 10,000 a second: a busier service's queue would
    /// fill and drop).
    async fn linger(&self) {
        if self.carry.len() + self.queue.len() < BATCH {
            tokio::time::sleep(LINGER).await;
        }
    }

    /// What is queued, up to [`BATCH`], without waiting. Everything queued is taken at once
    /// (the lock held for a swap, however much waits); what is past a batch is carried to the
    /// next. The queue's next list is made here, on this thread, with the room the last one
    /// took.
    fn queued(&mut self) -> Batch {
        if self.carry.is_empty() {
            self.carry = self.queue.take_all(Batch::with_capacity(self.room));
            if self.carry.framed_len() > 0 {
                let room = self.carry.framed_len() + self.carry.framed_len() / 4;
                self.room = room.clamp(*ROOM.start(), *ROOM.end());
            }
        }
        let batch = if self.carry.len() > BATCH {
            self.carry.split_front(BATCH)
        } else {
            std::mem::take(&mut self.carry)
        };
        self.queue.done(batch.len());
        batch
    }

    /// Sends `batch` in one call (an empty one is a probe) and books the outcome.
    async fn send<T: Transport>(&mut self, batch: Batch, shared: &Shared<T>, health: &mut Health) {
        let probe = batch.is_empty();
        let outgoing = self.outgoing_of(batch, shared);
        let count = outgoing.frames();
        if count == 0 && !probe {
            return;
        }
        let call = shared
            .transport
            .collect_segments(outgoing, shared.call_timeout());
        let result = watched(call, || shared.segments_slow(), shared.stop_signal()).await;
        self.book(result, count, shared, health);
    }

    /// Books a call that carried `count` segments: `None` when the shutdown's deadline passed
    /// while it was waiting.
    fn book<T: Transport>(
        &self,
        result: Option<Result<Commands, CallError>>,
        count: usize,
        shared: &Shared<T>,
        health: &mut Health,
    ) {
        let Some(result) = result else {
            Counts::add(&self.counts().failed, count);
            return;
        };
        match shared.book(health, result) {
            Ok(_) => {
                Counts::add(&self.counts().sent, count);
                shared.segments_delivered();
            }
            Err(_) => {
                Counts::add(&self.counts().failed, count);
                shared.segments_refused();
            }
        }
    }

    /// [`Self::outgoing`] with the transport's limit, shown to a running profiling task.
    fn outgoing_of<T: Transport>(&mut self, batch: Batch, shared: &Shared<T>) -> Batch {
        let outgoing = self.outgoing(
            batch,
            shared.transport.max_message_bytes(),
            shared.transport.max_message_variable(),
        );
        shared.observe_segments(&outgoing);
        outgoing
    }

    /// `batch` ready to send: its segments queued whole encoded and framed, those over
    /// `max_bytes` left out and counted as dropped (with those the service's threads found too
    /// large), so one huge segment never fails the call that carries the others. `variable`
    /// sets the limit: it is named in the line.
    pub(crate) fn outgoing(&mut self, mut batch: Batch, max_bytes: usize, variable: &str) -> Batch {
        for segment in batch.take_whole() {
            // Written to be measured: a segment this large is rare, and is written here.
            let bytes = wire::encode_whole(&segment);
            if bytes.len() > max_bytes {
                batch.push_too_large(crate::reporter::batch::TooLarge {
                    len: bytes.len(),
                    trace_id: segment.trace_id().to_owned(),
                });
            } else {
                batch.push_message(&bytes);
            }
        }
        for too_large in batch.take_too_large() {
            Counts::add(&self.queue.counts().dropped, 1);
            if !self.too_large_said {
                self.too_large_said = true;
                crate::say::say(&message::too_large_line(
                    &too_large.trace_id,
                    too_large.len,
                    max_bytes,
                    variable,
                ));
            }
        }
        batch
    }

    pub(crate) fn counts(&self) -> &Counts {
        self.queue.counts()
    }
}

impl Drop for Segments {
    /// What could not be delivered is lost: counted rather than lost silently, and later
    /// offers are dropped and counted too.
    fn drop(&mut self) {
        self.queue.close_and_count();
        let carried = self.carry.len();
        Counts::add(&self.counts().dropped, carried);
        self.queue.done(carried);
    }
}

/// A streamed `collect` call on a task of its own: polled when it is woken, not each time the
/// feed looks at it (once a batch: tonic's layers cost ≈ 1.5 k instructions a poll), and
/// stopped when the feed stops waiting for it.
struct CallTask(tokio::task::JoinHandle<Result<Commands, CallError>>);

impl CallTask {
    fn spawn<T: Transport + 'static>(
        shared: Rc<Shared<T>>,
        body: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    ) -> CallTask {
        // The reporter's signals run on a `LocalSet` (`worker.rs`), and so does their call.
        CallTask(tokio::task::spawn_local(async move {
            let timeout = STREAM_WINDOW + shared.call_timeout();
            shared
                .transport
                .collect_segments_streamed(body, timeout)
                .await
        }))
    }
}

impl Future for CallTask {
    type Output = Result<Commands, CallError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|ended| {
            // Only a panic in the call's own code ends its task early: as a call that got no
            // answer, the connection left alone.
            ended.unwrap_or_else(|e| {
                Err(CallError::Timeout(format!(
                    "the call ended without an answer ({e})"
                )))
            })
        })
    }
}

impl Drop for CallTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves once new traces are paused: the segments' probe is due (the caller has waited for
/// the back-off already).
async fn probe_due<T: Transport>(shared: &Shared<T>) {
    loop {
        if !shared.status.is_available() {
            return;
        }
        shared.status_changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::queue::{self, Sender};

    /// A segments' task over a queue of `capacity` holding `n` one-frame segments.
    fn with_queued(capacity: usize, n: usize) -> (Sender<Batch>, Segments) {
        let (tx, rx) = queue::bounded::<Batch>(capacity);
        for _ in 0..n {
            if let Some(place) = tx.place() {
                place.put_with(|batch| batch.push_message(&[1]));
            }
        }
        (tx, Segments::new(rx))
    }

    /// On tokio's paused clock: the time a batch waited is the time slept, to the nanosecond.
    #[tokio::test(start_paused = true)]
    async fn a_whole_batch_is_taken_without_lingering_and_a_part_lingers() {
        let (tx, mut segments) = with_queued(BATCH * 3, BATCH * 2 + 1);
        let start = tokio::time::Instant::now();
        assert_eq!(segments.lingered().await.frames(), BATCH);
        // All of it was taken at once; what is carried still holds its places.
        assert_eq!((segments.queue.len(), tx.len()), (0, BATCH + 1));
        assert_eq!(segments.lingered().await.frames(), BATCH);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a whole batch waited for others"
        );
        assert_eq!(segments.lingered().await.frames(), 1);
        assert_eq!(
            start.elapsed(),
            LINGER,
            "less than a batch waits a linger for others"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn segments_carried_past_a_batch_are_there_to_wait_for() {
        // The sender kept: with it gone, a wait would end at once for that reason.
        let (_sender, mut segments) = with_queued(BATCH * 2, BATCH + 3);
        assert_eq!(segments.queued().frames(), BATCH);
        // Nothing more is queued: the three carried are what a wait finds, at once.
        let found = tokio::time::timeout(LINGER, segments.wait()).await;
        assert_eq!(found, Ok(true), "the carried segments were not waited for");
        assert_eq!(segments.lingered().await.frames(), 3);
    }

    #[test]
    fn segments_carried_past_a_batch_are_counted_when_the_worker_goes() {
        let (tx, mut segments) = with_queued(BATCH * 2, BATCH + 3);
        assert_eq!(segments.queued().frames(), BATCH);
        drop(segments);
        let counts = tx.counts();
        assert_eq!(counts.dropped.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert_eq!(tx.len(), 0, "every place given back");
    }
}
