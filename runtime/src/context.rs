//! The per-task tracing context.
//!
//! A trace being recorded in this process lives in an [`ActiveSegment`], shared (`Arc`) by the
//! spans that belong to it. Which span is *current* is a thread-local [`Handle`], set while a span
//! is entered: a guard for sync code ([`crate::EnteredSpan`]), and around every poll for a future
//! ([`crate::InSpan`]). Because the future carries its span and re-enters it on whichever worker
//! thread polls it, nesting stays right on a multi-threaded runtime, and `join!`ed children each
//! see their own parent. Work handed to another task continues through a [`ContextSnapshot`].
//!
//! Local spans are recorded without touching the segment: their records go to a per-thread
//! buffer that moves to the segment, under one lock, whenever the current handle is replaced (a
//! guard dropped, a poll returned) and before the segment ends. A [`crate::LocalSpan`] (what
//! `#[trace]` makes on a plain `fn`) also becomes current by switching the current handle's
//! span id in place, as does any span entered while its own segment is current: no lock and
//! no reference count per span. A local [`Span`] may end on another thread; a change made
//! where its record cannot be reached yet waits in the segment until the record arrives. Span
//! ids come from an atomic counter in the segment, so they are unique however the spans reach
//! it; the segment sorts its spans by id when it ends.

use std::borrow::Cow;
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::id::{Id, TraceId, new_id, new_id_at};
use crate::propagation::{Correlation, Injector, Sw8Extension, Sw8Header, Sw8Parts};
use crate::segment::{RefKind, Segment, SegmentRef, SpanKind, SpanRecord, Text};
use crate::span::Span;
use crate::time::Stamp;
use crate::tracer::TracerInner;

/// What is current on this thread: a recording span, or a trace that is not sampled.
#[derive(Clone)]
pub(crate) enum Handle {
    Recording {
        segment: Arc<ActiveSegment>,
        span_id: i32,
    },
    /// The trace is not recorded here, but it is still propagated (sample flag 0), so an exit
    /// span remembers the peer it dials.
    Unsampled {
        context: Arc<UnsampledContext>,
        peer: Option<Text>,
    },
}

impl Handle {
    /// What tells one handle from another without touching reference counts.
    pub(crate) fn identity(&self) -> (usize, i32) {
        match self {
            Handle::Recording { segment, span_id } => (Arc::as_ptr(segment) as usize, *span_id),
            Handle::Unsampled { context, peer } => {
                (Arc::as_ptr(context) as usize, i32::from(peer.is_some()) - 2)
            }
        }
    }
}

/// A thread's tracing state.
struct ThreadContext {
    /// The current span, if any.
    current: Cell<Option<Handle>>,
    /// Local spans ([`crate::LocalSpan`]s and local [`Span`]s) recorded since the last flush.
    /// They all belong to `current`'s segment: `current` changes segment only through [`replace_current`], which flushes first.
    /// Recording here takes no lock and counts no reference; the segment gets them in one go.
    local: UnsafeCell<Vec<SpanRecord>>,
}

