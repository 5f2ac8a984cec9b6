//! [`Span`]: the handle instrumentation holds while a piece of work runs, and the guards that
//! make it current ([`Entered`], [`EnteredSpan`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::context::current::Saved;
use crate::context::{self, EntryName, Handle, HandleId, RecordAt, Started, current};
use crate::edit::{Edit, error_log, fields_log, panic_log};
use crate::propagation::{Extractor, Injector};
use crate::segment::{SpanKind, SpanLayer, SpanRecord, Text};
use crate::time::Stamp;

/// A span of the current trace. It ends when dropped (or at [`Span::end`]); ending a segment's
/// first span hands the segment to the reporter.
///
/// A span outside any trace, beyond the span limit, or in a trace that is not sampled is a
/// no-op: creating, entering and dropping it allocates nothing and reads no clock.
///
/// ```
/// use skytrace::{Span, SpanLayer};
///
/// fn load_user(id: u64) -> Option<String> {
///     let span = Span::local("load_user");
///     let _entered = span.enter();
///     span.set_layer(SpanLayer::Database);
///     if span.is_recording() {
///         span.add_tag("db.statement", format!("SELECT * FROM users WHERE id = {id}"));
///     }
///     None
/// }
/// assert_eq!(load_user(7), None); // no trace is active: nothing was recorded
/// ```
#[must_use = "a span ends as soon as it is dropped"]
pub struct Span {
    handle: Option<Handle>,
    /// Where the record is, for a recording span.
    at: RecordAt,
}

impl Span {
    pub(crate) fn from_started(started: Option<Started>) -> Span {
        match started {
            Some(Started { handle, at }) => Span {
                handle: Some(handle),
                at,
            },
            None => Span::noop(),
        }
    }

    pub(crate) fn from_handle(handle: Handle) -> Span {
        Span {
            handle: Some(handle),
            at: RecordAt::Segment,
        }
    }

    /// A span that records nothing.
    pub const fn noop() -> Span {
        Span {
            handle: None,
            at: RecordAt::Segment,
        }
    }

    /// A local span, child of the current span. No-op when no trace is active.
    #[inline]
    pub fn local(operation_name: impl Into<Cow<'static, str>>) -> Span {
        // Converted before looking at the current span: an `Into` impl is user code, and for
        // `&'static str` the conversion is free. Recorded on this thread without a lock, like a
        // `LocalSpan`.
        match current::start_buffered(operation_name.into()) {
            Some((segment, span_id, index)) => Span {
                handle: Some(Handle::Recording { segment, span_id }),
                at: RecordAt::Buffered(index),
            },
            None => Span::noop(),
        }
    }

    /// An exit span for a call to `peer` (the `host:port` dialled), child of the current span.
    /// While it is entered, [`crate::inject`] writes the headers the callee continues from.
    /// No-op when no trace is active.
    pub fn exit(
        operation_name: impl Into<Cow<'static, str>>,
        peer: impl Into<Cow<'static, str>>,
    ) -> Span {
        // Converted before looking at the current span (user code, see `local`).
        let (operation_name, peer) = (operation_name.into(), peer.into());
        match current::start_child(SpanKind::Exit, operation_name, peer) {
            Some(current::Child::Recording { segment, span_id }) => {
                Span::from_handle(Handle::Recording { segment, span_id })
            }
            Some(current::Child::Unsampled(context, peer)) => {
                Span::from_handle(Handle::Unsampled {
                    context,
                    peer: Some(peer),
                })
            }
            None => Span::noop(),
        }
    }

    /// An entry span: where a request enters this service. It continues the caller's trace from
    /// the `sw8` header in `carrier` (a malformed one is ignored), or starts a new trace, through
    /// the global tracer installed by [`crate::init`]. Inside an active trace it is a local child
    /// span instead, so a handler under a tracing middleware does not count the request twice.
    pub fn entry(
        operation_name: impl Into<Cow<'static, str>>,
        carrier: &(impl Extractor + ?Sized),
    ) -> Span {
        Self::entry_with(Text::from(operation_name.into()).into(), carrier, |_| {})
    }

