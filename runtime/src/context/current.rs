//! The thread's current span and its buffer of local span records: the only `unsafe` code of
//! the crate.
//!
//! Which span is current is a thread-local [`Handle`], set while a span is entered (a guard in
//! sync code, around every poll for a future). Local spans are recorded without touching their
//! segment: their records go to a per-thread buffer that moves to the segment, under one lock,
//! whenever the current handle is replaced and before the segment ends. A local span also
//! becomes current by switching the current handle's span id in place, as does any span
//! entered while its own segment is current: no lock and no reference count per span.
//!
//! Both live in cells read through raw pointers, for speed: a `RefCell`'s borrow flag would be
//! checked and written on every span. What makes that sound is this module's API: no function
//! takes a closure or calls anything that could reach back into this module, so while a
//! reference into the thread-local is alive nothing can read or write it another way. What
//! runs under such a reference is this crate's own code on its own types: a segment's lock,
//! pushing a record, applying an [`Edit`] (data, not code). Every conversion a user wrote
//! (`Into<Cow<str>>`, `Display`, an `Injector`) has run before these functions are called, and
//! handles (whose last drop could run a user's `Reporter::drop`) are returned to the caller to
//! drop, never dropped here while a reference is held.

use std::cell::{Cell, UnsafeCell};
#[cfg(feature = "profiling")]
use std::mem::{MaybeUninit, offset_of};
use std::sync::Arc;

use super::handle::{Handle, HandleId};
use super::recording::ActiveSegment;
use super::unsampled::UnsampledContext;
use crate::edit::Edit;
use crate::segment::{SpanKind, SpanRecord, Text};
use crate::time::Stamp;

/// A thread's tracing state.
struct ThreadContext {
    /// The current span, if any.
    current: Cell<Option<Handle>>,
    /// Local spans recorded since the last flush. They all belong to `current`'s segment:
    /// `current` changes segment only through [`install`], which flushes first.
    local: UnsafeCell<Vec<SpanRecord>>,
    /// What made `current` current: a future's poll (which puts back what it found before it
    /// returns), or a guard of a tokio task (`None` outside one). A task that finds another
    /// task's guard's span current was left it by a guard held across an `.await` (or leaked).
    owner: Cell<Owner>,
}

thread_local! {
    static CONTEXT: ThreadContext = const {
        ThreadContext {
            current: Cell::new(None),
            local: UnsafeCell::new(Vec::new()),
            owner: Cell::new(Owner::Guard(None)),
        }
    };
    /// Mirrors `current.is_some()`. A thread-local without a destructor is a plain load, while
    /// reaching `CONTEXT` (which owns `Arc`s, so has one) first checks its registration: outside
    /// any trace, looking here is all a span costs.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// What made the current span current (see `ThreadContext::owner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A future's poll: it cannot be suspended with the span current.
    Poll,
    /// A guard, made in this tokio task (`None`: outside any), which may be held across an
    /// `.await`.
    Guard(Option<tokio::task::Id>),
}

impl Owner {
    /// The owner a guard made now has.
    #[inline]
    pub(crate) fn guard() -> Owner {
        Owner::Guard(tokio::task::try_id())
    }
}

impl ThreadContext {
    /// Whether the current span was left here by another task's guard: spans started in the
    /// running task must not join it. A guard made outside any task (a plain thread) owns the
    /// thread's spans, tasks polled under it included (`block_on` inside a guard); asking
    /// which task runs is only paid when a task's guard is current.
    #[inline(always)]
    fn foreign_guard(&self) -> bool {
        match self.owner.get() {
            Owner::Guard(Some(task)) => tokio::task::try_id() != Some(task),
            Owner::Guard(None) | Owner::Poll => false,
        }
    }

    /// The current handle, borrowed.
    ///
    /// # Safety
    /// No other reference into `current` may be alive, nor created while this one is: the
    /// caller runs none of this module's other accessors and no code that could (see the
    /// module's docs) until it drops the reference.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)] // the point of the cell: the contract above is the borrow check
    unsafe fn current(&self) -> &mut Option<Handle> {
        // SAFETY: the cell belongs to this thread; the caller guarantees exclusivity.
        unsafe { &mut *self.current.as_ptr() }
    }

    /// This thread's buffer of local span records.
    ///
    /// # Safety
    /// As for [`ThreadContext::current`], for the buffer.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)] // as for `current`
    unsafe fn local(&self) -> &mut Vec<SpanRecord> {
        // SAFETY: the buffer belongs to this thread; the caller guarantees exclusivity.
        unsafe { &mut *self.local.get() }
    }
}

