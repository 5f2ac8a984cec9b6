//! The current trace, as user code sees it: [`snapshot`] to continue it in another task,
//! [`inject`] to continue it in another process, correlation values, and the trace id for logs.
//!
//! Each function takes what it needs from the thread's context first (a counted handle), and
//! only then runs user code (an `Injector`, a conversion), so whatever that code does — panic,
//! start or enter spans — the thread's context is as it was.

use std::borrow::Cow;
use std::sync::Arc;

use crate::agent::Agent;
use crate::context::{
    ActiveSegment, Handle, SegmentStart, UnsampledContext, current, write_headers,
};
use crate::id::{Id, TraceId};
use crate::propagation::{Correlation, Injector};
use crate::segment::{RefKind, SegmentRef, SpanKind};
use crate::span::Span;

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
        agent: Arc<Agent>,
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
    /// `operation`, with a `CrossThread` reference to the span the snapshot was taken in.
    pub fn continue_span(&self, operation: impl Into<Cow<'static, str>>) -> Span {
        match &self.inner {
            SnapshotInner::Recording {
                agent,
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
                    parent_service: agent.service.to_string(),
                    parent_service_instance: agent.instance.to_string(),
                    parent_endpoint: endpoint.clone(),
                    network_address: String::new(),
                };
                let segment = ActiveSegment::start(
                    Arc::clone(agent),
                    SegmentStart {
                        span_limit: agent.settings.with(|s| s.span_limit),
                        trace_id: Some(trace_id.clone()),
                        refs: vec![reference],
                        correlation: correlation.clone(),
                        skip_analysis: *skip_analysis,
                    },
                    (SpanKind::Local, operation.into()),
                    |_| {},
                );
                Span::from_handle(Handle::Recording {
                    segment,
                    span_id: 0,
                })
            }
            SnapshotInner::Unsampled(context) => Span::from_handle(Handle::Unsampled {
                context: Arc::clone(context),
                peer: None,
            }),
        }
    }

    /// The trace id the snapshot belongs to (`None` for a trace that is not sampled and was
    /// never propagated).
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
    snapshot_at(current::clone_current()?)
}

/// A snapshot taken at the span `handle` is of (one lock on its segment, for the parts a new
/// segment copies).
pub(crate) fn snapshot_at(handle: Handle) -> Option<ContextSnapshot> {
    let inner = match handle {
        Handle::Recording { segment, span_id } => {
            let parts = segment.snapshot_parts()?;
            SnapshotInner::Recording {
                agent: Arc::clone(&segment.agent),
                trace_id: parts.trace_id,
                segment_id: parts.segment_id,
                span_id,
                endpoint: parts.endpoint,
                correlation: parts.correlation,
                skip_analysis: parts.skip_analysis,
            }
        }
        Handle::Unsampled { context, .. } => SnapshotInner::Unsampled(context),
    };
    Some(ContextSnapshot { inner })
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
    match current::clone_current() {
        Some(handle) => write_headers(&handle, carrier),
        None => false,
    }
}

/// The id of the trace being recorded on this task, for logs.
///
/// ```
/// assert_eq!(skytrace::current_trace_id(), None);
/// ```
pub fn current_trace_id() -> Option<String> {
    match current::clone_current()? {
        Handle::Recording { segment, .. } => Some(segment.trace_id().to_owned()),
        Handle::Unsampled { context, .. } => context.trace_id.get().cloned(),
    }
}

/// Where a log line written now belongs: the trace, segment and span being recorded on this
/// task, and the segment's endpoint (its first span's name). `None` outside a recorded trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(dead_code)] // used by the log bridges, which depend on features
pub(crate) struct LogContext {
    pub(crate) service: &'static str,
    pub(crate) instance: &'static str,
    pub(crate) trace_id: String,
    pub(crate) segment_id: String,
    pub(crate) span_id: i32,
    pub(crate) endpoint: String,
}

#[allow(dead_code)] // used by the log bridges, which depend on features
pub(crate) fn current_log_context() -> Option<LogContext> {
    match current::clone_current()? {
        Handle::Recording { segment, span_id } => Some(LogContext {
            service: segment.agent.service,
            instance: segment.agent.instance,
            trace_id: segment.trace_id().to_owned(),
            segment_id: segment.segment_id.as_str().to_owned(),
            span_id,
            endpoint: segment.endpoint()?,
        }),
        Handle::Unsampled { .. } => None,
    }
}

/// Reads a correlation (baggage) value of the current trace.
pub fn get_correlation(key: &str) -> Option<String> {
    match current::clone_current()? {
        Handle::Recording { segment, .. } => segment.correlation(key),
        Handle::Unsampled { .. } => None,
    }
}

/// Sets a correlation (baggage) value on the current trace; it travels to every later exit span
/// and continued task. Returns `false` when no trace is recorded or the limits reject it.
pub fn put_correlation(key: impl Into<String>, value: impl Into<String>) -> bool {
    let Some(Handle::Recording { segment, .. }) = current::clone_current() else {
        return false;
    };
    // Converted before the segment is locked: the conversions are user code, and may record
    // on this very segment.
    let (key, value) = (key.into(), value.into());
    segment.put_correlation(key, value)
}
