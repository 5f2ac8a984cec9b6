//! [`Span`]: the handle instrumentation holds while a piece of work runs.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::{
    ActiveSegment, Handle, NOT_BUFFERED, inject_handle, peek_current, replace_current,
    start_buffered, switch_back, switch_in_place, take_back, with_new_span_record,
    with_span_record,
};
use crate::propagation::{Extractor, Injector};
use crate::segment::{LogRecord, SpanKind, SpanLayer, Text};
use crate::time::Stamp;
use crate::tracer;

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
    /// Where the record was put in the buffer of the thread that started the span, for a local
    /// span; [`NOT_BUFFERED`] for a span recorded in its segment directly.
    slot: usize,
}

impl Span {
    pub(crate) fn from_handle(handle: Handle) -> Span {
        Span {
            handle: Some(handle),
            slot: NOT_BUFFERED,
        }
    }

    /// A local span whose record is in this thread's buffer at `slot`.
    pub(crate) fn buffered(segment: Arc<ActiveSegment>, span_id: i32, slot: usize) -> Span {
        Span {
            handle: Some(Handle::Recording { segment, span_id }),
            slot,
        }
    }

    /// A span that records nothing.
    pub const fn noop() -> Span {
        Span {
            handle: None,
            slot: NOT_BUFFERED,
        }
    }

    /// A local span, child of the current span. No-op when no trace is active.
    #[inline]
    pub fn local(operation_name: impl Into<Cow<'static, str>>) -> Span {
        Self::child(SpanKind::Local, operation_name, Cow::Borrowed(""))
    }

    /// An exit span for a call to `peer` (the `host:port` dialled), child of the current span.
    /// While it is entered, [`crate::inject`] writes the headers the callee continues from.
    /// No-op when no trace is active.
    pub fn exit(
        operation_name: impl Into<Cow<'static, str>>,
        peer: impl Into<Cow<'static, str>>,
    ) -> Span {
        Self::child(SpanKind::Exit, operation_name, peer)
    }

    #[inline]
    fn child(
        kind: SpanKind,
        operation_name: impl Into<Cow<'static, str>>,
        peer: impl Into<Cow<'static, str>>,
    ) -> Span {
        // Converted before looking at the current span: `peek_current` must run no user code
        // (an `Into` impl could), and for `&'static str` the conversion is free.
        let operation_name = operation_name.into();
        if kind == SpanKind::Local {
            // Recorded on this thread without a lock, like a `LocalSpan`.
            return start_buffered(operation_name).unwrap_or(Span::noop());
        }
        let peer = peer.into();
        peek_current(|cur| match cur {
            Handle::Recording { segment, span_id } => {
                segment.start_span(*span_id, kind, operation_name, peer)
            }
            Handle::Unsampled { context, .. } if kind == SpanKind::Exit => {
                Span::from_handle(Handle::Unsampled {
                    context: Arc::clone(context),
                    peer: Some(peer),
                })
            }
            Handle::Unsampled { .. } => Span::noop(),
        })
        .unwrap_or(Span::noop())
    }

    /// An entry span: where a request enters this service. It continues the caller's trace from
    /// the `sw8` header in `carrier` (a malformed one is ignored), or starts a new trace, through
    /// the global tracer installed by [`crate::init`]. Inside an active trace it is a local child
    /// span instead, so a handler under a tracing middleware does not count the request twice.
    pub fn entry(
        operation_name: impl Into<Cow<'static, str>>,
        carrier: &(impl Extractor + ?Sized),
    ) -> Span {
        tracer::entry(None, operation_name.into(), carrier)
    }

    /// An entry span with no carrier: starts a new trace (for jobs, consumers, main loops).
    pub fn entry_new(operation_name: impl Into<Cow<'static, str>>) -> Span {
        Self::entry(operation_name, &())
    }

    /// Whether this span records. Skip work that only feeds it (formatting tags) when it does not.
    #[inline]
    pub fn is_recording(&self) -> bool {
        matches!(self.handle, Some(Handle::Recording { .. }))
    }

    /// Changes the span's record (under one lock at most, however much changes).
    #[inline]
    pub(crate) fn update(&self, f: impl FnOnce(&mut crate::segment::SpanRecord) + Send + 'static) {
        if let Some(Handle::Recording { segment, span_id }) = &self.handle {
            with_span_record(segment, *span_id, self.slot, f);
        }
    }

    /// Changes the record of a span just made on this thread, before it is handed anywhere.
    pub(crate) fn init_record(&self, f: impl FnOnce(&mut crate::segment::SpanRecord)) {
        if let Some(Handle::Recording { segment, span_id }) = &self.handle {
            with_new_span_record(segment, *span_id, self.slot, f);
        }
    }