/// What is current on this thread, without touching it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Current {
    None,
    Recording,
    Unsampled,
}

/// What is current on this thread.
#[inline]
pub(crate) fn current() -> Current {
    if !ACTIVE.with(Cell::get) {
        return Current::None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: only read here, and nothing else runs while the reference lives.
            match unsafe { ctx.current() } {
                None => Current::None,
                Some(Handle::Recording { .. }) => Current::Recording,
                Some(Handle::Unsampled { .. }) => Current::Unsampled,
            }
        })
        .unwrap_or(Current::None)
}

/// What is current on this thread for a new entry span: as [`current`], except that a span
/// made current by another tokio task counts as nothing. That span was left here by a guard
/// held across an `.await` (or leaked) in that task; a request starting in this task is not
/// part of its trace. Said once, the first time it is seen.
pub(crate) fn current_for_entry() -> Current {
    let found = current();
    if found == Current::None {
        return found;
    }
    let foreign = CONTEXT
        .try_with(|ctx| match ctx.owner.get() {
            Owner::Poll => false,
            // Entries are stricter than local spans: one made in a task under a plain thread's
            // guard starts its own trace too.
            Owner::Guard(task) => task != tokio::task::try_id(),
        })
        .unwrap_or(false);
    if !foreign {
        return found;
    }
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "skytrace: a span guard was held across an `.await` (or leaked), so another task's \
             span was still current when a request started; the request starts a trace of its \
             own. Use `future.in_span(span)` for async code instead of holding `span.enter()` \
             or `span.entered()` across an `.await`. (Said once.)"
        );
    }
    Current::None
}

/// Whether an entry span starting here joins the recording span current here as its local
/// child (see `ActiveSegment::adopt_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Adoption {
    /// It joins.
    Adopted,
    /// The segment adopted too many: the entry starts a trace of its own.
    TooMany,
    /// What was current belongs to a segment that has ended, left here by a leaked guard: it
    /// was released, and the entry starts a trace of its own.
    Released,
}

/// Whether the recording span current here may adopt one more entry span. A segment that has
/// ended adopts nothing: its handle, left current by a leaked guard, is released from the
/// thread, so that a leak costs no later request (nor local span) on this thread.
pub(crate) fn adopt_entry() -> Adoption {
    if !ACTIVE.with(Cell::get) {
        return Adoption::TooMany;
    }
    let adoption = CONTEXT
        .try_with(|ctx| {
            // SAFETY: only read; `is_finished` takes the segment's lock and `adopt_entry` adds
            // to an atomic counter, nothing more.
            match unsafe { ctx.current() } {
                Some(Handle::Recording { segment, .. }) if segment.is_finished() => {
                    Adoption::Released
                }
                Some(Handle::Recording { segment, .. }) if segment.adopt_entry() => {
                    Adoption::Adopted
                }
                _ => Adoption::TooMany,
            }
        })
        .unwrap_or(Adoption::TooMany);
    if adoption == Adoption::Released {
        // Dropped here, outside the thread-local.
        drop(install(None, Owner::Guard(None)).0);
    }
    adoption
}

/// A counted copy of the current handle: for work that then runs user code (an `Injector`, a
/// snapshot taken to another task).
pub(crate) fn clone_current() -> Option<Handle> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: only cloned (reference counts), nothing else runs.
            unsafe { ctx.current() }.clone()
        })
        .ok()
        .flatten()
}

/// What was current before a span was entered, for its guard to put back.
pub(crate) struct Saved {
    handle: Option<Handle>,
    owner: Owner,
}

/// Makes `handle` current for `owner` (a guard, or a poll); returns what was current before.
#[inline]
pub(crate) fn enter(handle: Handle, owner: Owner) -> Saved {
    let (handle, owner) = install(Some(handle), owner);
    Saved { handle, owner }
}

/// Puts back what [`enter`] replaced; returns the handle that was current (for the caller to
/// drop or keep: never dropped here).
#[inline]
pub(crate) fn restore(saved: Saved) -> Option<Handle> {
    install(saved.handle, saved.owner).0
}

