//! [`ActiveSegment`]: one segment while it is recorded, shared (`Arc`) by its spans.
//!
//! Span ids come from an atomic counter, so they are unique however the spans reach the
//! segment: started here under its lock, or recorded on a thread's buffer and handed over in a
//! batch (see `current`). A change to a span whose record has not arrived yet waits here until
//! it does. The segment sorts its spans by id when it ends and hands them to the reporter.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::agent::Agent;
use crate::edit::Edit;
use crate::id::{Id, TraceId, new_id_at};
use crate::propagation::{Correlation, Sw8Extension, Sw8Parts};
use crate::segment::{Segment, SegmentRef, SpanKind, SpanRecord, Text};
use crate::time::Stamp;

/// The most entry spans one segment adopts as local spans; see [`ActiveSegment::adopt_entry`].
pub(crate) const MAX_NESTED_ENTRIES: u32 = 16;

pub(crate) struct ActiveSegment {
    pub(crate) agent: Arc<Agent>,
    /// `None`: a new trace, named after this, its first segment.
    trace_id: Option<TraceId>,
    pub(crate) segment_id: Id,
    /// Set when the trace skips analysis (`sw8-x`): every span of the segment does.
    pub(crate) skip_analysis: bool,
    /// The span limit in force when the segment started.
    span_limit: u32,
    /// The next span id. Handed out without the lock, so that local spans need none.
    next_span_id: AtomicU32,
    /// Set when a span was refused for the span limit.
    size_limited: AtomicBool,
    /// Entry spans started inside this segment (and recorded as its local spans).
    nested_entries: AtomicU32,
    state: Mutex<SegmentState>,
}

struct SegmentState {
    /// In the order they reached the segment, which is id order except where local spans
    /// recorded on a thread arrive after spans started later; sorted when the segment ends.
    spans: Vec<SpanRecord>,
    refs: Vec<SegmentRef>,
    /// Changes to spans recorded on a thread that has not handed them over yet.
    pending: Vec<(i32, Edit)>,
    finished: bool,
    correlation: Correlation,
}

impl SegmentState {
    /// Where span `span_id` is: at its own index when spans arrived in order (the usual case),
    /// else found from the end, where the spans still being worked on are.
    fn position(&self, span_id: i32) -> Option<usize> {
        let guess = usize::try_from(span_id).ok()?;
        match self.spans.get(guess) {
            Some(span) if span.id == span_id => Some(guess),
            _ => self.spans.iter().rposition(|s| s.id == span_id),
        }
    }

    fn span(&self, span_id: i32) -> Option<&SpanRecord> {
        self.position(span_id).map(|i| &self.spans[i])
    }

    fn span_mut(&mut self, span_id: i32) -> Option<&mut SpanRecord> {
        self.position(span_id).map(|i| &mut self.spans[i])
    }
}

thread_local! {
    /// The allocation of the last segment this thread finished, for its next one (see
    /// [`ActiveSegment::recycle`]).
    static SPARE: Cell<Option<Arc<ActiveSegment>>> = const { Cell::new(None) };
}

/// Where this thread's kept segment is, and whether it points at [`Agent::idle`] (for tests).
#[cfg(test)]
pub(crate) fn spare() -> Option<(usize, bool)> {
    let spare = SPARE.with(Cell::take)?;
    let seen = (
        Arc::as_ptr(&spare) as usize,
        Arc::ptr_eq(&spare.agent, Agent::idle()),
    );
    SPARE.with(|kept| kept.set(Some(spare)));
    Some(seen)
}

/// How a new segment starts.
pub(crate) struct SegmentStart {
    /// The span limit in force (read with the sampling decision: one look at the settings).
    pub(crate) span_limit: u32,
    pub(crate) trace_id: Option<TraceId>,
    pub(crate) refs: Vec<SegmentRef>,
    pub(crate) correlation: Correlation,
    pub(crate) skip_analysis: bool,
}

/// The headers a call made from an exit span carries.
pub(crate) struct OutgoingHeaders {
    pub(crate) sw8: String,
    pub(crate) correlation: Option<String>,
    pub(crate) extension: Option<String>,
}

/// What a snapshot needs to continue the trace elsewhere.
pub(crate) struct SnapshotParts {
    pub(crate) trace_id: TraceId,
    pub(crate) segment_id: Id,
    pub(crate) endpoint: String,
    pub(crate) correlation: Correlation,
    pub(crate) skip_analysis: bool,
}