thread_local! {
    static CONTEXT: ThreadContext = const {
        ThreadContext {
            current: Cell::new(None),
            local: UnsafeCell::new(Vec::new()),
        }
    };
    /// Mirrors `current.is_some()`. A thread-local without a destructor is a plain load, while
    /// reaching `CONTEXT` (which owns `Arc`s, so has one) first checks its registration: outside
    /// any trace, looking here is all a span costs.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the current handle; `None` when no trace is current (or, during thread
/// teardown, when the thread-local is gone).
pub(crate) fn with_current<R>(f: impl FnOnce(&Handle) -> R) -> Option<R> {
    CONTEXT
        .try_with(|ctx| {
            // Take the handle out for the duration of `f` and put it back: a `Cell` needs no
            // borrow flag, and `f` (our own code) never looks at the current handle again.
            let handle = ctx.current.take()?;
            let result = f(&handle);
            ctx.current.set(Some(handle));
            Some(result)
        })
        .ok()
        .flatten()
}

/// Puts `previous` back as current and returns the handle that was current, if it is the one
/// `identity` names: how [`crate::SpanGuard`] takes its lent handle back. A handle of the same
/// segment pointing at another span was left so by a leaked [`crate::LocalSpan`]: it is taken
/// back as the lent span. Anything else found there was left by a leaked guard: it is
/// released, and the lent handle, held by that guard, is lost with it — a lost span, never
/// unsound memory.
pub(crate) fn take_back(previous: Option<Handle>, identity: (usize, i32)) -> Option<Handle> {
    let mut handle = replace_current(previous).filter(|h| h.identity().0 == identity.0)?;
    if let Handle::Recording { span_id, .. } = &mut handle {
        *span_id = identity.1;
    }
    (handle.identity() == identity).then_some(handle)
}

/// [`with_current`] without moving the handle out and back: for the per-span hot path.
///
/// `f` must not make any span current or restore one (no `enter`, no guard drop) and must run
/// no user code that could: it sees the handle by reference while it stays in the thread-local.
/// `ActiveSegment::start_span` (a lock, a push, an `Arc` clone) is what it is for.
#[inline]
pub(crate) fn peek_current<R>(f: impl FnOnce(&Handle) -> R) -> Option<R> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: the `Cell` is only ever written on this thread (it is a thread-local),
            // through `replace`/`take`/`set` and the in-place span-id switches (`start_local`,
            // `end_local`, `switch_in_place`, `switch_back`); by the contract above none of them
            // runs while `f` does, so the shared reference does not alias a write and does not
            // outlive the call.
            let current = unsafe { &*ctx.current.as_ptr() };
            current.as_ref().map(f)
        })
        .ok()
        .flatten()
}

/// Makes `handle` current, returning what was current before. The local spans recorded under
/// the previous handle move to its segment first.
pub(crate) fn replace_current(handle: Option<Handle>) -> Option<Handle> {
    let active = handle.is_some();
    let previous = CONTEXT
        .try_with(|ctx| {
            let previous = ctx.current.replace(handle);
            if let Some(Handle::Recording { segment, .. }) = &previous {
                flush_local(ctx, segment);
            }
            previous
        })
        .unwrap_or(None);
    ACTIVE.with(|a| a.set(active));
    previous
}

/// Makes span `id` of `segment` current by switching the span id of the current handle in
/// place, when that handle already records in `segment` (a child entered inside its parent, a
/// child future polled inside its parent's poll): no reference count, no flush. Returns the
/// span id to switch back to, or `None` when the current handle is another trace's (or none)
/// and the caller must replace it.
#[inline]
pub(crate) fn switch_in_place(segment: &Arc<ActiveSegment>, id: i32) -> Option<i32> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: as in `start_local`.
            let current = unsafe { &mut *ctx.current.as_ptr() };
            match current {
                Some(Handle::Recording {
                    segment: current,
                    span_id,
                }) if Arc::ptr_eq(current, segment) => Some(std::mem::replace(span_id, id)),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Undoes [`switch_in_place`]: span `previous` of the segment at `segment` is current again, if
/// that segment is still current here (a leaked guard may have replaced it: then nothing).
#[inline]
pub(crate) fn switch_back(segment: usize, previous: i32) {
    let _ = CONTEXT.try_with(|ctx| {
        // SAFETY: as in `start_local`.
        let current = unsafe { &mut *ctx.current.as_ptr() };
        if let Some(Handle::Recording {
            segment: current,
            span_id,
        }) = current
            && Arc::as_ptr(current) as usize == segment
        {
            *span_id = previous;
        }
    });
}

/// Moves the local spans recorded on this thread to `segment`, which they belong to.
fn flush_local(ctx: &ThreadContext, segment: &ActiveSegment) {
    // SAFETY: the buffer is only reached from this thread, by the functions of this module,
    // none of which runs user code or re-enters another while it holds the reference.
    let local = unsafe { &mut *ctx.local.get() };
    if local.is_empty() {
        return;
    }
    segment.absorb(local);
}

/// Where a [`crate::LocalSpan`] keeps what it needs to end: which segment (by address only, to
/// compare — it holds no reference), its id and parent, and where its record was put.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalEntry {
    segment: usize,
    id: i32,
    parent: i32,
    index: usize,
}