/// Makes `handle` current (for `owner`), returning what was current before. The local spans
/// recorded under the previous handle move to its segment first.
#[inline]
fn install(handle: Option<Handle>, owner: Owner) -> (Option<Handle>, Owner) {
    let active = handle.is_some();
    let previous = CONTEXT
        .try_with(|ctx| {
            let owner = ctx.owner.replace(owner);
            let previous = ctx.current.replace(handle);
            if let Some(Handle::Recording { segment, .. }) = &previous {
                // SAFETY: `current` is not borrowed (replaced by value above); `absorb` takes
                // the segment's lock and moves records, nothing more.
                let local = unsafe { ctx.local() };
                if !local.is_empty() {
                    segment.absorb(local);
                }
            }
            (previous, owner)
        })
        .unwrap_or((None, Owner::Guard(None)));
    ACTIVE.with(|a| a.set(active));
    previous
}

/// Puts `saved` back as current and returns the handle that was current, if it is the one
/// `id` names: how a guard that lent its handle to the thread takes it back. A handle of the
/// same segment pointing at another span was left so by a leaked [`crate::LocalSpan`]: it is
/// taken back as the lent span. Anything else found there was left by a leaked guard: it is
/// released, and the lent handle, held by that guard, is lost with it — a lost span, never
/// unsound memory.
pub(crate) fn take_back(saved: Saved, id: HandleId) -> Option<Handle> {
    let mut handle = restore(saved)?;
    if handle.id().context() != id.context() {
        return None;
    }
    if let (Handle::Recording { span_id, .. }, HandleId::Span { span_id: lent, .. }) =
        (&mut handle, id)
    {
        *span_id = lent;
    }
    (handle.id() == id).then_some(handle)
}

/// What [`switch_in_place`] changed, for [`switch_back`] to undo.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Switched {
    /// The segment's address (only compared: no reference is held).
    segment: usize,
    previous: i32,
    owner: Owner,
}

/// Makes span `id` of `segment` current (for `owner`) by switching the span id of the current
/// handle in place, when that handle already records in `segment` (a child entered inside its
/// parent, a child future polled inside its parent's poll): no reference count, no flush.
/// Returns what to switch back to, or `None` when the current handle is another trace's (or
/// none) and the caller must replace it.
#[inline]
pub(crate) fn switch_in_place(
    segment: &Arc<ActiveSegment>,
    id: i32,
    owner: Owner,
) -> Option<Switched> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: nothing else runs while the reference lives.
            match unsafe { ctx.current() } {
                Some(Handle::Recording {
                    segment: current,
                    span_id,
                }) if Arc::ptr_eq(current, segment) => Some(Switched {
                    segment: Arc::as_ptr(segment) as usize,
                    previous: std::mem::replace(span_id, id),
                    owner: ctx.owner.replace(owner),
                }),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Undoes [`switch_in_place`]: the span it replaced is current again, if that segment is still
/// current here (a leaked guard may have replaced it: then nothing).
#[inline]
pub(crate) fn switch_back(switched: Switched) {
    let _ = CONTEXT.try_with(|ctx| {
        if let Some(Handle::Recording {
            segment: current,
            span_id,
        }) =
            // SAFETY: nothing else runs while the reference lives.
            unsafe { ctx.current() }
            && Arc::as_ptr(current) as usize == switched.segment
        {
            *span_id = switched.previous;
            ctx.owner.set(switched.owner);
        }
    });
}

/// What a child span started under the current span is.
pub(crate) enum Child {
    Recording {
        segment: Arc<ActiveSegment>,
        span_id: i32,
    },
    /// The trace is not sampled: the context to propagate, and the peer given back.
    Unsampled(Arc<UnsampledContext>, Text),
}

/// Starts a child of the current span recorded in its segment (an exit span): `None` when no
/// trace is current or past the span limit. In a trace that is not sampled, the context to
/// propagate.
pub(crate) fn start_child(kind: SpanKind, operation: Text, peer: Text) -> Option<Child> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            if ctx.foreign_guard() {
                return None;
            }
            // SAFETY: `start_span` locks the segment and pushes a record, nothing more;
            // `operation` and `peer` are plain strings, dropped there at most.
            match unsafe { ctx.current() } {
                Some(Handle::Recording { segment, span_id }) => segment
                    .start_span(*span_id, kind, operation, peer)
                    .map(|span_id| Child::Recording {
                        segment: Arc::clone(segment),
                        span_id,
                    }),
                Some(Handle::Unsampled { context, .. }) => {
                    Some(Child::Unsampled(Arc::clone(context), peer))
                }
                None => None,
            }
        })
        .ok()
        .flatten()
}