impl ActiveSegment {
    pub(crate) fn trace_id(&self) -> &str {
        self.trace_id
            .as_ref()
            .map_or(self.segment_id.as_str(), TraceId::as_str)
    }

    /// Starts a segment whose first span (id 0) is a `kind` span named `operation`, with `init`
    /// applied to its record: written where it stays (a record is 160 bytes), before the
    /// segment is shared, so `init` may run any code.
    pub(crate) fn start(
        agent: Arc<Agent>,
        start: SegmentStart,
        first: (SpanKind, Text),
        init: impl FnOnce(&mut SpanRecord),
    ) -> Arc<Self> {
        let now = Stamp::now();
        // Six records (960 bytes) stay within glibc's per-thread cache of small blocks (up to
        // 1,032 bytes); more did not, and took the arena's slower path on every request. The
        // thread's last encoded segment's lists when it has them (`spare_spans`).
        let crate::spare_spans::Lists {
            mut spans,
            first_tags,
            first_logs,
        } = crate::spare_spans::take();
        spans.push(SpanRecord::new(
            0,
            -1,
            first.0,
            first.1,
            Cow::Borrowed(""),
            now,
        ));
        if let Some(record) = spans.first_mut() {
            record.skip_analysis = start.skip_analysis;
            record.tags = first_tags;
            record.logs = first_logs;
            init(record);
        }
        agent.segments_created.fetch_add(1, Ordering::Relaxed);
        // A new trace is named after its first segment, as unique among traces as that id is
        // among segments (OAP keeps the two apart): one id to make per request, not two.
        let segment_id = new_id_at(now);
        // In the allocation of this thread's last finished segment when it kept one, written
        // field by field: building the segment whole and moving it there copied its 336 bytes
        // and dropped every field of the old one (≈ 175 instructions a request).
        if let Ok(Some(mut spare)) = SPARE.try_with(Cell::take)
            && let Some(place) = Arc::get_mut(&mut spare)
        {
            place.begin(agent, start, segment_id, spans);
            return spare;
        }
        let mut fresh = ActiveSegment::unused();
        fresh.begin(agent, start, segment_id, spans);
        Arc::new(fresh)
    }

    /// A segment that records nothing until [`Self::begin`] starts it.
    fn unused() -> ActiveSegment {
        ActiveSegment {
            agent: Arc::clone(Agent::idle()),
            trace_id: None,
            segment_id: Id::default(),
            skip_analysis: false,
            span_limit: 0,
            next_span_id: AtomicU32::new(0),
            size_limited: AtomicBool::new(false),
            nested_entries: AtomicU32::new(0),
            state: Mutex::new(SegmentState {
                spans: Vec::new(),
                refs: Vec::new(),
                pending: Vec::new(),
                finished: true,
                correlation: Correlation::new(0, 0),
            }),
        }
    }

    /// Starts this segment afresh (a new one, or a finished one kept for reuse) with the span
    /// list `spans`, its first record written already. Inlined: called out of line, with the
    /// start's fields passed by value, it cost ≈ 60 instructions a request more.
    #[inline(always)]
    fn begin(
        &mut self,
        agent: Arc<Agent>,
        start: SegmentStart,
        segment_id: Id,
        spans: Vec<SpanRecord>,
    ) {
        self.agent = agent;
        self.trace_id = start.trace_id;
        self.segment_id = segment_id;
        self.skip_analysis = start.skip_analysis;
        self.span_limit = start.span_limit;
        *self.next_span_id.get_mut() = 1;
        *self.size_limited.get_mut() = false;
        *self.nested_entries.get_mut() = 0;
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        // A finished segment's end took its spans, refs and pending changes, and nothing joins
        // it after: empty lists, nothing to free.
        debug_assert!(state.pending.is_empty());
        state.spans = spans;
        state.refs = start.refs;
        state.finished = false;
        state.correlation = start.correlation;
    }

    /// Keeps `segment`'s allocation for this thread's next segment, if nothing else holds it
    /// (its first span has ended, every span and handle of it is gone): one `malloc` and one
    /// `free` less per request. One segment is kept per thread (336 bytes with its counts, and
    /// what its fields own until the next segment replaces them); it points at [`Agent::idle`] rather
    /// than its agent, which a spare must not keep alive.
    pub(crate) fn recycle(mut segment: Arc<Self>) {
        let Some(finished) = Arc::get_mut(&mut segment) else {
            return;
        };
        finished.agent = Arc::clone(Agent::idle());
        // Replaces (and frees) the segment kept before, if the thread's last segment was not
        // taken by a new one in between.
        let _ = SPARE.try_with(|spare| spare.set(Some(segment)));
    }