/// Starts a local span under the current span, records it on this thread and makes it current:
/// no lock, no reference count, one atomic add for the id. `None` when no sampled trace is
/// current or past the span limit.
#[inline]
pub(crate) fn start_local(operation: Text) -> Option<LocalEntry> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: see `peek_current`; nothing else touches `current` or the buffer while
            // these references live, and no user code runs (dropping `operation` frees a
            // `String` at most).
            let current = unsafe { &mut *ctx.current.as_ptr() };
            let Some(Handle::Recording { segment, span_id }) = current else {
                return None;
            };
            let parent = *span_id;
            let (id, index) = push_local(ctx, segment, parent, operation)?;
            *span_id = id;
            Some(LocalEntry {
                segment: Arc::as_ptr(segment) as usize,
                id,
                parent,
                index,
            })
        })
        .ok()
        .flatten()
}

/// Records a new local span, child of span `parent` of `segment` (the current segment), in this
/// thread's buffer: its id and where it was put. `None` past the span limit.
#[inline(always)] // on the per-span path: as if written out in both callers
fn push_local(
    ctx: &ThreadContext,
    segment: &ActiveSegment,
    parent: i32,
    operation: Text,
) -> Option<(i32, usize)> {
    let id = segment.allocate_span_id()?;
    // SAFETY: as in `flush_local`.
    let local = unsafe { &mut *ctx.local.get() };
    let index = local.len();
    local.reserve(1);
    // Written where it stays, not built aside and copied in (`push` did: a 136-byte `memcpy`
    // call per span, a fifth of its instructions).
    local.spare_capacity_mut()[0].write(SpanRecord {
        skip_analysis: segment.skip_analysis,
        ..SpanRecord::new(
            id,
            parent,
            SpanKind::Local,
            operation,
            Cow::Borrowed(""),
            Stamp::now(),
        )
    });
    // SAFETY: the slot at `index` was reserved and has just been written.
    unsafe { local.set_len(index + 1) };
    Some((id, index))
}

/// Ends the local span `entry`: its parent becomes current again (if the span still is) and
/// its record gets its end time.
#[inline]
pub(crate) fn end_local(entry: &LocalEntry, panicking: bool) {
    let now = Stamp::now();
    let _ = CONTEXT.try_with(|ctx| {
        // SAFETY: as in `start_local`.
        let current = unsafe { &mut *ctx.current.as_ptr() };
        if let Some(Handle::Recording { segment, span_id }) = current
            && Arc::as_ptr(segment) as usize == entry.segment
            && *span_id == entry.id
        {
            *span_id = entry.parent;
        }
        // The usual case, inline: the record is still on this thread.
        if !panicking
            && with_buffered_record(ctx, entry.segment, entry.id, entry.index, |record| {
                record.close(now)
            })
            .is_some()
        {
            return;
        }
        end_local_slow(ctx, entry, now, panicking);
    });
}

#[cold]
fn end_local_slow(ctx: &ThreadContext, entry: &LocalEntry, now: Stamp, panicking: bool) {
    with_local_record_in(ctx, entry, &mut |record: &mut SpanRecord| {
        record.close(now);
        if panicking {
            record.is_error = true;
            record.logs.push(crate::span::panic_log(now));
        }
    });
}

/// The slot of a span recorded in its segment directly, not in a thread's buffer.
pub(crate) const NOT_BUFFERED: usize = usize::MAX;

/// Starts a local [`Span`] (one that may leave this thread) under the current span. Its record
/// goes to this thread's buffer like a [`crate::LocalSpan`]'s, without a lock; unlike one, it
/// does not become current. `None` when no sampled trace is current or past the span limit.
#[inline]
pub(crate) fn start_buffered(operation: Text) -> Option<Span> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: as in `start_local`.
            let current = unsafe { &*ctx.current.as_ptr() };
            let Some(Handle::Recording { segment, span_id }) = current else {
                return None;
            };
            let (id, slot) = push_local(ctx, segment, *span_id, operation)?;
            Some(Span::buffered(Arc::clone(segment), id, slot))
        })
        .ok()
        .flatten()
}

