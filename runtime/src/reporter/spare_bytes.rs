//! Emptied buffers of encoded segments, handed back by the reporter's thread to the threads that
//! encode.
//!
//! A small segment is encoded on the thread that finished it (`wire`), into a buffer that the
//! reporter's thread frees once its batch is framed. A block freed by another thread goes to
//! that thread's cache: the encoding thread's next buffer misses its own (glibc's `malloc` ≈ 230
//! instructions instead of ≈ 60) and the reporter's `free` costs ≈ 180 a segment. Instead the
//! reporter hands the emptied buffers back, a whole batch under one lock, and an encoding thread
//! takes one without waiting (when the lock is busy it allocates, as before). A bounded pool per
//! process, not per thread: the buffers come back on the reporter's thread, not on the one that
//! will take them.
//!
//! Bounded: at most [`SPARES`] buffers of at most [`MAX_CAPACITY`] bytes wait (256 KiB in all: about a batch of segments at a few thousand requests a second);
//! larger ones, and those past the bound, are freed.

use std::sync::{Mutex, PoisonError};

/// Most buffers waiting.
const SPARES: usize = 128;
/// Largest buffer kept: what a segment of a few spans takes.
const MAX_CAPACITY: usize = 2048;

static SPARE: Spares = Spares(Mutex::new(Vec::new()));

/// An empty buffer: a spare one when one waits, with the room it has (it held a segment of
/// this process, most are alike; writing grows it when it must), else a new one with room for
/// `len()` bytes (a guess worked out only then).
#[inline]
pub(crate) fn take(len: impl FnOnce() -> usize) -> Vec<u8> {
    SPARE.take(len)
}

/// Keeps `buffers` (emptied) for [`take`], as many as there is room for; frees the others,
/// after the lock is released.
pub(crate) fn give_back(buffers: impl IntoIterator<Item = Vec<u8>>) {
    SPARE.give_back(buffers);
}

struct Spares(Mutex<Vec<Vec<u8>>>);

impl Spares {
    #[inline]
    fn take(&self, len: impl FnOnce() -> usize) -> Vec<u8> {
        if let Ok(mut spare) = self.0.try_lock()
            && let Some(bytes) = spare.pop()
        {
            return bytes;
        }
        Vec::with_capacity(len())
    }

    fn give_back(&self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        let mut buffers = buffers.into_iter();
        let mut spare = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while spare.len() < SPARES {
            let Some(mut bytes) = buffers.next() else {
                return;
            };
            if bytes.capacity() > 0 && bytes.capacity() <= MAX_CAPACITY {
                bytes.clear();
                spare.push(bytes);
            }
        }
        drop(spare);
        // The rest: freed without the lock.
        drop(buffers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(spares: &Spares) -> usize {
        spares.0.lock().unwrap().len()
    }

    #[test]
    fn buffers_come_back_bounded_in_number_and_size() {
        let spares = Spares(Mutex::new(Vec::new()));
        let small = Vec::with_capacity(100);
        let at = small.as_ptr();
        spares.give_back([small, Vec::with_capacity(MAX_CAPACITY + 1), Vec::new()]);
        assert_eq!(waiting(&spares), 1, "only the small one is kept");
        // A spare as it is, whatever the guess (not even made): writing grows it if it must.
        let again = spares.take(|| unreachable!("a spare waits"));
        assert_eq!(
            (again.as_ptr(), again.len(), again.capacity()),
            (at, 0, 100),
            "the same allocation, empty"
        );
        assert_eq!(waiting(&spares), 0);
        // None waiting: a new one, sized by the guess.
        assert_eq!(
            spares.take(|| MAX_CAPACITY + 1).capacity(),
            MAX_CAPACITY + 1
        );
        spares.give_back([again]);
        assert_eq!(waiting(&spares), 1);
        // Never more than SPARES, whatever comes back.
        spares.give_back((0..SPARES * 2).map(|_| vec![7u8; 10]));
        assert_eq!(waiting(&spares), SPARES);
        // A busy lock: a new buffer, no wait.
        let held = spares.0.lock().unwrap();
        assert_eq!(spares.take(|| 10).capacity(), 10);
        drop(held);
    }
}
