//! A bounded queue for one signal (segments now; logs and meters next), with its counters.
//!
//! The service's threads offer items without ever waiting: when the queue is full the item is
//! not even made ([`Sender::offer_with`] takes a closure), only counted as dropped. The worker
//! takes them out in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// The most a queue holds, whatever was configured: tokio's channel panics above
/// `usize::MAX >> 3` permits, and nothing real comes near this.
const MAX_CAPACITY: usize = usize::MAX >> 4;

/// What happened to a signal's items.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Delivered and acknowledged.
    pub(crate) sent: AtomicU64,
    /// Never sent: the queue was full, the reporter had stopped, or the item was too large.
    pub(crate) dropped: AtomicU64,
    /// Sent in a call that failed: the backend may not have them.
    pub(crate) failed: AtomicU64,
}

impl Counts {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A queue of `capacity` items (at least one).
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(capacity.clamp(1, MAX_CAPACITY));
    let counts = Arc::new(Counts::default());
    (
        Sender {
            tx,
            counts: Arc::clone(&counts),
        },
        Receiver { rx, counts },
    )
}

/// The service's end.
pub(crate) struct Sender<T> {
    tx: mpsc::Sender<T>,
    counts: Arc<Counts>,
}

impl<T> Sender<T> {
    /// Queues `make()` if there is room (made only then), else counts a drop.
    #[inline]
    pub(crate) fn offer_with(&self, make: impl FnOnce() -> T) {
        match self.tx.try_reserve() {
            Ok(permit) => permit.send(make()),
            Err(_) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Items waiting now.
    pub(crate) fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// The worker's end.
pub(crate) struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    counts: Arc<Counts>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    pub(crate) fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Moves items into `batch` until it holds `max`, without waiting.
    pub(crate) fn drain_into(&mut self, batch: &mut Vec<T>, max: usize) {
        let room = max.saturating_sub(batch.len());
        if room == 0 || self.rx.is_empty() {
            return;
        }
        // Taken in one call, their room given back to the senders at once: one `try_recv` per
        // item took and gave back one at a time (~250 instructions an item on the reporter's
        // thread). With items waiting, nothing is registered to be woken, so the waker that
        // does nothing is never kept; when the task's budget is spent the batch goes with what
        // it holds.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = self.rx.poll_recv_many(&mut cx, batch, room);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Closes the queue: later offers are dropped and counted, and so is what is still in it.
    pub(crate) fn close_and_count(&mut self) {
        self.rx.close();
        while self.rx.try_recv().is_ok() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_making_the_item() {
        let (tx, mut rx) = bounded::<u32>(2);
        let mut made = 0;
        for i in 0..5 {
            tx.offer_with(|| {
                made += 1;
                i
            });
        }
        assert_eq!((made, tx.len()), (2, 2));
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 3);
        let mut batch = Vec::new();
        rx.drain_into(&mut batch, 10);
        assert_eq!(batch, [0, 1]);
        tx.offer_with(|| 7);
        rx.close_and_count();
        tx.offer_with(|| 8);
        assert_eq!(rx.counts().dropped.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_drain_takes_at_most_max_and_gives_the_room_back() {
        let (tx, mut rx) = bounded::<u32>(4);
        for i in 0..4 {
            tx.offer_with(|| i);
        }
        let mut batch = vec![9];
        rx.drain_into(&mut batch, 3);
        assert_eq!((&batch[..], tx.len()), (&[9, 0, 1][..], 2));
        // Full already: nothing taken.
        rx.drain_into(&mut batch, 3);
        assert_eq!(tx.len(), 2);
        rx.drain_into(&mut batch, 10);
        assert_eq!((&batch[..], tx.len()), (&[9, 0, 1, 2, 3][..], 0));
        // Empty: returns at once.
        rx.drain_into(&mut batch, 10);
        tx.offer_with(|| 4);
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn any_capacity_is_accepted() {
        for capacity in [0, 1, usize::MAX] {
            let (tx, _rx) = bounded::<()>(capacity);
            tx.offer_with(|| ());
            assert_eq!(tx.len(), 1);
        }
    }
}
