//! Running a future inside a span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::span::Span;
use crate::span_future::Traced;

/// Attaches a span to any future.
///
/// ```
/// use skytrace::{Instrument, Span};
///
/// async fn fetch() -> u32 { 42 }
///
/// # async fn demo() -> u32 {
/// fetch().in_span(Span::local("fetch")).await
/// # }
/// ```
pub trait Instrument: Future + Sized {
    /// Enters `span` around every poll of this future, wherever it is polled, and ends it when
    /// the future completes. If the future is dropped first the span is tagged `cancelled` and
    /// ended; if a poll panics the span is marked as failed.
    fn in_span(self, span: Span) -> InSpan<Self> {
        InSpan {
            traced: Traced::new(self, span),
        }
    }

    /// Carries the current trace into this future, for a task spawned from it: see
    /// [`crate::spawn`], which is `tokio::spawn(future.in_current_trace())`.
    ///
    /// ```
    /// use skytrace::Instrument;
    ///
    /// # async fn demo() {
    /// // Inside a traced request: the task's spans join its trace.
    /// let task = tokio::spawn(async { /* … */ }.in_current_trace().named("send-mail"));
    /// # let _ = task.await;
    /// # }
    /// ```
    fn in_current_trace(self) -> crate::task::InCurrentTrace<Self> {
        crate::task::InCurrentTrace::new(self)
    }
}

impl<F: Future> Instrument for F {}

pin_project! {
    /// A future running inside a span: see [`Instrument::in_span`].
    #[must_use = "futures do nothing unless polled"]
    pub struct InSpan<F> {
        #[pin]
        traced: Traced<F>,
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().traced.poll(cx) {
            // Dropping the span ends it.
            Poll::Ready((output, _span)) => Poll::Ready(output),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> std::fmt::Debug for InSpan<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InSpan")
            .field("span", &self.traced.span())
            .finish()
    }
}
