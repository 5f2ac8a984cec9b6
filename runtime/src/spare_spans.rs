//! A thread's emptied span list, its first span's tag and log lists and one of that span's
//! texts, reused by the next segment it starts; and its spans' buffers of encoded pairs, kept
//! for the next logs and tags it formats (`encoded_pairs`).
//!
//! Every request's segment needs a list of span records (six fit in glibc's per-thread cache
//! of small blocks, see `ActiveSegment::start`), and its entry span a list of tags (an HTTP
//! entry has three). The gRPC reporter encodes a small segment on the thread that finished it
//! (`reporter::wire`) and frees it there: that thread keeps the two emptied lists for its next
//! segment instead of freeing them and allocating others, and the first tag value it owns (an
//! HTTP entry's `url`) for the next such text: three `malloc`s and three `free`s less per
//! request. A request traced with `tracing` (tower-http's `TraceLayer` through the bridge)
//! logs two events on its first span and formats its fields: that span's log list is kept as
//! well, and the three buffers of pairs go to `encoded_pairs`' spares. Only lists and texts of
//! the usual capacities are kept, one of each per thread: at most [`CAPACITY`] records' worth
//! (960 bytes), [`TAGS_CAPACITY`] tags' (384 bytes), [`LOGS_CAPACITY`] logs' (128 bytes) and
//! [`TEXT_CAPACITY`] bytes stay allocated per thread.

use std::borrow::Cow;
use std::cell::Cell;

use crate::segment::{LogRecord, SpanRecord, Text};

/// The capacity a segment's span list starts with, and the only one kept.
pub(crate) const CAPACITY: usize = 6;

/// The largest block glibc's per-thread cache of small blocks holds: a list allocated fresh
/// (the thread's first segment, or after one freed elsewhere) takes the arena's slower path in
/// `malloc` and `free` past it.
const SMALL_BLOCK: usize = 1032;
const _: () = assert!(CAPACITY * std::mem::size_of::<SpanRecord>() <= SMALL_BLOCK);

/// The largest tag list kept (the first span's).
pub(crate) const TAGS_CAPACITY: usize = 8;
/// The largest text kept (a value of the first span's tags: an HTTP entry's `url`).
pub(crate) const TEXT_CAPACITY: usize = 256;
/// The largest log list kept (the first span's): a list's first room, which two events' logs
/// take.
pub(crate) const LOGS_CAPACITY: usize = 4;

/// A segment's two lists, as it starts: both empty.
#[derive(Default)]
pub(crate) struct Lists {
    /// Room for [`CAPACITY`] records.
    pub(crate) spans: Vec<SpanRecord>,
    /// For the first span's tags: no room until its first tag when none was kept.
    pub(crate) first_tags: Vec<(Text, Text)>,
    /// For the first span's logs: no room until its first log when none was kept.
    pub(crate) first_logs: Vec<LogRecord>,
}

thread_local! {
    // One thread-local for both: one look-up on each side.
    static SPARE: Cell<Lists> = const {
        Cell::new(Lists {
            spans: Vec::new(),
            first_tags: Vec::new(),
            first_logs: Vec::new(),
        })
    };
    static SPARE_TEXT: Cell<String> = const { Cell::new(String::new()) };
}

/// An empty `String`: this thread's spare one when it has one (for a text every request makes
/// and its segment frees, an HTTP entry's `url`).
#[inline]
#[allow(dead_code)] // used by the HTTP server integrations, which depend on features
pub(crate) fn take_text() -> String {
    SPARE_TEXT.try_with(Cell::take).unwrap_or_default()
}

/// Empty lists for a new segment: this thread's spare ones when it has them.
#[inline]
pub(crate) fn take() -> Lists {
    // `try_with`: a segment may start while the thread's thread-locals are being destroyed.
    let mut lists = SPARE.try_with(Cell::take).unwrap_or_default();
    if lists.spans.capacity() != CAPACITY {
        lists.spans = Vec::with_capacity(CAPACITY);
    }
    lists
}

/// Empties `spans` (freeing what its records own) and keeps the list for this thread's next
/// segment, if it is of the usual capacity; frees it otherwise. The first span's tag and log
/// lists are kept too, emptied, if they are not larger than [`TAGS_CAPACITY`] and
/// [`LOGS_CAPACITY`]; the spans' buffers of pairs go to `encoded_pairs`' spares.
#[inline]
pub(crate) fn recycle(mut spans: Vec<SpanRecord>) {
    let (mut first_tags, mut first_logs) = (Vec::new(), Vec::new());
    if let Some(first) = spans.first_mut() {
        if let Some(text) = first.tags.iter_mut().find_map(|(_, value)| match value {
            Cow::Owned(text) if (1..=TEXT_CAPACITY).contains(&text.capacity()) => Some(text),
            _ => None,
        }) {
            let mut text = std::mem::take(text);
            text.clear();
            let _ = SPARE_TEXT.try_with(|spare| spare.set(text));
        }
        if first.tags.capacity() <= TAGS_CAPACITY {
            first_tags = std::mem::take(&mut first.tags);
            first_tags.clear();
        }
        if first.logs.capacity() <= LOGS_CAPACITY {
            first_logs = std::mem::take(&mut first.logs);
        }
    }
    // Looked for first: most segments have none (the native layer's, without logs).
    let has_pairs = |span: &SpanRecord| !span.encoded_tags.is_empty() || !span.logs.is_empty();
    if !first_logs.is_empty() || spans.iter().any(has_pairs) {
        keep_pairs(&mut spans, &mut first_logs);
    }
    if spans.capacity() == CAPACITY {
        spans.clear();
    } else {
        spans = Vec::new();
    }
    let _ = SPARE.try_with(|spare| {
        spare.set(Lists {
            spans,
            first_tags,
            first_logs,
        })
    });
}