/// Runs `f` on the record of span `id` of the segment at address `segment` if it is still in
/// this thread's buffer at `slot`; `None` (and `f` not run) if not. The buffer holds the current
/// segment's spans only, and ids are unique within a segment, so a record there with that id
/// under that segment is the one.
#[inline]
fn with_buffered_record<R>(
    ctx: &ThreadContext,
    segment: usize,
    id: i32,
    slot: usize,
    f: impl FnOnce(&mut SpanRecord) -> R,
) -> Option<R> {
    // SAFETY: as in `peek_current`.
    let current = unsafe { &*ctx.current.as_ptr() };
    let Some(Handle::Recording {
        segment: current, ..
    }) = current
    else {
        return None;
    };
    if Arc::as_ptr(current) as usize != segment {
        return None;
    }
    // SAFETY: as in `flush_local`; `f` is our own code and touches neither.
    let local = unsafe { &mut *ctx.local.get() };
    local.get_mut(slot).filter(|record| record.id == id).map(f)
}

/// Runs `f` on the record of span `id` of `segment`: in this thread's buffer if it is there
/// (`slot` is where it was put), else in the segment. A record in neither was recorded on a
/// thread that has not handed it over yet: `f` waits in the segment for it to arrive.
pub(crate) fn with_span_record<F>(segment: &Arc<ActiveSegment>, id: i32, slot: usize, f: F)
where
    F: FnOnce(&mut SpanRecord) + Send + 'static,
{
    if let Some(f) = with_record_on_this_thread(segment, id, slot, f) {
        segment.with_span_or_defer(id, f);
    }
}

/// Runs `f` on the record of span `id` of `segment` just started on this thread (so in this
/// thread's buffer at `slot`, or in the segment): never waits, so `f` need not be `Send`.
pub(crate) fn with_new_span_record(
    segment: &Arc<ActiveSegment>,
    id: i32,
    slot: usize,
    f: impl FnOnce(&mut SpanRecord),
) {
    if let Some(f) = with_record_on_this_thread(segment, id, slot, f) {
        segment.with_span(id, f);
    }
}

/// Runs `f` on span `id`'s record if it is in this thread's buffer at `slot`; else gives `f`
/// back, for the caller to take to the segment.
fn with_record_on_this_thread<F: FnOnce(&mut SpanRecord)>(
    segment: &Arc<ActiveSegment>,
    id: i32,
    slot: usize,
    f: F,
) -> Option<F> {
    if slot == NOT_BUFFERED {
        return Some(f);
    }
    let mut f = Some(f);
    let _ = CONTEXT.try_with(|ctx| {
        with_buffered_record(ctx, Arc::as_ptr(segment) as usize, id, slot, |record| {
            if let Some(f) = f.take() {
                f(record);
            }
        });
    });
    f
}

/// Runs `f` on the record of local span `entry`, wherever it is now: still on this thread, or
/// moved to its segment (if the segment is current here, so known to be alive, and not
/// finished). A span whose record can no longer be reached is left alone.
pub(crate) fn with_local_record(entry: &LocalEntry, f: &mut dyn FnMut(&mut SpanRecord)) {
    let _ = CONTEXT.try_with(|ctx| with_local_record_in(ctx, entry, f));
}

fn with_local_record_in(
    ctx: &ThreadContext,
    entry: &LocalEntry,
    f: &mut dyn FnMut(&mut SpanRecord),
) {
    if with_buffered_record(ctx, entry.segment, entry.id, entry.index, &mut *f).is_some() {
        return;
    }
    // SAFETY: as in `peek_current`.
    if let Some(Handle::Recording { segment, .. }) = unsafe { &*ctx.current.as_ptr() }
        && Arc::as_ptr(segment) as usize == entry.segment
    {
        segment.with_span(entry.id, |record| f(record));
    }
}

