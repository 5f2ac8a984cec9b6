//! The segments' bounded queue, with its counters.
//!
//! The service's threads offer items without ever waiting on the worker: a place is taken first
//! (one atomic add; when the queue is full the item is not even made, only counted as dropped:
//! [`Sender::place`]), then the item is made and pushed under a lock held
//! for the push alone. The worker takes what is queued in one swap of the list under that lock,
//! however many items it holds (moved out after it as one copy), and is woken only while it
//! waits for a first one. (tokio's
//! bounded channel, used before, cost about a hundred instructions an item on each side: a
//! semaphore, a block list, a wake-up check on every send.)

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

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
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        taken: AtomicUsize::new(0),
        state: Mutex::new(State {
            items: Vec::new(),
            waiting: None,
            closed: false,
            sender_gone: false,
        }),
        counts: Counts::default(),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver {
            shared,
            spare: Vec::new(),
        },
    )
}

struct Shared<T> {
    capacity: usize,
    /// Places taken: items queued, and items being made to be queued.
    taken: AtomicUsize,
    state: Mutex<State<T>>,
    counts: Counts,
}

struct State<T> {
    items: Vec<T>,
    /// The worker's task, while it waits for a first item.
    waiting: Option<Waker>,
    /// The worker is gone: offers are dropped and counted.
    closed: bool,
    /// The service's end is gone: the worker takes what is left, then hears `None`.
    sender_gone: bool,
}

impl<T> Shared<T> {
    /// Nothing that could panic or run outside code is done under this lock, so it is never
    /// poisoned in practice; a poisoned one is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back `n` places: their items were taken out or dropped.
    fn release(&self, n: usize) {
        self.taken.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A place taken for an item being made: given back if the item never gets queued, even when
/// making it panics.
pub(crate) struct Place<'a, T>(&'a Shared<T>);

impl<T> Place<'_, T> {
    /// Queues `item` in this place (or drops and counts it when the worker is gone).
    #[inline]
    pub(crate) fn put(self, item: T) {
        let shared = self.0;
        let mut state = shared.lock();
        if state.closed {
            drop(state);
            Counts::add(&shared.counts.dropped, 1);
            // `self` (giving the place back) and `item` go here, outside the lock.
            return;
        }
        state.items.push(item);
        let waiting = state.waiting.take();
        drop(state);
        // The item holds the place now; the worker gives it back when it takes the item.
        std::mem::forget(self);
        if let Some(worker) = waiting {
            worker.wake();
        }
    }
}

impl<T> Drop for Place<'_, T> {
    fn drop(&mut self) {
        self.0.release(1);
    }
}

/// The service's end.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `make()` if there is room (made only then, outside the lock), else counts a drop.
    #[cfg(test)]
    pub(crate) fn offer_with(&self, make: impl FnOnce() -> T) {
        if let Some(place) = self.place() {
            place.put(make());
        }
    }

    /// A place for an item, if there is room (else a drop is counted): the item is made after,
    /// outside any lock, and put there ([`Place::put`]); a place dropped unfilled is given
    /// back. (Not a closure that makes the item: it would take in the value the item is made
    /// from, a copy more.)
    #[inline]
    pub(crate) fn place(&self) -> Option<Place<'_, T>> {
        let shared = &*self.shared;
        if shared.taken.fetch_add(1, Ordering::Relaxed) >= shared.capacity {
            shared.release(1);
            Counts::add(&shared.counts.dropped, 1);
            return None;
        }
        Some(Place(shared))
    }

    /// Items waiting now (and being made).
    pub(crate) fn len(&self) -> usize {
        self.shared.taken.load(Ordering::Relaxed)
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.shared.counts
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sender_gone = true;
        let waiting = state.waiting.take();
        drop(state);
        if let Some(worker) = waiting {
            worker.wake();
        }
    }
}

/// The worker's end.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// An empty list swapped for the queue's when everything queued is taken: the two
    /// allocations take turns, none is made per batch.
    spare: Vec<T>,
}