    /// Changes the span's record with `f` and ends the span: one lock where changing, then
    /// dropping, took two (integrations tag the response this way).
    #[allow(dead_code)] // used by the HTTP integrations, which depend on the features
    pub(crate) fn end_with(
        mut self,
        f: impl FnOnce(&mut crate::segment::SpanRecord) + Send + 'static,
    ) {
        // Taken out, so that `drop` finds nothing more to end.
        if let Some(Handle::Recording { segment, span_id }) = self.handle.take() {
            if span_id == 0 {
                segment.end_span_with(0, f);
            } else {
                let now = Stamp::now();
                with_span_record(&segment, span_id, self.slot, move |s| {
                    f(s);
                    s.close(now);
                });
            }
        }
    }

    /// Sets the layer OAP analyses the span by.
    pub fn set_layer(&self, layer: SpanLayer) {
        self.update(move |s| s.layer = layer);
    }

    /// Sets the component id (see [`crate::component`]).
    pub fn set_component(&self, component_id: i32) {
        self.update(move |s| s.component = component_id);
    }

    /// Sets the peer: the address of the other side.
    pub fn set_peer(&self, peer: impl Into<Cow<'static, str>>) {
        if !self.is_recording() {
            return;
        }
        // Converted before the segment is locked: an `Into` impl is user code.
        let peer = peer.into();
        self.update(move |s| s.peer = peer);
    }

    /// Renames the span (an entry span's name is its endpoint).
    pub fn set_operation_name(&self, operation_name: impl Into<Cow<'static, str>>) {
        if !self.is_recording() {
            return;
        }
        let operation_name = operation_name.into();
        self.update(move |s| s.operation = operation_name);
    }

    /// Adds a tag.
    pub fn add_tag(&self, key: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) {
        if !self.is_recording() {
            return;
        }
        let tag = (key.into(), value.into());
        self.update(move |s| s.tags.push(tag));
    }

    /// Adds a timestamped log of key/value fields.
    pub fn log<K, V>(&self, fields: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<Cow<'static, str>>,
        V: Into<Cow<'static, str>>,
    {
        if !self.is_recording() {
            return;
        }
        let log = fields_log(fields);
        self.update(move |s| s.logs.push(log));
    }

    /// Marks the span as failed (or not).
    pub fn set_error(&self, is_error: bool) {
        self.update(move |s| s.is_error = is_error);
    }

    /// Marks the span as failed and logs the error's message, as the official agents do
    /// (`event=error`, `message=…`).
    pub fn record_error(&self, error: &dyn fmt::Display) {
        if !self.is_recording() {
            return;
        }
        let log = error_log(Stamp::now(), error);
        self.update(move |s| {
            s.is_error = true;
            s.logs.push(log);
        });
    }

    /// Asks OAP not to analyse this span (it is still stored and shown).
    pub fn set_skip_analysis(&self) {
        self.update(move |s| s.skip_analysis = true);
    }

    /// Writes the headers for a call made from this (exit) span; see [`crate::inject`].
    pub fn inject(&self, carrier: &mut (impl Injector + ?Sized)) -> bool {
        let mut carrier = carrier;
        match &self.handle {
            Some(handle) => inject_handle(handle, &mut carrier),
            None => false,
        }
    }

    /// Makes this span current on this thread until the guard is dropped: spans created
    /// meanwhile become its children. Dropping the guard while panicking marks the span as
    /// failed. For async code use [`crate::Instrument::in_span`], which enters around each poll.
    #[inline]
    pub fn enter(&self) -> EnteredSpan<'_> {
        let state = match &self.handle {
            None => Entered::Noop,
            Some(handle @ Handle::Recording { segment, span_id }) => {
                match switch_in_place(segment, *span_id) {
                    Some(previous) => Entered::Switched {
                        segment: Arc::as_ptr(segment) as usize,
                        previous,
                    },
                    None => Entered::Replaced(replace_current(Some(handle.clone()))),
                }
            }
            Some(handle) => Entered::Replaced(replace_current(Some(handle.clone()))),
        };
        EnteredSpan {
            span: self,
            state,
            _not_send: PhantomData,
        }
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
    pub fn entered(mut self) -> SpanGuard {
        let state = match &self.handle {
            None => Guarded::Noop,
            Some(Handle::Recording { segment, span_id }) => {
                match switch_in_place(segment, *span_id) {
                    Some(previous) => Guarded::Switched {
                        segment: Arc::as_ptr(segment) as usize,
                        previous,
                    },
                    None => self.lend(),
                }
            }
            Some(_) => self.lend(),
        };
        SpanGuard {
            span: self,
            state,
            _not_send: PhantomData,
        }
    }

    /// Moves the handle into the thread-local, where no other handle of its segment is: the
    /// first span of a segment on this thread, entered with no count to pay.
    fn lend(&mut self) -> Guarded {
        match self.handle.take() {
            Some(handle) => {
                let identity = handle.identity();
                Guarded::Lent {
                    previous: replace_current(Some(handle)),
                    identity,
                }
            }
            None => Guarded::Noop,
        }
    }

    /// Ends the span now.
    pub fn end(self) {
        drop(self);
    }

    pub(crate) fn record_panic(&self) {
        if !self.is_recording() {
            return;
        }
        let time = Stamp::now();
        self.update(move |s| {
            s.is_error = true;
            s.logs.push(panic_log(time));
        });
    }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        if let Some(Handle::Recording { segment, span_id }) = &self.handle {
            if *span_id == 0 {
                segment.end_span(0);
            } else {
                let now = Stamp::now();
                with_span_record(segment, *span_id, self.slot, move |s| s.close(now));
            }
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

/// Guard returned by [`Span::entered`]: owns the span, which is current until the guard drops
/// and ends then.
#[must_use = "the span is current only while the guard lives"]
pub struct SpanGuard {
    span: Span,
    state: Guarded,
    /// The guard restores a thread-local: it must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

/// How a [`SpanGuard`] made its span current.
enum Guarded {
    /// A no-op span: nothing changed.
    Noop,
    /// The current handle, already of this segment, had its span id switched.
    Switched { segment: usize, previous: i32 },
    /// The span's handle was moved into the thread-local (its segment was not current here);
    /// `identity` recognises it when it is taken back.
    Lent {
        previous: Option<Handle>,
        identity: (usize, i32),
    },
}

impl Drop for SpanGuard {
    #[inline]
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, Guarded::Noop) {
            Guarded::Noop => return,
            Guarded::Switched { segment, previous } => switch_back(segment, previous),
            Guarded::Lent { previous, identity } => {
                self.span.handle = take_back(previous, identity);
            }
        }
        if std::thread::panicking() {
            self.span.record_panic();
        }
        // Dropping `span` ends it.
    }
}

impl fmt::Debug for SpanGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanGuard")
            .field("entered", &!matches!(self.state, Guarded::Noop))
            .finish()
    }
}