/// Runs `f` on the current span's record, whether it lives on this thread (a local span) or in
/// its segment (or is on its way there from the thread that started it).
pub(crate) fn with_current_record(f: impl FnOnce(&mut SpanRecord) + Send + 'static) {
    let _ = CONTEXT.try_with(|ctx| {
        // SAFETY: as in `peek_current` and `flush_local`: `f` is our own code.
        let Some(Handle::Recording { segment, span_id }) = (unsafe { &*ctx.current.as_ptr() })
        else {
            return;
        };
        let local = unsafe { &mut *ctx.local.get() };
        match local.iter_mut().rev().find(|r| r.id == *span_id) {
            Some(record) => f(record),
            None => segment.with_span_or_defer(*span_id, f),
        }
    });
}

/// Moves this thread's local spans to `segment` if they belong to it: before the segment ends.
fn flush_local_of(segment: &ActiveSegment) {
    let _ = CONTEXT.try_with(|ctx| {
        // SAFETY: as in `peek_current`.
        if let Some(Handle::Recording {
            segment: current, ..
        }) = unsafe { &*ctx.current.as_ptr() }
            && std::ptr::eq(Arc::as_ptr(current), segment)
        {
            flush_local(ctx, segment);
        }
    });
}

/// One segment being recorded.
pub(crate) struct ActiveSegment {
    pub(crate) tracer: Arc<TracerInner>,
    /// `None`: a new trace, named after this, its first segment.
    trace_id: Option<TraceId>,
    pub(crate) segment_id: Id,
    /// Set when the trace skips analysis (`sw8-x`): every span of the segment does.
    skip_analysis: bool,
    /// The next span id. Handed out without the lock, so that local spans need none.
    next_span_id: AtomicU32,
    /// Set when a span was refused for the span limit.
    size_limited: AtomicBool,
    state: Mutex<SegmentState>,
}

pub(crate) struct SegmentState {
    /// In the order they reached the segment, which is id order except where local spans
    /// recorded on a thread arrive after spans started later; sorted when the segment ends.
    spans: Vec<SpanRecord>,
    refs: Vec<SegmentRef>,
    /// Changes to spans recorded on a thread that has not handed them over yet.
    pending: Vec<(i32, PendingChange)>,
    finished: bool,
    pub(crate) correlation: Correlation,
}

type PendingChange = Box<dyn FnOnce(&mut SpanRecord) + Send>;

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

impl ActiveSegment {
    pub(crate) fn trace_id(&self) -> &str {
        self.trace_id
            .as_ref()
            .map_or(self.segment_id.as_str(), TraceId::as_str)
    }

