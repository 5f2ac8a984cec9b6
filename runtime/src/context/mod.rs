//! The tracing context: which span is current on a thread, the segments being recorded, and
//! how a trace enters the service.
//!
//! - `current`: the thread's current span and its buffer of local span records (the crate's
//!   only `unsafe` code);
//! - `recording`: [`ActiveSegment`], one segment while it is recorded;
//! - `unsampled`: a trace that is propagated but not recorded here;
//! - `handle`: what a span holds of its trace;
//! - `entry`: starting an entry span (`sw8`, sampling, ignore rules);
//! - `outgoing`: the headers an exit span's call carries;
//! - `signal_tag`: the profiler's tagger, telling a sample which segment its thread ran.
//!
//! A trace being recorded in this process lives in an [`ActiveSegment`], shared (`Arc`) by the
//! spans that belong to it. Because a future carries its span and re-enters it on whichever
//! worker thread polls it, nesting stays right on a multi-threaded runtime, and `join!`ed
//! children each see their own parent. A local span may end on another thread; a change made
//! where its record cannot be reached yet waits in the segment until the record arrives.

pub(crate) mod current;
mod entry;
mod handle;
mod outgoing;
mod recording;
#[cfg(feature = "profiling")]
pub(crate) mod signal_tag;
mod unsampled;

pub(crate) use entry::{EntryName, Started, entry};
pub(crate) use handle::{Handle, HandleId, RecordAt};
pub(crate) use outgoing::write_headers;
pub(crate) use recording::{ActiveSegment, SegmentStart};
pub(crate) use unsampled::UnsampledContext;

use std::sync::Arc;

use crate::edit::Edit;
use crate::settings::TraceSettings;
use crate::time::Stamp;

/// `read` applied to the live settings of the trace recording on this thread; `None` when
/// nothing records here. For integrations whose recording depends on a setting (SQL
/// parameters), read when they prepare the work, before any span exists.
#[cfg_attr(
    not(any(feature = "sqlx-postgres", feature = "sqlx-mysql")),
    allow(dead_code)
)]
pub(crate) fn recording_settings<R: Default>(read: impl FnOnce(&TraceSettings) -> R) -> Option<R> {
    match current::clone_current()? {
        Handle::Recording { segment, .. } => Some(segment.agent.settings.with(|s| read(&s.source))),
        Handle::Unsampled { .. } => None,
    }
}

/// Applies `edit` to span `span_id` of `segment`, whose record is `at`: on this thread if it is
/// still in its buffer, else in the segment (waiting there for the record if it has not arrived).
#[inline]
pub(crate) fn edit_span(segment: &Arc<ActiveSegment>, span_id: i32, at: RecordAt, edit: Edit) {
    let edit = match at {
        RecordAt::Buffered(index) => match current::edit_buffered(segment, span_id, index, edit) {
            Ok(()) => return,
            Err(edit) => edit,
        },
        RecordAt::Segment => edit,
    };
    segment.edit_or_defer(span_id, edit);
}

/// Applies `edits` to span `span_id` of `segment`, in order: under one lock where the record is
/// in the segment (a `tracing` span's fields, several tags at once).
pub(crate) fn edit_span_all<I>(segment: &Arc<ActiveSegment>, span_id: i32, at: RecordAt, edits: I)
where
    I: IntoIterator<Item = Edit>,
{
    match at {
        RecordAt::Buffered(_) => {
            for edit in edits {
                edit_span(segment, span_id, at, edit);
            }
        }
        RecordAt::Segment => segment.edit_all_or_defer(span_id, edits),
    }
}

/// Applies `edits` to span `span_id` and ends it. Ending span 0 finishes the segment: this
/// thread's local spans of it move in first, and the segment goes to the reporter.
#[inline]
pub(crate) fn end_span<I>(segment: Arc<ActiveSegment>, span_id: i32, at: RecordAt, edits: I)
where
    I: IntoIterator<Item = Edit>,
{
    if span_id == 0 {
        current::flush_if_current(&segment);
        segment.end_span(0, edits);
        ActiveSegment::recycle(segment);
        return;
    }
    let now = Stamp::now();
    for edit in edits {
        edit_span(&segment, span_id, at, edit);
    }
    // The usual case, without an `Edit`: a local span's record still on this thread.
    if let RecordAt::Buffered(index) = at
        && current::close_buffered(&segment, span_id, index, now)
    {
        return;
    }
    segment.edit_or_defer(span_id, Edit::End(now));
}

#[cfg(test)]
pub(crate) mod tests;
