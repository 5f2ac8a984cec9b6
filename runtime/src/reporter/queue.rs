//! The segments' bounded queue, with its counters.
//!
//! The service's threads offer items without ever waiting on the worker: a place is taken first
//! (one atomic add; when the queue is full the item is not even made, only counted as dropped:
//! [`Sender::place`]), then the item is made and added to the list under a lock held for that
//! alone ([`Place::put_with`]). The worker takes the whole list in one swap under that lock,
//! however many items it holds, and gives their places back as it is done with them (what it
//! holds counts against the bound); it is woken only while it waits for a first one. (tokio's
//! bounded channel, used before, cost about a hundred instructions an item on each side: a
//! semaphore, a block list, a wake-up check on every send.)
//!
//! The list is the queue's parameter ([`List`]): the segments' keeps their messages framed one
//! after another in one buffer (`batch::Batch`), so that what the worker takes is a request body
//! already; the tests' is a `Vec`.

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

/// What a queue holds its items in.
pub(crate) trait List: Default {
    /// Items held.
    fn len(&self) -> usize;
}

impl<T> List for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// A queue of `capacity` items (at least one), held in an `L`.
pub(crate) fn bounded<L: List>(capacity: usize) -> (Sender<L>, Receiver<L>) {
    let shared = Arc::new(Shared {
        capacity: capacity.max(1),
        taken: AtomicUsize::new(0),
        state: Mutex::new(State {
            items: L::default(),
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
        Receiver { shared },
    )
}

struct Shared<L> {
    capacity: usize,
    /// Places taken: items queued, and items being made to be queued.
    taken: AtomicUsize,
    state: Mutex<State<L>>,
    counts: Counts,
}

struct State<L> {
    items: L,
    /// The worker's task, while it waits for a first item.
    waiting: Option<Waker>,
    /// The worker is gone: offers are dropped and counted.
    closed: bool,
    /// The service's end is gone: the worker takes what is left, then hears `None`.
    sender_gone: bool,
}

impl<L> Shared<L> {
    /// Nothing that could panic or run outside code is done under this lock, so it is never
    /// poisoned in practice; a poisoned one is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<L>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back `n` places: their items were taken out or dropped.
    fn release(&self, n: usize) {
        self.taken.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A place taken for an item being made: given back if the item never gets queued, even when
/// making it panics.
pub(crate) struct Place<'a, L>(&'a Shared<L>);

impl<L> Place<'_, L> {
    /// Queues an item in this place: `add` adds it to the list, under the lock (it must add
    /// exactly one, and do nothing else: the item is made before). When the worker is gone it
    /// is not called; the item is counted as dropped.
    #[inline]
    pub(crate) fn put_with(self, add: impl FnOnce(&mut L)) {
        let shared = self.0;
        let mut state = shared.lock();
        if state.closed {
            drop(state);
            Counts::add(&shared.counts.dropped, 1);
            // `self` gives the place back here, outside the lock.
            return;
        }
        add(&mut state.items);
        let waiting = state.waiting.take();
        drop(state);
        // The item holds the place now; the worker gives it back when it takes the item.
        std::mem::forget(self);
        if let Some(worker) = waiting {
            worker.wake();
        }
    }
}

impl<L> Drop for Place<'_, L> {
    fn drop(&mut self) {
        self.0.release(1);
    }
}

/// The service's end.
pub(crate) struct Sender<L> {
    shared: Arc<Shared<L>>,
}

impl<T> Sender<Vec<T>> {
    /// Queues `make()` if there is room (made only then, outside the lock), else counts a drop.
    #[cfg(test)]
    pub(crate) fn offer_with(&self, make: impl FnOnce() -> T) {
        if let Some(place) = self.place() {
            let item = make();
            place.put_with(|items| items.push(item));
        }
    }
}

impl<L> Sender<L> {
    /// A place for an item, if there is room (else a drop is counted): the item is made after,
    /// outside any lock, and put there ([`Place::put_with`]); a place dropped unfilled is given
    /// back. (Not a closure that makes the item: it would take in the value the item is made
    /// from, a copy more.)
    #[inline]
    pub(crate) fn place(&self) -> Option<Place<'_, L>> {
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

impl<L> Drop for Sender<L> {
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
pub(crate) struct Receiver<L: List> {
    shared: Arc<Shared<L>>,
}

impl<L: List> Receiver<L> {
    /// Waits until an item is queued (`true`), or the sender is gone with nothing left
    /// (`false`). Takes nothing: [`Receiver::take_all`] does.
    pub(crate) async fn wait(&mut self) -> bool {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.items.len() > 0 {
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

    /// Every item queued, without waiting: the queue's list swapped for `fresh` (an empty
    /// list, made before the lock: its room is what the next items are added to). Their places
    /// stay taken until [`Receiver::done`] gives them back: what the worker holds counts
    /// against the bound.
    pub(crate) fn take_all(&mut self, fresh: L) -> L {
        let mut state = self.shared.lock();
        if state.items.len() == 0 {
            drop(state);
            return fresh;
        }
        // A worker taking items is not waiting: a waker left from a wait given up (another
        // branch of a `select!` won) would wake it for nothing.
        let stale = state.waiting.take();
        let taken = std::mem::replace(&mut state.items, fresh);
        drop(state);
        drop(stale);
        taken
    }

    /// Gives back the places of `n` items taken ([`Receiver::take_all`]) and done with: sent,
    /// or counted as dropped or failed.
    pub(crate) fn done(&self, n: usize) {
        self.shared.release(n);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shared.lock().items.len() == 0
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

impl<L: List> Drop for Receiver<L> {
    fn drop(&mut self) {
        self.close_and_count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_making_the_item() {
        let (tx, mut rx) = bounded::<Vec<u32>>(2);
        let mut made = 0;
        for i in 0..5 {
            tx.offer_with(|| {
                made += 1;
                i
            });
        }
        assert_eq!((made, tx.len()), (2, 2));
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 3);
        assert_eq!(rx.take_all(Vec::new()), [0, 1]);
        // Places held by the worker count against the bound until it is done with them.
        tx.offer_with(|| 6);
        rx.done(2);
        tx.offer_with(|| 7);
        rx.close_and_count();
        tx.offer_with(|| 8);
        assert_eq!(rx.counts().dropped.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn a_take_swaps_in_the_fresh_list_and_the_places_come_back_when_done() {
        let (tx, mut rx) = bounded::<Vec<u32>>(4);
        for i in 0..2 {
            tx.offer_with(|| i);
        }
        // The fresh list takes the queue's place, with its room.
        let fresh = Vec::with_capacity(64);
        let at = fresh.as_ptr();
        assert_eq!((rx.take_all(fresh), tx.len()), (vec![0, 1], 2));
        tx.offer_with(|| 2);
        rx.done(1);
        assert_eq!(tx.len(), 2);
        let next = rx.take_all(Vec::new());
        assert_eq!((&next[..], next.as_ptr()), (&[2][..], at));
        rx.done(2);
        assert_eq!(tx.len(), 0);
        // Empty: returns at once, the fresh list as it was.
        assert_eq!(rx.take_all(vec![7]), [7]);
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn any_capacity_is_accepted() {
        for capacity in [0, 1, usize::MAX] {
            let (tx, _rx) = bounded::<Vec<()>>(capacity);
            tx.offer_with(|| ());
            assert_eq!(tx.len(), 1);
        }
    }

    #[test]
    fn a_place_is_given_back_when_making_the_item_panics() {
        let (tx, mut rx) = bounded::<Vec<u32>>(1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tx.offer_with(|| panic!("encoding failed"));
        }));
        assert!(panicked.is_err());
        assert_eq!(tx.len(), 0);
        tx.offer_with(|| 1);
        assert_eq!(rx.take_all(Vec::new()), [1]);
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_waiting_worker_is_woken_by_an_offer_and_hears_the_sender_go() {
        let (tx, mut rx) = bounded::<Vec<u32>>(8);
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
                        batch = rx.take_all(Vec::new());
                        rx.done(batch.len());
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
        let (tx, mut rx) = bounded::<Vec<u32>>(100);
        for round in 0..3 {
            for i in 0..10 {
                tx.offer_with(|| round * 10 + i);
            }
            let batch = rx.take_all(Vec::new());
            rx.done(batch.len());
            assert_eq!(batch, (round * 10..round * 10 + 10).collect::<Vec<_>>());
            assert_eq!(tx.len(), 0);
        }
    }

    #[test]
    fn a_dropped_worker_counts_what_was_left_and_what_comes_after() {
        let (tx, rx) = bounded::<Vec<u32>>(4);
        tx.offer_with(|| 1);
        tx.offer_with(|| 2);
        drop(rx);
        tx.offer_with(|| 3);
        assert_eq!(tx.counts().dropped.load(Ordering::Relaxed), 3);
        assert_eq!(tx.len(), 0);
    }
}