    /// Starts a segment and its first span; with no `trace_id`, a new trace.
    pub(crate) fn start(
        tracer: Arc<TracerInner>,
        trace_id: Option<TraceId>,
        first: (SpanKind, Text),
        refs: Vec<SegmentRef>,
        correlation: Correlation,
        skip_analysis: bool,
        init: impl FnOnce(&mut SpanRecord),
    ) -> Span {
        let now = Stamp::now();
        let mut span = SpanRecord::new(0, -1, first.0, first.1, Cow::Borrowed(""), now);
        span.skip_analysis = skip_analysis;
        init(&mut span);
        // Seven records (952 bytes) stay within glibc's per-thread cache of small blocks (up to
        // 1,032 bytes); eight did not, and took the arena's slower path on every request.
        let mut spans = Vec::with_capacity(7);
        spans.push(span);
        let segment_id = new_id_at(now);
        // A new trace is named after its first segment, as unique among traces as that id is
        // among segments (OAP keeps the two apart): one id to make per request, not two.
        let segment = Arc::new(ActiveSegment {
            tracer,
            trace_id,
            segment_id,
            skip_analysis,
            next_span_id: AtomicU32::new(1),
            size_limited: AtomicBool::new(false),
            state: Mutex::new(SegmentState {
                spans,
                refs,
                pending: Vec::new(),
                finished: false,
                correlation,
            }),
        });
        Span::from_handle(Handle::Recording {
            segment,
            span_id: 0,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SegmentState> {
        // A panic while the lock was held cannot leave the state half-written in a way that
        // matters more than losing the trace; never propagate it into the service.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new span id, or `None` past the span limit (the segment is then marked size-limited).
    #[inline]
    fn allocate_span_id(&self) -> Option<i32> {
        let limit = u32::try_from(self.tracer.span_limit).unwrap_or(u32::MAX);
        // Checked before adding, so that the counter stays near the limit and never wraps.
        if self.next_span_id.load(Ordering::Relaxed) < limit {
            let id = self.next_span_id.fetch_add(1, Ordering::Relaxed);
            if id < limit {
                return i32::try_from(id).ok();
            }
        }
        self.size_limited.store(true, Ordering::Relaxed);
        None
    }

    /// Takes the local spans recorded on one thread (dropped if the segment has ended).
    fn absorb(&self, local: &mut Vec<SpanRecord>) {
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
            for (id, change) in std::mem::take(&mut state.pending) {
                match state.spans[first_new..].iter_mut().find(|r| r.id == id) {
                    Some(record) => change(record),
                    None => state.pending.push((id, change)),
                }
            }
        }
    }

    /// Opens a child of `parent`; a no-op span past the span limit or after the segment ended.
    pub(crate) fn start_span(
        self: &Arc<Self>,
        parent: i32,
        kind: SpanKind,
        operation: Text,
        peer: Text,
    ) -> Span {
        let Some(span_id) = self.allocate_span_id() else {
            return Span::noop();
        };
        let mut record = SpanRecord::new(span_id, parent, kind, operation, peer, Stamp::now());
        record.skip_analysis = self.skip_analysis;
        let mut state = self.lock();
        if state.finished {
            return Span::noop();
        }
        state.spans.push(record);
        drop(state);
        Span::from_handle(Handle::Recording {
            segment: Arc::clone(self),
            span_id,
        })
    }

    /// Changes span `span_id` if the segment is still open.
    pub(crate) fn with_span(&self, span_id: i32, f: impl FnOnce(&mut SpanRecord)) {
        if let Some(span) = self.lock().span_mut(span_id) {
            f(span);
        }
    }

    /// Changes span `span_id`; if it has not reached the segment yet (and the segment is still
    /// open), when it does.
    pub(crate) fn with_span_or_defer<F>(&self, span_id: i32, f: F)
    where
        F: FnOnce(&mut SpanRecord) + Send + 'static,
    {
        let mut state = self.lock();
        if let Some(span) = state.span_mut(span_id) {
            f(span);
        } else if !state.finished {
            state.pending.push((span_id, Box::new(f)));
        }
    }

    /// Ends span `span_id`. Ending the first span finishes the segment and reports it.
    pub(crate) fn end_span(&self, span_id: i32) {
        self.end_span_with(span_id, |_| {});
    }

    /// Changes span `span_id` with `f` and ends it, under one lock.
    pub(crate) fn end_span_with(&self, span_id: i32, f: impl FnOnce(&mut SpanRecord)) {
        let now = Stamp::now();
        if span_id == 0 {
            flush_local_of(self);
        }
        let mut state = self.lock();
        if state.finished {
            return;
        }
        let Some(span) = state.span_mut(span_id) else {
            return;
        };
        f(span);
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
            service: self.tracer.service,
            instance: self.tracer.instance,
            spans,
            refs,
            size_limited: self.size_limited.load(Ordering::Relaxed),
        };
        self.tracer.reporter.report(segment);
    }

    /// The endpoint callees see: the first span's operation name.
    fn endpoint(state: &SegmentState) -> Option<String> {
        state.span(0).map(|s| s.operation.to_string())
    }

    /// The `sw8` header for a call made from exit span `span_id`.
    pub(crate) fn inject(&self, span_id: i32, carrier: &mut dyn Injector) -> bool {
        let state = self.lock();
        let Some(span) = state.span(span_id) else {
            return false;
        };
        if span.kind != SpanKind::Exit || span.peer.is_empty() {
            return false;
        }
        let Some(endpoint) = state.span(0).map(|s| &*s.operation) else {
            return false;
        };
        let header = Sw8Parts {
            sampled: true,
            trace_id: self.trace_id(),
            parent_segment_id: self.segment_id.as_str(),
            parent_span_id: span_id,
            parent_service: self.tracer.service,
            parent_service_instance: self.tracer.instance,
            parent_endpoint: endpoint,
            target_address: &span.peer,
        }
        .encode();
        let correlation = (!state.correlation.is_empty()).then(|| state.correlation.encode());
        let extension = Sw8Extension {
            skip_analysis: self.skip_analysis,
            send_time_ms: None,
        };
        drop(state);
        let keys = &self.tracer.keys;
        carrier.set(&keys.sw8, header);
        if let Some(correlation) = correlation {
            carrier.set(&keys.correlation, correlation);
        }
        if !extension.is_empty() {
            carrier.set(&keys.extension, extension.encode());
        }
        true
    }

    pub(crate) fn snapshot(self: &Arc<Self>, span_id: i32) -> Option<ContextSnapshot> {
        let state = self.lock();
        let endpoint = Self::endpoint(&state)?;
        Some(ContextSnapshot {
            inner: SnapshotInner::Recording {
                tracer: Arc::clone(&self.tracer),
                trace_id: self
                    .trace_id
                    .clone()
                    .unwrap_or_else(|| TraceId::Inline(self.segment_id.clone())),
                segment_id: self.segment_id.clone(),
                span_id,
                endpoint,
                correlation: state.correlation.clone(),
                skip_analysis: self.skip_analysis,
            },
        })
    }
}

/// A trace that this process does not record (not sampled, ignored, or the backend is down).
pub(crate) struct UnsampledContext {
    pub(crate) tracer: Arc<TracerInner>,
    /// The caller's trace id, or one made the first time the trace is propagated.
    pub(crate) trace_id: OnceLock<String>,
    pub(crate) endpoint: Text,
}

impl UnsampledContext {
    pub(crate) fn new(tracer: Arc<TracerInner>, trace_id: Option<String>, endpoint: Text) -> Self {
        let cell = OnceLock::new();
        if let Some(id) = trace_id {
            let _ = cell.set(id);
        }
        UnsampledContext {
            tracer,
            trace_id: cell,
            endpoint,
        }
    }

    /// Propagates with sample flag 0: the callee may record the trace, under the same id.
    pub(crate) fn inject(&self, peer: &str, carrier: &mut dyn Injector) -> bool {
        if peer.is_empty() || self.endpoint.is_empty() {
            return false;
        }
        let header = Sw8Header {
            sampled: false,
            trace_id: self
                .trace_id
                .get_or_init(|| new_id().as_str().to_owned())
                .clone(),
            parent_segment_id: new_id().as_str().to_owned(),
            parent_span_id: 0,
            parent_service: self.tracer.service.to_string(),
            parent_service_instance: self.tracer.instance.to_string(),
            parent_endpoint: self.endpoint.to_string(),
            target_address: peer.to_owned(),
        };
        carrier.set(&self.tracer.keys.sw8, header.encode());
        true
    }
}

/// The current context, captured to continue the trace in another task or thread.
///
/// ```
/// use skytrace::{Instrument, Span};
///
/// # async fn demo() {
/// // Inside a traced request:
/// let snapshot = skytrace::snapshot();
/// tokio::spawn(async move {
///     let span = snapshot.map_or_else(Span::noop, |s| s.continue_span("background-job"));
///     async { /* work */ }.in_span(span).await;
/// });
/// # }
/// ```
#[derive(Clone)]
pub struct ContextSnapshot {
    inner: SnapshotInner,
}

// The ids are inline (~170 bytes): boxing them would cost an allocation per snapshot to save
// bytes in a value that lives as long as a spawn.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum SnapshotInner {
    Recording {
        tracer: Arc<TracerInner>,
        trace_id: TraceId,
        segment_id: Id,
        span_id: i32,
        endpoint: String,
        correlation: Correlation,
        skip_analysis: bool,
    },
    Unsampled(Arc<UnsampledContext>),
}

impl ContextSnapshot {
    /// Starts a new segment of the same trace whose first span is a local span named
    /// `operation_name`, with a `CrossThread` reference to the span the snapshot was taken in.
    pub fn continue_span(&self, operation_name: impl Into<Cow<'static, str>>) -> Span {
        match &self.inner {
            SnapshotInner::Recording {
                tracer,
                trace_id,
                segment_id,
                span_id,
                endpoint,
                correlation,
                skip_analysis,
            } => {
                let reference = SegmentRef {
                    kind: RefKind::CrossThread,
                    trace_id: trace_id.as_str().to_owned(),
                    parent_segment_id: segment_id.as_str().to_owned(),
                    parent_span_id: *span_id,
                    parent_service: tracer.service.to_string(),
                    parent_service_instance: tracer.instance.to_string(),
                    parent_endpoint: endpoint.clone(),
                    network_address: String::new(),
                };
                ActiveSegment::start(
                    Arc::clone(tracer),
                    Some(trace_id.clone()),
                    (SpanKind::Local, operation_name.into()),
                    vec![reference],
                    correlation.clone(),
                    *skip_analysis,
                    |_| {},
                )
            }
            SnapshotInner::Unsampled(context) => Span::from_handle(Handle::Unsampled {
                context: Arc::clone(context),
                peer: None,
            }),
        }
    }