    fn lock(&self) -> MutexGuard<'_, SegmentState> {
        // A panic while the lock was held cannot leave the state half-written in a way that
        // matters more than losing the trace; never propagate it into the service.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new span id, or `None` past the span limit (the segment is then marked size-limited).
    #[inline]
    pub(crate) fn allocate_span_id(&self) -> Option<i32> {
        // Checked before adding, so that the counter stays near the limit and never wraps.
        if self.next_span_id.load(Ordering::Relaxed) < self.span_limit {
            let id = self.next_span_id.fetch_add(1, Ordering::Relaxed);
            if id < self.span_limit {
                return i32::try_from(id).ok();
            }
        }
        self.size_limited.store(true, Ordering::Relaxed);
        None
    }

    /// Whether new spans can still join the segment: `false` once it has ended (or reached its
    /// span limit). One atomic load, no lock: a spawned task asks before each poll.
    pub(crate) fn takes_spans(&self) -> bool {
        self.next_span_id.load(Ordering::Relaxed) < self.span_limit
    }

    /// Whether one more entry span may join this segment as a local span. A handler under a
    /// tracing middleware makes one or two; dozens mean the segment's own entry stays current by
    /// mistake (a guard leaked with `mem::forget`, or held around a loop serving requests), and
    /// every request after it would vanish into a segment that never ends.
    pub(crate) fn adopt_entry(&self) -> bool {
        self.nested_entries.fetch_add(1, Ordering::Relaxed) < MAX_NESTED_ENTRIES
    }

    /// Whether the segment has ended (its entry span did): nothing more joins it.
    pub(crate) fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// Takes the local spans recorded on one thread (dropped if the segment has ended).
    pub(crate) fn absorb(&self, local: &mut Vec<SpanRecord>) {
        let mut state = self.lock();
        if state.finished {
            drop(state);
            local.clear();
            return;
        }
        let first_new = state.spans.len();
        state.spans.append(local);
        if !state.pending.is_empty() {
            let state = &mut *state;
            for (id, edit) in std::mem::take(&mut state.pending) {
                match state.spans[first_new..].iter_mut().find(|r| r.id == id) {
                    Some(record) => edit.apply(record),
                    None => state.pending.push((id, edit)),
                }
            }
        }
    }

    /// Opens a child of `parent` recorded in the segment itself: its id, or `None` past the
    /// span limit or after the segment ended.
    pub(crate) fn start_span(
        &self,
        parent: i32,
        kind: SpanKind,
        operation: Text,
        peer: Text,
    ) -> Option<i32> {
        let span_id = self.allocate_span_id()?;
        let mut record = SpanRecord::new(span_id, parent, kind, operation, peer, Stamp::now());
        record.skip_analysis = self.skip_analysis;
        let mut state = self.lock();
        if state.finished {
            return None;
        }
        state.spans.push(record);
        Some(span_id)
    }

    /// Applies `edit` to span `span_id` if it has reached the segment; else gives it back.
    pub(crate) fn edit(&self, span_id: i32, edit: Edit) -> Result<(), Edit> {
        match self.lock().span_mut(span_id) {
            Some(span) => {
                edit.apply(span);
                Ok(())
            }
            None => Err(edit),
        }
    }

    /// Applies `edit` to span `span_id`; if it has not reached the segment yet (and the segment
    /// is still open), when it does.
    pub(crate) fn edit_or_defer(&self, span_id: i32, edit: Edit) {
        let mut state = self.lock();
        if let Some(span) = state.span_mut(span_id) {
            edit.apply(span);
        } else if !state.finished {
            state.pending.push((span_id, edit));
        }
    }

    /// [`Self::edit_or_defer`] for several edits, under one lock.
    pub(crate) fn edit_all_or_defer(&self, span_id: i32, edits: impl IntoIterator<Item = Edit>) {
        let mut state = self.lock();
        if let Some(span) = state.span_mut(span_id) {
            for edit in edits {
                edit.apply(span);
            }
        } else if !state.finished {
            state
                .pending
                .extend(edits.into_iter().map(|edit| (span_id, edit)));
        }
    }

