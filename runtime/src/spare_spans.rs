//! A thread's emptied span list, reused by the next segment it starts.
//!
//! Every request's segment needs a list of span records (seven fit in glibc's per-thread cache
//! of small blocks, see `ActiveSegment::start`). The gRPC reporter encodes a small segment on
//! the thread that finished it (`reporter::wire`) and frees it there: that thread keeps the
//! emptied list for its next segment instead of freeing it and allocating another, one
//! `malloc` and one `free` less per request. Only lists of the usual capacity are kept, one per
//! thread: at most [`CAPACITY`] records' worth (952 bytes) stays allocated per thread.

use std::cell::Cell;

use crate::segment::SpanRecord;

/// The capacity a segment's span list starts with, and the only one kept.
pub(crate) const CAPACITY: usize = 7;

thread_local! {
    static SPARE: Cell<Vec<SpanRecord>> = const { Cell::new(Vec::new()) };
}

/// An empty list with room for [`CAPACITY`] records: this thread's spare one when it has one.
#[inline]
pub(crate) fn take() -> Vec<SpanRecord> {
    // `try_with`: a segment may start while the thread's thread-locals are being destroyed.
    let spare = SPARE.try_with(Cell::take).unwrap_or_default();
    if spare.capacity() == CAPACITY {
        spare
    } else {
        Vec::with_capacity(CAPACITY)
    }
}

/// Empties `spans` (freeing what its records own) and keeps the list for this thread's next
/// segment, if it is of the usual capacity; frees it otherwise.
#[inline]
pub(crate) fn recycle(mut spans: Vec<SpanRecord>) {
    if spans.capacity() != CAPACITY {
        return;
    }
    spans.clear();
    let _ = SPARE.try_with(|spare| spare.set(spans));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SpanKind;
    use crate::time::Stamp;
    use std::borrow::Cow;

    fn record() -> SpanRecord {
        SpanRecord::new(
            0,
            -1,
            SpanKind::Entry,
            Cow::Owned("GET:/x".into()),
            Cow::Borrowed(""),
            Stamp::now(),
        )
    }

    #[test]
    fn a_recycled_list_comes_back_empty_and_the_same() {
        std::thread::spawn(|| {
            let mut spans = take();
            assert_eq!((spans.len(), spans.capacity()), (0, CAPACITY));
            spans.push(record());
            let at = spans.as_ptr();
            recycle(spans);
            let again = take();
            assert!(again.is_empty());
            assert_eq!(again.as_ptr(), at, "the same allocation");
            // Taken: the next one is new.
            let other = take();
            assert_ne!(other.as_ptr(), at);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn lists_of_other_capacities_are_not_kept() {
        std::thread::spawn(|| {
            let mut big = Vec::with_capacity(64);
            big.push(record());
            recycle(big);
            // Looked at where it would be kept: comparing addresses would not do, as the
            // allocator may well hand the freed block's address to the next list.
            let kept = SPARE.with(Cell::take);
            assert_eq!(kept.capacity(), 0, "a list of another capacity was kept");
            assert_eq!(take().capacity(), CAPACITY);
        })
        .join()
        .unwrap();
    }
}