    /// The trace id the snapshot belongs to (`None` for a trace that is not sampled).
    pub fn trace_id(&self) -> Option<&str> {
        match &self.inner {
            SnapshotInner::Recording { trace_id, .. } => Some(trace_id.as_str()),
            SnapshotInner::Unsampled(c) => c.trace_id.get().map(String::as_str),
        }
    }
}

impl std::fmt::Debug for ContextSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextSnapshot")
            .field("trace_id", &self.trace_id())
            .finish()
    }
}

/// Captures the current context, if a trace is active on this task.
pub fn snapshot() -> Option<ContextSnapshot> {
    with_current(|cur| match cur {
        Handle::Recording { segment, span_id } => segment.snapshot(*span_id),
        Handle::Unsampled { context, .. } => Some(ContextSnapshot {
            inner: SnapshotInner::Unsampled(Arc::clone(context)),
        }),
    })
    .flatten()
}

/// Writes `sw8` (and `sw8-correlation`, `sw8-x` when there is something to carry) for the
/// current exit span onto `carrier`. Returns `false`, writing nothing, when no exit span is
/// current.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// // Outside any trace there is nothing to inject.
/// assert!(!skytrace::inject(&mut headers));
/// ```
pub fn inject(carrier: &mut (impl Injector + ?Sized)) -> bool {
    let mut carrier = carrier;
    with_current(|handle| inject_handle(handle, &mut carrier)).unwrap_or(false)
}