    /// [`Span::entry`], with `init` applied to the span's record as it is made (only if it
    /// records): how an integration sets layer, component and tags without a lock afterwards.
    #[inline]
    pub(crate) fn entry_with(
        name: EntryName<'_>,
        carrier: &(impl Extractor + ?Sized),
        init: impl FnOnce(&mut SpanRecord),
    ) -> Span {
        Span::from_started(context::entry(None, name, carrier, init))
    }

    /// An entry span for work that no caller handed over (jobs, consumers, main loops): it
    /// starts a new trace, through the global tracer. [`Span::entry`] with no carrier.
    ///
    /// ```
    /// let job = skytrace::Span::root_entry("nightly-cleanup");
    /// assert!(!job.is_recording()); // no tracer installed here
    /// ```
    pub fn root_entry(operation_name: impl Into<Cow<'static, str>>) -> Span {
        Self::entry(operation_name, &())
    }

    /// Whether this span records. Skip work that only feeds it (formatting tags) when it does not.
    #[inline]
    pub fn is_recording(&self) -> bool {
        matches!(self.handle, Some(Handle::Recording { .. }))
    }

    /// Whether this span's segment can still take spans (`true` for a span that does not
    /// record: nothing to move away from).
    pub(crate) fn segment_takes_spans(&self) -> bool {
        match &self.handle {
            Some(Handle::Recording { segment, .. }) => segment.takes_spans(),
            _ => true,
        }
    }

    /// Where the span's segment is (for tests of its reuse).
    #[cfg(test)]
    pub(crate) fn segment_address(&self) -> Option<usize> {
        match &self.handle {
            Some(Handle::Recording { segment, .. }) => {
                Some(std::sync::Arc::as_ptr(segment) as usize)
            }
            _ => None,
        }
    }

    /// Applies `edit` to the span's record (under one lock at most).
    #[inline]
    pub(crate) fn edit(&self, edit: Edit) {
        if let Some(Handle::Recording { segment, span_id }) = &self.handle {
            context::edit_span(segment, *span_id, self.at, edit);
        }
    }

    /// Applies `edits` to the span's record in order, under one lock at most.
    #[allow(dead_code)] // used by the `tracing` bridge, which depends on its feature
    pub(crate) fn edit_all(&self, edits: impl IntoIterator<Item = Edit>) {
        if let Some(Handle::Recording { segment, span_id }) = &self.handle {
            context::edit_span_all(segment, *span_id, self.at, edits);
        }
    }

    /// Applies `edits` to the span's record and ends the span: one lock where changing, then
    /// dropping, took two (integrations tag the response this way).
    #[allow(dead_code)] // used by the HTTP integrations, which depend on the features
    pub(crate) fn end_with(mut self, edits: impl IntoIterator<Item = Edit>) {
        // Taken out, so that `drop` finds nothing more to end.
        if let Some(Handle::Recording { segment, span_id }) = self.handle.take() {
            context::end_span(segment, span_id, self.at, edits);
        }
    }

    /// Sets the layer OAP analyses the span by.
    pub fn set_layer(&self, layer: SpanLayer) {
        self.edit(Edit::Layer(layer));
    }

    /// Sets the component id (see [`crate::component`]).
    pub fn set_component(&self, component_id: i32) {
        self.edit(Edit::Component(component_id));
    }

    /// Sets the peer: the address of the other side.
    pub fn set_peer(&self, peer: impl Into<Cow<'static, str>>) {
        if self.is_recording() {
            self.edit(Edit::Peer(peer.into()));
        }
    }

    /// Renames the span (an entry span's name is its endpoint).
    pub fn set_operation_name(&self, operation_name: impl Into<Cow<'static, str>>) {
        if self.is_recording() {
            self.edit(Edit::Operation(operation_name.into()));
        }
    }

    /// Adds a tag.
    pub fn add_tag(&self, key: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) {
        if self.is_recording() {
            self.edit(Edit::Tag(key.into(), value.into()));
        }
    }