/// What a [`crate::LocalSpan`] keeps to end: which segment (by address only, to compare — it
/// holds no reference), its id and parent, and where its record was put in the buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenLocalSpan {
    segment: usize,
    id: i32,
    parent: i32,
    index: usize,
}

/// Starts a local span under the current span, records it on this thread and makes it current:
/// no lock, no reference count, one atomic add for the id. `None` when no sampled trace is
/// current or past the span limit.
#[inline]
pub(crate) fn start_local(operation: Text) -> Option<OpenLocalSpan> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: the two references are to different cells; nothing else runs while they
            // live (dropping `operation` frees a `String` at most).
            let (current, local) = unsafe { (ctx.current(), ctx.local()) };
            let Some(Handle::Recording { segment, span_id }) = current else {
                return None;
            };
            if ctx.foreign_guard() {
                return None;
            }
            let parent = *span_id;
            let id = segment.allocate_span_id()?;
            let index = push_new(local, segment, id, parent, SpanKind::Local, operation);
            *span_id = id;
            Some(OpenLocalSpan {
                segment: Arc::as_ptr(segment) as usize,
                id,
                parent,
                index,
            })
        })
        .ok()
        .flatten()
}

/// Records a new span in `local`, written where it stays; returns where.
#[inline(always)] // on the per-span path: as if written out in both callers
fn push_new(
    local: &mut Vec<SpanRecord>,
    segment: &ActiveSegment,
    id: i32,
    parent: i32,
    kind: SpanKind,
    operation: Text,
) -> usize {
    let index = local.len();
    local.reserve(1);
    // Written where it stays, not built aside and copied in (`push` did: a 136-byte `memcpy`
    // call per span, a fifth of its instructions).
    local.spare_capacity_mut()[0].write(SpanRecord {
        skip_analysis: segment.skip_analysis,
        ..SpanRecord::new(
            id,
            parent,
            kind,
            operation,
            Text::Borrowed(""),
            Stamp::now(),
        )
    });
    // SAFETY: the slot at `index` was reserved and has just been written.
    unsafe { local.set_len(index + 1) };
    index
}

/// Ends the local span `span`: its parent becomes current again (if the span still is) and
/// its record gets its end time.
#[inline]
pub(crate) fn end_local(span: &OpenLocalSpan) {
    let now = Stamp::now();
    let _ = CONTEXT.try_with(|ctx| {
        restore_parent(ctx, span);
        // The usual case, inline: the record is still on this thread.
        // SAFETY: the record is only closed (our code), and nothing else touches the context.
        match unsafe { buffered_record(ctx, span.segment, span.id, span.index) } {
            Some(record) => record.close(now),
            None => edit_local_in(ctx, span, Edit::End(now)),
        }
    });
}

/// [`end_local`] for a span dropped by a panic: marked failed with `failed` first.
#[cold]
pub(crate) fn end_local_failed(span: &OpenLocalSpan, failed: Edit) {
    let now = Stamp::now();
    let _ = CONTEXT.try_with(|ctx| {
        restore_parent(ctx, span);
        edit_local_in(ctx, span, failed);
        edit_local_in(ctx, span, Edit::End(now));
    });
}

/// Makes `span`'s parent current again, if `span` still is.
#[inline(always)]
fn restore_parent(ctx: &ThreadContext, span: &OpenLocalSpan) {
    // SAFETY: nothing else runs while the reference lives (it ends with this function).
    let current = unsafe { ctx.current() };
    if let Some(Handle::Recording { segment, span_id }) = current
        && Arc::as_ptr(segment) as usize == span.segment
        && *span_id == span.id
    {
        *span_id = span.parent;
    }
}

/// Starts a local span that may leave this thread (a [`crate::Span`]) under the current span.
/// Its record goes to this thread's buffer like a [`crate::LocalSpan`]'s, without a lock;
/// unlike one, it does not become current. Returns its segment, id and place in the buffer;
/// `None` when no sampled trace is current or past the span limit.
#[inline]
pub(crate) fn start_buffered(operation: Text) -> Option<(Arc<ActiveSegment>, i32, usize)> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: as in `start_local`.
            let (current, local) = unsafe { (ctx.current(), ctx.local()) };
            let Some(Handle::Recording { segment, span_id }) = current else {
                return None;
            };
            if ctx.foreign_guard() {
                return None;
            }
            let id = segment.allocate_span_id()?;
            let index = push_new(local, segment, id, *span_id, SpanKind::Local, operation);
            Some((Arc::clone(segment), id, index))
        })
        .ok()
        .flatten()
}