/// Guard returned by [`Span::enter`]: restores the previous current span when dropped.
#[must_use = "the span is current only while the guard lives"]
pub struct EnteredSpan<'a> {
    span: &'a Span,
    state: Entered,
    /// The guard restores a thread-local: it must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

/// How an [`EnteredSpan`] made its span current.
enum Entered {
    /// A no-op span: nothing changed.
    Noop,
    /// The current handle, already of this segment, had its span id switched.
    Switched { segment: usize, previous: i32 },
    /// A clone of the span's handle replaced the current one, which is put back on drop.
    Replaced(Option<Handle>),
}

impl Drop for EnteredSpan<'_> {
    #[inline]
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, Entered::Noop);
        if matches!(state, Entered::Noop) {
            return;
        }
        if std::thread::panicking() {
            self.span.record_panic();
        }
        match state {
            Entered::Noop => {}
            Entered::Switched { segment, previous } => switch_back(segment, previous),
            Entered::Replaced(previous) => {
                replace_current(previous);
            }
        }
    }
}

impl fmt::Debug for EnteredSpan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnteredSpan")
            .field("span", self.span)
            .finish()
    }
}

/// A log of `fields`, stamped now.
pub(crate) fn fields_log<K, V>(fields: impl IntoIterator<Item = (K, V)>) -> LogRecord
where
    K: Into<Cow<'static, str>>,
    V: Into<Cow<'static, str>>,
{
    let fields: Vec<(Text, Text)> = fields
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    LogRecord {
        time: Stamp::now(),
        fields,
    }
}

/// The log the official agents write for an error: `event=error`, `message=…`.
pub(crate) fn error_log(time: Stamp, error: &dyn fmt::Display) -> LogRecord {
    LogRecord {
        time,
        fields: vec![
            (Cow::Borrowed("event"), Cow::Borrowed("error")),
            (Cow::Borrowed("message"), Cow::Owned(error.to_string())),
        ],
    }
}

/// The log of a span that ended by a panic.
pub(crate) fn panic_log(time: Stamp) -> LogRecord {
    LogRecord {
        time,
        fields: vec![
            (Cow::Borrowed("event"), Cow::Borrowed("error")),
            (Cow::Borrowed("error.kind"), Cow::Borrowed("panic")),
        ],
    }
}