pub(crate) fn inject_handle(handle: &Handle, carrier: &mut dyn Injector) -> bool {
    match handle {
        Handle::Recording { segment, span_id } => segment.inject(*span_id, carrier),
        Handle::Unsampled {
            context,
            peer: Some(peer),
        } => context.inject(peer, carrier),
        Handle::Unsampled { peer: None, .. } => false,
    }
}

/// The id of the trace being recorded on this task, for logs.
///
/// ```
/// assert_eq!(skytrace::current_trace_id(), None);
/// ```
pub fn current_trace_id() -> Option<String> {
    with_current(|cur| match cur {
        Handle::Recording { segment, .. } => Some(segment.trace_id().to_owned()),
        Handle::Unsampled { context, .. } => context.trace_id.get().cloned(),
    })
    .flatten()
}

/// Reads a correlation (baggage) value of the current trace.
pub fn get_correlation(key: &str) -> Option<String> {
    with_current(|cur| match cur {
        Handle::Recording { segment, .. } => segment.lock().correlation.get(key).map(str::to_owned),
        Handle::Unsampled { .. } => None,
    })
    .flatten()
}

/// Sets a correlation (baggage) value on the current trace; it travels to every later exit span
/// and continued task. Returns `false` when no trace is recorded or the limits reject it.
pub fn put_correlation(key: impl Into<String>, value: impl Into<String>) -> bool {
    with_current(|cur| match cur {
        Handle::Recording { segment, .. } => segment.lock().correlation.put(key, value),
        Handle::Unsampled { .. } => false,
    })
    .unwrap_or(false)
}