impl<T> Receiver<T> {
    /// Waits until an item is queued (`true`), or the sender is gone with nothing left
    /// (`false`). Takes nothing: [`Receiver::drain_into`] does.
    pub(crate) async fn wait(&mut self) -> bool {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if !state.items.is_empty() {
                let stale = state.waiting.take();
                drop(state);
                drop(stale);
                return Poll::Ready(true);
            }
            if state.sender_gone {
                return Poll::Ready(false);
            }
            let replaced = match &state.waiting {
                Some(waker) if waker.will_wake(cx.waker()) => None,
                _ => state.waiting.replace(cx.waker().clone()),
            };
            drop(state);
            drop(replaced);
            Poll::Pending
        })
        .await
    }

    /// Moves items into `batch` until it holds `max`, without waiting.
    pub(crate) fn drain_into(&mut self, batch: &mut Vec<T>, max: usize) {
        let room = max.saturating_sub(batch.len());
        if room == 0 {
            return;
        }
        let mut state = self.shared.lock();
        let n = state.items.len().min(room);
        if n == 0 {
            return;
        }
        // A worker taking items is not waiting: a waker left from a wait given up (another
        // branch of a `select!` won) would wake it for nothing.
        let stale = state.waiting.take();
        if n == state.items.len() {
            // All of it: the lists swapped, the items copied out after the lock.
            std::mem::swap(&mut state.items, &mut self.spare);
            drop(state);
            batch.append(&mut self.spare);
        } else {
            // More than a batch waits (the backend was slow): taken under the lock.
            batch.extend(state.items.drain(..n));
            drop(state);
        }
        drop(stale);
        self.shared.release(n);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    /// Closes the queue: later offers are dropped and counted, and so is what is still in it.
    pub(crate) fn close_and_count(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        let left = std::mem::take(&mut state.items);
        let stale = state.waiting.take();
        drop(state);
        drop(stale);
        Counts::add(&self.shared.counts.dropped, left.len());
        self.shared.release(left.len());
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close_and_count();
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

    #[test]
    fn a_place_is_given_back_when_making_the_item_panics() {
        let (tx, mut rx) = bounded::<u32>(1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tx.offer_with(|| panic!("encoding failed"));
        }));
        assert!(panicked.is_err());
        assert_eq!(tx.len(), 0);
        tx.offer_with(|| 1);
        let mut batch = Vec::new();
        rx.drain_into(&mut batch, 10);
        assert_eq!(batch, [1]);
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_waiting_worker_is_woken_by_an_offer_and_hears_the_sender_go() {
        let (tx, mut rx) = bounded::<u32>(8);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The worker on a thread of its own, so that one never woken fails the test (after a
        // minute) rather than hanging it.
        let (done, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            runtime.block_on(async {
                for _ in 0..3 {
                    let mut batch = Vec::new();
                    if rx.wait().await {
                        rx.drain_into(&mut batch, 10);
                    }
                    let _ = done.send(batch.pop());
                }
                // Every item taken: `false` once the sender is gone.
                let _ = done.send(rx.wait().await.then_some(9));
            });
        });
        let minute = std::time::Duration::from_secs(60);
        for i in 0..3 {
            // Offered once the worker may be waiting, or before: either way it is heard, while
            // the sender lives.
            std::thread::yield_now();
            tx.offer_with(|| i);
            let got = heard
                .recv_timeout(minute)
                .expect("the worker was never woken");
            assert_eq!(got, Some(i));
        }
        drop(tx);
        let got = heard
            .recv_timeout(minute)
            .expect("the sender's going went unheard");
        assert_eq!(got, None);
    }

    #[test]
    fn a_batch_takes_the_whole_list_and_the_next_offers_go_on_filling() {
        let (tx, mut rx) = bounded::<u32>(100);
        for round in 0..3 {
            for i in 0..10 {
                tx.offer_with(|| round * 10 + i);
            }
            let mut batch = Vec::new();
            rx.drain_into(&mut batch, 50);
            assert_eq!(batch, (round * 10..round * 10 + 10).collect::<Vec<_>>());
            assert_eq!(tx.len(), 0);
        }
    }

    #[test]
    fn a_dropped_worker_counts_what_was_left_and_what_comes_after() {
        let (tx, rx) = bounded::<u32>(4);
        tx.offer_with(|| 1);
        tx.offer_with(|| 2);
        drop(rx);
        tx.offer_with(|| 3);
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 3);
        assert_eq!(tx.len(), 0);
    }
}