    /// Applies `edits` to span `span_id` and ends it, under one lock (for a span recorded in the
    /// segment, or already handed over). Ending span 0 finishes the segment and reports it; the
    /// caller first moves this thread's local spans in (see `current::flush_if_current`).
    pub(crate) fn end_span(&self, span_id: i32, edits: impl IntoIterator<Item = Edit>) {
        let now = Stamp::now();
        let mut state = self.lock();
        if state.finished {
            return;
        }
        let Some(span) = state.span_mut(span_id) else {
            return;
        };
        for edit in edits {
            edit.apply(span);
        }
        span.close(now);
        if span_id != 0 {
            return;
        }
        state.finished = true;
        let mut spans = std::mem::take(&mut state.spans);
        let refs = std::mem::take(&mut state.refs);
        // Changes still waiting belong to spans that never arrived.
        let pending = std::mem::take(&mut state.pending);
        drop(state);
        drop(pending);
        // Spans still open when the segment ends (work that outlived its parent) close with it.
        // Ids whose spans never arrived (recorded on a thread still inside the segment's work)
        // leave gaps: ids need not be dense, only unique.
        for span in &mut spans {
            span.close(now);
        }
        if !spans.is_sorted_by_key(|s| s.id) {
            spans.sort_unstable_by_key(|s| s.id);
        }
        let segment = Segment {
            trace_id: self.trace_id.clone(),
            segment_id: self.segment_id.clone(),
            service: self.agent.service,
            instance: self.agent.instance,
            spans,
            refs,
            size_limited: self.size_limited.load(Ordering::Relaxed),
        };
        // A finished segment adopts no new span: they would be recorded, then dropped. With
        // the counter at the limit, new spans are no-ops, at no cost to the per-span check.
        self.next_span_id.store(self.span_limit, Ordering::Relaxed);
        self.agent.segments_finished.fetch_add(1, Ordering::Relaxed);
        self.agent.reporter.report(segment);
    }

    /// The headers for a call made from exit span `span_id`; `None` if it is not an open exit
    /// span with a peer. Made under the lock; written onto the carrier (user code) by the caller,
    /// after the lock is released.
    pub(crate) fn outgoing_headers(&self, span_id: i32) -> Option<OutgoingHeaders> {
        let state = self.lock();
        let span = state.span(span_id)?;
        if span.kind != SpanKind::Exit || span.peer.is_empty() {
            return None;
        }
        // The callee rejects an empty field: with no name on the first span, the exit span's
        // own name stands in (what the Python and Node.js agents send anyway).
        let endpoint = match state.span(0).map(|s| &*s.operation) {
            Some(name) if !name.is_empty() => name,
            _ if !span.operation.is_empty() => &*span.operation,
            _ => return None,
        };
        let sw8 = Sw8Parts {
            sampled: true,
            trace_id: self.trace_id(),
            parent_segment_id: self.segment_id.as_str(),
            parent_span_id: span_id,
            parent_service: self.agent.service,
            parent_service_instance: self.agent.instance,
            parent_endpoint: endpoint,
            target_address: &span.peer,
        }
        .encode();
        let correlation = (!state.correlation.is_empty()).then(|| state.correlation.encode());
        let extension = Sw8Extension {
            skip_analysis: self.skip_analysis,
            send_time_ms: None,
        };
        Some(OutgoingHeaders {
            sw8,
            correlation,
            extension: (!extension.is_empty()).then(|| extension.encode()),
        })
    }

    /// What continuing the trace in another task needs.
    pub(crate) fn snapshot_parts(&self) -> Option<SnapshotParts> {
        let state = self.lock();
        let endpoint = state.span(0).map(|s| s.operation.to_string())?;
        Some(SnapshotParts {
            trace_id: self
                .trace_id
                .clone()
                .unwrap_or_else(|| TraceId::Inline(self.segment_id.clone())),
            segment_id: self.segment_id.clone(),
            endpoint,
            correlation: state.correlation.clone(),
            skip_analysis: self.skip_analysis,
        })
    }

    /// The segment's endpoint: its first span's name.
    #[allow(dead_code)] // used by the log bridges, which depend on features
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.lock().span(0).map(|s| s.operation.to_string())
    }

    pub(crate) fn correlation(&self, key: &str) -> Option<String> {
        self.lock().correlation.get(key).map(str::to_owned)
    }

    /// Sets a correlation value (converted by the caller, before the lock).
    pub(crate) fn put_correlation(&self, key: String, value: String) -> bool {
        self.lock().correlation.put(key, value)
    }
}

/// A new span record whose id and parent are set when it joins a segment.
pub(crate) fn new_record(kind: SpanKind, operation: Text) -> SpanRecord {
    SpanRecord::new(0, -1, kind, operation, Cow::Borrowed(""), Stamp::now())
}