/// Gives the buffers of `spans`' pairs and of the first span's `logs` to `encoded_pairs`'
/// spares, and empties `logs`. Out of line: the native layer's segments have none.
#[inline(never)]
fn keep_pairs(spans: &mut [SpanRecord], logs: &mut Vec<LogRecord>) {
    crate::encoded_pairs::keep_spares(|spares| {
        for log in logs.iter_mut() {
            spares.keep(&mut log.fields);
        }
        for span in spans {
            spares.keep(&mut span.encoded_tags);
            for log in &mut span.logs {
                spares.keep(&mut log.fields);
            }
        }
    });
    logs.clear();
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

    /// A segment's span list whose first span has `tags` (in `tags_list`, the list they go in),
    /// recycled on this thread; where that list's tags were.
    fn recycle_first(mut tags_list: Vec<(Text, Text)>, tags: Vec<(Text, Text)>) -> *const u8 {
        let mut spans = take().spans;
        let mut first = record();
        tags_list.extend(tags);
        let at = tags_list.as_ptr().cast();
        first.tags = tags_list;
        spans.push(first);
        recycle(spans);
        at
    }

    #[test]
    fn a_recycled_list_comes_back_empty_and_the_same() {
        std::thread::spawn(|| {
            let mut spans = take().spans;
            assert_eq!((spans.len(), spans.capacity()), (0, CAPACITY));
            spans.push(record());
            let at = spans.as_ptr();
            recycle(spans);
            let again = take().spans;
            assert!(again.is_empty());
            assert_eq!(again.as_ptr(), at, "the same allocation");
            // Taken: the next one is new.
            let other = take().spans;
            assert_ne!(other.as_ptr(), at);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_first_spans_tag_list_comes_back_empty_and_the_same() {
        std::thread::spawn(|| {
            let at = recycle_first(
                take().first_tags,
                vec![(Cow::Borrowed("url"), Cow::Owned("http://x/y".into()))],
            );
            let again = take().first_tags;
            assert!(again.is_empty());
            assert_eq!(again.as_ptr().cast(), at, "the same allocation");
            assert_eq!(
                take().first_tags.capacity(),
                0,
                "taken: the next one is new"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_first_owned_tag_value_comes_back_as_an_empty_text() {
        std::thread::spawn(|| {
            let url = String::from("http://x/y");
            let at = url.as_ptr();
            recycle_first(
                Vec::new(),
                vec![
                    (Cow::Borrowed("http.method"), Cow::Borrowed("GET")),
                    (Cow::Borrowed("url"), Cow::Owned(url)),
                ],
            );
            let text = take_text();
            assert!(text.is_empty());
            assert_eq!(text.as_ptr(), at, "the same allocation");
            assert_eq!(take_text().capacity(), 0, "taken: the next one is new");
            // A long text is freed, not kept.
            recycle_first(
                Vec::new(),
                vec![(
                    Cow::Borrowed("k"),
                    Cow::Owned("v".repeat(TEXT_CAPACITY + 1)),
                )],
            );
            assert_eq!(take_text().capacity(), 0, "a long text was kept");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn large_tag_lists_are_not_kept() {
        std::thread::spawn(|| {
            recycle_first(
                Vec::with_capacity(TAGS_CAPACITY + 1),
                vec![(Cow::Borrowed("k"), Cow::Borrowed("v"))],
            );
            assert_eq!(take().first_tags.capacity(), 0, "a large tag list was kept");
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
            assert_eq!(
                kept.spans.capacity(),
                0,
                "a list of another capacity was kept"
            );
            assert_eq!(take().spans.capacity(), CAPACITY);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_first_spans_log_list_and_every_spans_pair_buffers_come_back() {
        std::thread::spawn(|| {
            let mut spans = take().spans;
            let mut first = record();
            let mut second = record();
            first.logs.push(crate::edit::panic_log(Stamp::now()));
            second.encoded_tags.push("k", "v");
            let logs_at = first.logs.as_ptr();
            let pairs_at = [
                first.logs[0].fields.as_bytes().as_ptr(),
                second.encoded_tags.as_bytes().as_ptr(),
            ];
            spans.push(first);
            spans.push(second);
            recycle(spans);
            let again = take().first_logs;
            assert!(again.is_empty());
            assert_eq!(again.as_ptr(), logs_at, "the same allocation");
            // Both buffers of pairs are the thread's spares (counted where they are kept: the
            // allocator may well hand a freed block's address to the next buffer).
            assert_eq!(crate::encoded_pairs::spares_kept(), 2);
            let mut next = crate::encoded_pairs::EncodedTags::default();
            next.push("a", "b");
            let mut then = crate::encoded_pairs::LogFields::default();
            then.push("c", "d");
            let mut reused = [next.as_bytes().as_ptr(), then.as_bytes().as_ptr()];
            reused.sort();
            let mut pairs_at = pairs_at;
            pairs_at.sort();
            assert_eq!(reused, pairs_at);
        })
        .join()
        .unwrap();
    }
}