    /// Adds a timestamped log of key/value fields.
    pub fn log<K, V>(&self, fields: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Cow<'static, str>>,
        V: Into<Cow<'static, str>>,
    {
        if self.is_recording() {
            self.edit(Edit::Log(fields_log(fields)));
        }
    }

    /// Marks the span as failed (or not).
    pub fn set_error(&self, is_error: bool) {
        self.edit(Edit::Error(is_error));
    }

    /// Marks the span as failed and logs the error's message, as the official agents do
    /// (`event=error`, `message=…`).
    pub fn record_error(&self, error: &dyn fmt::Display) {
        if self.is_recording() {
            self.edit(Edit::Failed(error_log(Stamp::now(), error)));
        }
    }

    /// Asks OAP not to analyse this span (it is still stored and shown).
    pub fn set_skip_analysis(&self) {
        self.edit(Edit::SkipAnalysis);
    }

    /// Writes the headers for a call made from this (exit) span; see [`crate::inject`].
    pub fn inject(&self, carrier: &mut (impl Injector + ?Sized)) -> bool {
        match &self.handle {
            Some(handle) => context::write_headers(handle, carrier),
            None => false,
        }
    }

    /// Makes this span current on this thread until the guard is dropped: spans created
    /// meanwhile become its children. Dropping the guard while panicking marks the span as
    /// failed. For async code use [`crate::Instrument::in_span`], which enters around each poll.
    #[inline]
    pub fn enter(&self) -> Entered<'_> {
        self.enter_as(current::Owner::guard())
    }

    /// [`Span::enter`] for the duration of a future's poll (which cannot be suspended with the
    /// span current): other tasks need not be told apart from it.
    #[inline]
    pub(crate) fn enter_for_poll(&self) -> Entered<'_> {
        self.enter_as(current::Owner::Poll)
    }

    // Always: every poll of an instrumented future comes here, and whether LLVM inlined it
    // moved with unrelated changes elsewhere in the crate (+13 instructions a poll when not).
    #[inline(always)]
    fn enter_as(&self, owner: current::Owner) -> Entered<'_> {
        let state = match &self.handle {
            None => EnterState::Noop,
            Some(handle @ Handle::Recording { segment, span_id }) => {
                match current::switch_in_place(segment, *span_id, owner) {
                    Some(switched) => EnterState::Switched(switched),
                    None => EnterState::Replaced(current::enter(handle.clone(), owner)),
                }
            }
            Some(handle) => EnterState::Replaced(current::enter(handle.clone(), owner)),
        };
        Entered {
            span: self,
            state,
            _not_send: PhantomData,
        }
    }

    /// [`Span::enter`] without a guard borrowing the span: for bridges whose enter and exit are
    /// separate callbacks (the `tracing` layer keeps the [`Entrance`] on a per-thread stack).
    /// Unlike a guard, leaving does not mark the span failed during a panic.
    #[allow(dead_code)] // used by the `tracing` bridge, which depends on a feature
    pub(crate) fn enter_detached(&self) -> Entrance {
        let mut entered = self.enter();
        let state = std::mem::replace(&mut entered.state, EnterState::Noop);
        Entrance(state)
    }

    /// Makes this span current on this thread and returns a guard that owns it: dropping the
    /// guard restores the previous current span and ends this one (marked as failed when
    /// dropped while panicking). What `#[entry_span]` and `#[exit_span]` use on a sync fn.
    ///
    /// Do not hold the guard across an `.await` (use [`crate::Instrument::in_span`] for async
    /// code): the task may be suspended with another span current, and the span of a guard
    /// caught that way can be lost (never recorded); other spans and memory are unaffected.
    ///
    /// ```
    /// let guard = skytrace::Span::local("step").entered();
    /// // … spans created here are children of `step` …
    /// drop(guard); // ends `step`
    /// ```
    #[inline]
    pub fn entered(mut self) -> EnteredSpan {
        let state = match &self.handle {
            None => GuardState::Noop,
            Some(Handle::Recording { segment, span_id }) => {
                match current::switch_in_place(segment, *span_id, current::Owner::guard()) {
                    Some(switched) => GuardState::Switched(switched),
                    None => self.lend(),
                }
            }
            Some(_) => self.lend(),
        };
        EnteredSpan {
            span: self,
            state,
            _not_send: PhantomData,
        }
    }

    /// Moves the handle into the thread-local, where no other handle of its segment is: the
    /// first span of a segment on this thread, entered with no count to pay.
    fn lend(&mut self) -> GuardState {
        match self.handle.take() {
            Some(handle) => {
                let id = handle.id();
                GuardState::Lent {
                    previous: current::enter(handle, current::Owner::guard()),
                    id,
                }
            }
            None => GuardState::Noop,
        }
    }

    /// Ends the span now.
    pub fn end(self) {
        drop(self);
    }

    pub(crate) fn record_panic(&self) {
        if self.is_recording() {
            self.edit(Edit::Failed(panic_log(Stamp::now())));
        }
    }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        // Taken: ending the first span may keep its segment's allocation for the next one.
        if let Some(Handle::Recording { segment, span_id }) = self.handle.take() {
            context::end_span(segment, span_id, self.at, []);
        }
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.handle {
            None => "noop",
            Some(Handle::Recording { .. }) => "recording",
            Some(Handle::Unsampled { .. }) => "unsampled",
        };
        f.debug_struct("Span").field("state", &state).finish()
    }
}

