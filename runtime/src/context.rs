//! The per-task tracing context.
//!
//! A trace being recorded in this process lives in an [`ActiveSegment`], shared (`Arc`) by the
//! spans that belong to it. Which span is *current* is a thread-local [`Handle`], set while a span
//! is entered: a guard for sync code ([`crate::EnteredSpan`]), and around every poll for a future
//! ([`crate::InSpan`]). Because the future carries its span and re-enters it on whichever worker
//! thread polls it, nesting stays right on a multi-threaded runtime, and `join!`ed children each
//! see their own parent. Work handed to another task continues through a [`ContextSnapshot`].

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::id::new_id;
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

thread_local! {
    static CURRENT: Cell<Option<Handle>> = const { Cell::new(None) };
    /// Mirrors `CURRENT.is_some()`. A thread-local without a destructor is a plain load, while
    /// reaching `CURRENT` (which owns `Arc`s, so has one) first checks its registration: outside
    /// any trace, looking here is all a span costs.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the current handle; `None` when no trace is current (or, during thread
/// teardown, when the thread-local is gone).
pub(crate) fn with_current<R>(f: impl FnOnce(&Handle) -> R) -> Option<R> {
    CURRENT
        .try_with(|cur| {
            // Take the handle out for the duration of `f` and put it back: a `Cell` needs no
            // borrow flag, and `f` (our own code) never looks at the current handle again.
            let handle = cur.take()?;
            let result = f(&handle);
            cur.set(Some(handle));
            Some(result)
        })
        .ok()
        .flatten()
}

/// Puts `previous` back as current and returns the handle that was current, if it is the one
/// `identity` names: how [`crate::SpanGuard`] takes its lent handle back. Anything else
/// found there was left by a leaked guard: it is released, and the lent handle, held by that
/// guard, is lost with it — a lost span, never unsound memory.
pub(crate) fn take_back(previous: Option<Handle>, identity: (usize, i32)) -> Option<Handle> {
    replace_current(previous).filter(|h| h.identity() == identity)
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
    CURRENT
        .try_with(|cur| {
            // SAFETY: the `Cell` is only ever written through `replace`/`take`/`set` on this
            // thread (it is a thread-local), and by the contract above nothing writes it while
            // `f` runs, so the shared reference does not alias a write and does not outlive
            // the call.
            let current = unsafe { &*cur.as_ptr() };
            current.as_ref().map(f)
        })
        .ok()
        .flatten()
}

/// Makes `handle` current, returning what was current before.
pub(crate) fn replace_current(handle: Option<Handle>) -> Option<Handle> {
    let active = handle.is_some();
    let previous = CURRENT.try_with(|cur| cur.replace(handle)).unwrap_or(None);
    ACTIVE.with(|a| a.set(active));
    previous
}

/// One segment being recorded.
pub(crate) struct ActiveSegment {
    pub(crate) tracer: Arc<TracerInner>,
    pub(crate) trace_id: Arc<str>,
    pub(crate) segment_id: Arc<str>,
    state: Mutex<SegmentState>,
}

pub(crate) struct SegmentState {
    pub(crate) spans: Vec<SpanRecord>,
    refs: Vec<SegmentRef>,
    size_limited: bool,
    finished: bool,
    /// Set when the trace skips analysis (`sw8-x`): every span of the segment does.
    skip_analysis: bool,
    pub(crate) correlation: Correlation,
}

impl ActiveSegment {
    /// Starts a segment and its first span.
    pub(crate) fn start(
        tracer: Arc<TracerInner>,
        trace_id: Arc<str>,
        first: (SpanKind, Text),
        refs: Vec<SegmentRef>,
        correlation: Correlation,
        skip_analysis: bool,
    ) -> Span {
        let now = Stamp::now();
        let mut span = SpanRecord::new(-1, first.0, first.1, Cow::Borrowed(""), now);
        span.skip_analysis = skip_analysis;
        let mut spans = Vec::with_capacity(8);
        spans.push(span);
        let segment = Arc::new(ActiveSegment {
            tracer,
            trace_id,
            segment_id: new_id(),
            state: Mutex::new(SegmentState {
                spans,
                refs,
                size_limited: false,
                finished: false,
                skip_analysis,
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

    /// Opens a child of `parent`; a no-op span past the span limit or after the segment ended.
    pub(crate) fn start_span(
        self: &Arc<Self>,
        parent: i32,
        kind: SpanKind,
        operation: Text,
        peer: Text,
    ) -> Span {
        let now = Stamp::now();
        let mut state = self.lock();
        if state.finished {
            return Span::noop();
        }
        if state.spans.len() >= self.tracer.span_limit {
            state.size_limited = true;
            return Span::noop();
        }
        let span_id = i32::try_from(state.spans.len()).unwrap_or(i32::MAX);
        let mut record = SpanRecord::new(parent, kind, operation, peer, now);
        record.skip_analysis = state.skip_analysis;
        state.spans.push(record);
        drop(state);
        Span::from_handle(Handle::Recording {
            segment: Arc::clone(self),
            span_id,
        })
    }

    /// Changes span `span_id` if the segment is still open.
    pub(crate) fn with_span(&self, span_id: i32, f: impl FnOnce(&mut SpanRecord)) {
        let mut state = self.lock();
        if let Some(span) = usize::try_from(span_id)
            .ok()
            .and_then(|i| state.spans.get_mut(i))
        {
            f(span);
        }
    }

    /// Ends span `span_id`. Ending the first span finishes the segment and reports it.
    pub(crate) fn end_span(&self, span_id: i32) {
        let now = Stamp::now();
        let mut state = self.lock();
        if state.finished {
            return;
        }
        let Some(span) = usize::try_from(span_id)
            .ok()
            .and_then(|i| state.spans.get_mut(i))
        else {
            return;
        };
        if span.end.is_none() {
            // A span can end on another core than it started on: never before its start.
            span.end = Some(now.max(span.start));
        }
        if span_id != 0 {
            return;
        }
        state.finished = true;
        let mut spans = std::mem::take(&mut state.spans);
        let refs = std::mem::take(&mut state.refs);
        let size_limited = state.size_limited;
        drop(state);
        // Spans still open when the segment ends (work that outlived its parent) close with it.
        for span in &mut spans {
            if span.end.is_none() {
                span.end = Some(now.max(span.start));
            }
        }
        let segment = Segment {
            trace_id: Arc::clone(&self.trace_id),
            segment_id: Arc::clone(&self.segment_id),
            service: Arc::clone(&self.tracer.service),
            instance: Arc::clone(&self.tracer.instance),
            spans,
            refs,
            size_limited,
        };
        self.tracer.reporter.report(segment);
    }

    /// The endpoint callees see: the first span's operation name.
    fn endpoint(state: &SegmentState) -> Option<String> {
        state.spans.first().map(|s| s.operation.to_string())
    }

    /// The `sw8` header for a call made from exit span `span_id`.
    pub(crate) fn inject(&self, span_id: i32, carrier: &mut dyn Injector) -> bool {
        let state = self.lock();
        let Some(span) = usize::try_from(span_id)
            .ok()
            .and_then(|i| state.spans.get(i))
        else {
            return false;
        };
        if span.kind != SpanKind::Exit || span.peer.is_empty() {
            return false;
        }
        let Some(endpoint) = state.spans.first().map(|s| &*s.operation) else {
            return false;
        };
        let header = Sw8Parts {
            sampled: true,
            trace_id: &self.trace_id,
            parent_segment_id: &self.segment_id,
            parent_span_id: span_id,
            parent_service: &self.tracer.service,
            parent_service_instance: &self.tracer.instance,
            parent_endpoint: endpoint,
            target_address: &span.peer,
        }
        .encode();
        let correlation = (!state.correlation.is_empty()).then(|| state.correlation.encode());
        let extension = Sw8Extension {
            skip_analysis: state.skip_analysis,
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
                trace_id: Arc::clone(&self.trace_id),
                segment_id: Arc::clone(&self.segment_id),
                span_id,
                endpoint,
                correlation: state.correlation.clone(),
                skip_analysis: state.skip_analysis,
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
            trace_id: self.trace_id.get_or_init(|| new_id().to_string()).clone(),
            parent_segment_id: new_id().to_string(),
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

#[derive(Clone)]
enum SnapshotInner {
    Recording {
        tracer: Arc<TracerInner>,
        trace_id: Arc<str>,
        segment_id: Arc<str>,
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
                    trace_id: trace_id.to_string(),
                    parent_segment_id: segment_id.to_string(),
                    parent_span_id: *span_id,
                    parent_service: tracer.service.to_string(),
                    parent_service_instance: tracer.instance.to_string(),
                    parent_endpoint: endpoint.clone(),
                    network_address: String::new(),
                };
                ActiveSegment::start(
                    Arc::clone(tracer),
                    Arc::clone(trace_id),
                    (SpanKind::Local, operation_name.into()),
                    vec![reference],
                    correlation.clone(),
                    *skip_analysis,
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
            SnapshotInner::Recording { trace_id, .. } => Some(trace_id),
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
        Handle::Recording { segment, .. } => Some(segment.trace_id.to_string()),
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