/// Like [`start_buffered`], with a record the caller has prepared (an entry inside a trace,
/// with its layer and tags already set): it gets its id and parent here.
pub(crate) fn start_buffered_record(
    mut record: SpanRecord,
) -> Option<(Arc<ActiveSegment>, i32, usize)> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(move |ctx| {
            // SAFETY: as in `start_local`.
            let (current, local) = unsafe { (ctx.current(), ctx.local()) };
            let Some(Handle::Recording { segment, span_id }) = current else {
                return None;
            };
            record.id = segment.allocate_span_id()?;
            record.parent = *span_id;
            record.skip_analysis |= segment.skip_analysis;
            let id = record.id;
            let index = local.len();
            local.push(record);
            Some((Arc::clone(segment), id, index))
        })
        .ok()
        .flatten()
}

/// Applies `edit` to span `id` of `segment` if its record is in this thread's buffer at
/// `index`; else gives the edit back, for the caller to take to the segment.
#[inline]
pub(crate) fn edit_buffered(
    segment: &Arc<ActiveSegment>,
    id: i32,
    index: usize,
    edit: Edit,
) -> Result<(), Edit> {
    let segment = Arc::as_ptr(segment) as usize;
    // During the thread's teardown (the context gone) the edit is dropped: the record it was
    // for, if still buffered here, is gone with the context.
    CONTEXT
        .try_with(move |ctx| edit_buffered_in(ctx, segment, id, index, edit))
        .unwrap_or(Ok(()))
}

/// The record of span `id` of the segment at `segment` if it is in this thread's buffer at
/// `index`. The buffer holds the current segment's spans only, and ids are unique within a
/// segment, so a record there with that id under that segment is the one.
///
/// # Safety
/// The reference borrows the buffer: the caller uses it at once, makes no other access to the
/// thread's context while it lives, and runs nothing but this crate's code on the record.
#[inline(always)]
#[allow(clippy::mut_from_ref)] // the contract above is the borrow check
unsafe fn buffered_record(
    ctx: &ThreadContext,
    segment: usize,
    id: i32,
    index: usize,
) -> Option<&mut SpanRecord> {
    // SAFETY: only read, and the reference ends before `local`'s is made.
    let current = unsafe { ctx.current() };
    let Some(Handle::Recording {
        segment: current, ..
    }) = current
    else {
        return None;
    };
    if Arc::as_ptr(current) as usize != segment {
        return None;
    }
    // SAFETY: the caller keeps the contract above for as long as this reference lives.
    let local = unsafe { ctx.local() };
    local.get_mut(index).filter(|record| record.id == id)
}

/// [`edit_buffered`] on the context in hand.
#[inline]
fn edit_buffered_in(
    ctx: &ThreadContext,
    segment: usize,
    id: i32,
    index: usize,
    edit: Edit,
) -> Result<(), Edit> {
    // SAFETY: only `Edit::apply` (data) runs on the record, and nothing else touches the context.
    match unsafe { buffered_record(ctx, segment, id, index) } {
        Some(record) => {
            edit.apply(record);
            Ok(())
        }
        None => Err(edit),
    }
}