/// The guard [`Span::entered`] returns: it owns the span, which is current until the guard
/// drops and ends then (as `tracing`'s `EnteredSpan`).
#[must_use = "the span is current only while the guard lives"]
pub struct EnteredSpan {
    span: Span,
    state: GuardState,
    /// The guard restores a thread-local: it must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

/// How an [`EnteredSpan`] made its span current.
enum GuardState {
    /// A no-op span: nothing changed.
    Noop,
    /// The current handle, already of this segment, had its span id switched.
    Switched(current::Switched),
    /// The span's handle was moved into the thread-local (its segment was not current here);
    /// `id` recognises it when it is taken back.
    Lent { previous: Saved, id: HandleId },
}

impl Drop for EnteredSpan {
    #[inline]
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, GuardState::Noop) {
            GuardState::Noop => return,
            GuardState::Switched(switched) => current::switch_back(switched),
            GuardState::Lent { previous, id } => {
                self.span.handle = current::take_back(previous, id);
            }
        }
        if std::thread::panicking() {
            self.span.record_panic();
        }
        // Dropping `span` ends it.
    }
}

impl fmt::Debug for EnteredSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnteredSpan")
            .field("entered", &!matches!(self.state, GuardState::Noop))
            .finish()
    }
}

/// The guard [`Span::enter`] returns: it borrows the span and makes the previous current span
/// current again when dropped (as `tracing`'s `Entered`).
#[must_use = "the span is current only while the guard lives"]
pub struct Entered<'a> {
    span: &'a Span,
    state: EnterState,
    /// The guard restores a thread-local: it must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

/// What [`Span::enter_detached`] changed; [`Entrance::exit`] undoes it on the same thread.
#[allow(dead_code)] // used by the `tracing` bridge, which depends on a feature
pub(crate) struct Entrance(EnterState);

#[allow(dead_code)] // used by the `tracing` bridge, which depends on a feature
impl Entrance {
    /// Makes what was current before the entrance current again.
    pub(crate) fn exit(self) {
        match self.0 {
            EnterState::Noop => {}
            EnterState::Switched(switched) => current::switch_back(switched),
            EnterState::Replaced(previous) => drop(current::restore(previous)),
        }
    }
}

/// How an [`Entered`] made its span current.
enum EnterState {
    /// A no-op span: nothing changed.
    Noop,
    /// The current handle, already of this segment, had its span id switched.
    Switched(current::Switched),
    /// A clone of the span's handle replaced the current one, which is put back on drop.
    Replaced(Saved),
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, EnterState::Noop);
        if matches!(state, EnterState::Noop) {
            return;
        }
        if std::thread::panicking() {
            self.span.record_panic();
        }
        match state {
            EnterState::Noop => {}
            EnterState::Switched(switched) => current::switch_back(switched),
            EnterState::Replaced(previous) => {
                // What it replaces is dropped here, outside the thread-local.
                drop(current::restore(previous));
            }
        }
    }
}

impl fmt::Debug for Entered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entered").field("span", self.span).finish()
    }
}
