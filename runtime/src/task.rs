//! Spawned tasks in the current trace: [`spawn`] and [`InCurrentTrace`]
//! ([`crate::Instrument::in_current_trace`]).
//!
//! A task spawned while a request is traced gets a local span, a child of the span current
//! where it was spawned, recorded in the request's segment: the usual case, a task awaited (or
//! done) before the request answers, costs no new segment. A task still running when that
//! segment has ended (the request answered) continues in a segment of its own, whose first
//! span has the task's name and a `CrossThread` reference to the task's span — what
//! [`crate::snapshot`] and [`crate::ContextSnapshot::continue_span`] do by hand. Which of the
//! two happens is decided before each poll, with one atomic load.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::context::{Handle, current};
use crate::segment::SpanKind;
use crate::snapshot::{ContextSnapshot, snapshot, snapshot_at};
use crate::span::Span;
use crate::span_future::Traced;

/// The name of a task's span unless [`InCurrentTrace::named`] gives one.
const DEFAULT_NAME: &str = "Task";

/// `tokio::spawn(future.in_current_trace())`: spawns `future` on the current tokio runtime
/// carrying the current trace. Its spans join the request that spawned it, under a local span
/// `Task`; if it outlives the request's segment it continues in a segment of its own (a
/// `CrossThread` reference). Outside any trace it is `tokio::spawn`. Like `tokio::spawn`, it
/// panics when called outside a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Inside a traced request handler:
/// let report = skytrace::spawn(async {
///     let _step = skytrace::Span::local("render").entered();
///     // … a child of the task's span, in the request's trace …
///     42
/// });
/// assert_eq!(report.await.unwrap(), 42);
/// # }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(InCurrentTrace::new(future))
}

pin_project! {
    /// A future carrying the trace current where it was made: see
    /// [`crate::Instrument::in_current_trace`] and [`spawn`].
    #[must_use = "futures do nothing unless polled"]
    pub struct InCurrentTrace<F> {
        #[pin]
        traced: Traced<F>,
        // Where the task goes on once the request's segment takes no more spans; `None` once
        // used, or when there is nothing to continue (no trace, or one not sampled).
        continuation: Option<Box<Continuation>>,
    }
}

struct Continuation {
    snapshot: ContextSnapshot,
    name: Cow<'static, str>,
}

impl<F> InCurrentTrace<F> {
    pub(crate) fn new(inner: F) -> Self {
        let (span, continuation) = match current::start_child(
            SpanKind::Local,
            Cow::Borrowed(DEFAULT_NAME),
            Cow::Borrowed(""),
        ) {
            Some(current::Child::Recording { segment, span_id }) => {
                let handle = Handle::Recording { segment, span_id };
                let snapshot = snapshot_at(handle.clone());
                (Span::from_handle(handle), snapshot)
            }
            // Not sampled: the context is carried (it propagates), nothing is recorded.
            Some(current::Child::Unsampled(context, _)) => (
                Span::from_handle(Handle::Unsampled {
                    context,
                    peer: None,
                }),
                None,
            ),
            // No trace, or the current segment is at its span limit: then the task goes
            // straight to a segment of its own.
            None => (Span::noop(), snapshot()),
        };
        InCurrentTrace {
            traced: Traced::new(inner, span),
            continuation: continuation.map(|snapshot| {
                Box::new(Continuation {
                    snapshot,
                    name: Cow::Borrowed(DEFAULT_NAME),
                })
            }),
        }
    }

    /// Names the task's span (and the first span of its own segment, if it outlives the
    /// request's): `Task` by default.
    ///
    /// ```
    /// use skytrace::Instrument;
    ///
    /// # async fn demo() {
    /// tokio::spawn(async { /* … */ }.in_current_trace().named("refresh-cache"));
    /// # }
    /// ```
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        if let Some(span) = self.traced.span() {
            span.set_operation_name(name.clone());
        }
        if let Some(continuation) = &mut self.continuation {
            continuation.name = name;
        }
        self
    }
}

impl<F: Future> Future for InCurrentTrace<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.continuation.is_some()
            && !this
                .traced
                .span()
                .is_some_and(|s| s.is_recording() && s.segment_takes_spans())
            && let Some(continuation) = this.continuation.take()
        {
            // The request's segment has ended: the task's span there closed with it, and the
            // rest of the task is recorded in a segment of its own.
            let span = continuation.snapshot.continue_span(continuation.name);
            *this.traced.as_mut().span_slot() = Some(span);
        }
        match this.traced.poll(cx) {
            // Dropping the span ends it.
            Poll::Ready((output, _span)) => Poll::Ready(output),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> std::fmt::Debug for InCurrentTrace<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InCurrentTrace")
            .field("span", &self.traced.span())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