/// Ends span `id` of `segment` at `now` if its record is in this thread's buffer at `index`;
/// `false` if it is not (the caller then ends it in the segment).
#[inline]
pub(crate) fn close_buffered(
    segment: &Arc<ActiveSegment>,
    id: i32,
    index: usize,
    now: Stamp,
) -> bool {
    CONTEXT
        .try_with(|ctx| {
            let segment = Arc::as_ptr(segment) as usize;
            // SAFETY: the record is only closed (our code), and nothing else touches the context.
            match unsafe { buffered_record(ctx, segment, id, index) } {
                Some(record) => {
                    record.close(now);
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false)
}

/// Applies `edit` to the record of local span `span`, wherever it is now: still on this
/// thread, or moved to its segment (if the segment is current here, so known to be alive, and
/// not finished). A span whose record can no longer be reached is left alone.
pub(crate) fn edit_local(span: &OpenLocalSpan, edit: Edit) {
    let _ = CONTEXT.try_with(|ctx| edit_local_in(ctx, span, edit));
}

fn edit_local_in(ctx: &ThreadContext, span: &OpenLocalSpan, edit: Edit) {
    let Err(edit) = edit_buffered_in(ctx, span.segment, span.id, span.index, edit) else {
        return;
    };
    // SAFETY: nothing else runs while the reference lives: `edit` locks the segment and
    // applies data.
    if let Some(Handle::Recording { segment, .. }) = unsafe { ctx.current() }
        && Arc::as_ptr(segment) as usize == span.segment
    {
        let _ = segment.edit(span.id, edit);
    }
}

/// Applies `edit` to the current span's record, whether it lives on this thread (a local span)
/// or in its segment (or is on its way there from the thread that started it).
pub(crate) fn edit_current(edit: Edit) {
    let _ = CONTEXT.try_with(|ctx| {
        // SAFETY: as in `edit_buffered_in`; `edit_or_defer` locks the segment and stores data.
        let (current, local) = unsafe { (ctx.current(), ctx.local()) };
        let Some(Handle::Recording { segment, span_id }) = current else {
            return;
        };
        match local.iter_mut().rev().find(|r| r.id == *span_id) {
            Some(record) => edit.apply(record),
            None => segment.edit_or_defer(*span_id, edit),
        }
    });
}

/// Moves this thread's local spans to `segment` if they belong to it: before the segment ends.
pub(crate) fn flush_if_current(segment: &ActiveSegment) {
    let _ = CONTEXT.try_with(|ctx| {
        // SAFETY: as in `install`; `absorb` locks the segment and moves records.
        let (current, local) = unsafe { (ctx.current(), ctx.local()) };
        if let Some(Handle::Recording {
            segment: current, ..
        }) = current
            && std::ptr::eq(Arc::as_ptr(current), segment)
            && !local.is_empty()
        {
            segment.absorb(local);
        }
    });
}

/// What a profiler's signal handler that interrupted this thread learns of the span running on
/// it: where the current segment's id lies (see `Id::RAW`), and the current span's id.
#[cfg(feature = "profiling")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignalView {
    /// The address of the current segment's `segment_id`: to be copied through the kernel,
    /// never read here.
    pub(crate) segment_id_at: usize,
    pub(crate) span_id: i32,
}

/// [`SignalView`] of this thread, for a signal handler running on it: `None` outside a
/// recorded segment. Added beside the span paths, which it does not change: reading what they
/// leave costs them nothing.
///
/// The handler may have interrupted this module anywhere, halfway through `install`
/// replacing the current handle (several stores) included. So nothing here trusts what it
/// reads: the handle is copied as bytes (a volatile read, nothing dropped, no reference to the
/// cell kept), and of a recording handle only the address of its segment's id is computed,
/// never dereferenced. Untorn, that address is a live segment's (the cell holds a count of
/// it, and no other thread can change this thread's cell); torn, the kernel's copy of it
/// fails or yields bytes that name no segment the profile keeps (they are checked, and only
/// ids of finished segments of the task's endpoint are labelled).
///
/// Async-signal-safe: `ACTIVE` is a thread-local without a destructor (a plain load); `CONTEXT`
/// has one, and its first access on a thread registers it (which may allocate), but `ACTIVE`
/// is only ever set after `install` has accessed `CONTEXT`, so here `try_with` finds it
/// registered (or destroyed, in the thread's teardown: then `None`).
#[cfg(feature = "profiling")]
pub(crate) fn view_for_signal() -> Option<SignalView> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CONTEXT
        .try_with(|ctx| {
            // SAFETY: the cell is this thread's and lives while `ctx` does; the read copies
            // its bytes without creating a reference, so the `&mut` the interrupted code may
            // hold is not aliased by one, and `MaybeUninit` keeps the copy from being dropped.
            let copy = unsafe {
                std::ptr::read_volatile(ctx.current.as_ptr().cast::<MaybeUninit<Option<Handle>>>())
            };
            // SAFETY: the bytes are those of an `Option<Handle>`, or, torn mid-`install`, a
            // mix of two valid ones word by word: a valid discriminant and words that are
            // only compared and added to here, never dereferenced (the `Arc` is not touched;
            // `Arc::as_ptr` is an address computation). The copy is never dropped.
            match unsafe { copy.assume_init_ref() } {
                Some(Handle::Recording { segment, span_id }) => Some(SignalView {
                    segment_id_at: (Arc::as_ptr(segment) as usize)
                        .wrapping_add(offset_of!(ActiveSegment, segment_id)),
                    span_id: *span_id,
                }),
                _ => None,
            }
        })
        .ok()
        .flatten()
}
