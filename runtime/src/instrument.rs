//! Running a future inside a span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::span::Span;

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
            .field("span", &self.traced.span)
            .finish()
    }
}

pin_project! {
    /// Polls `inner` with `span` entered, and hands the span back with the output instead of
    /// ending it, so that an integration can tag the outcome (status code, error) before the
    /// span ends. [`InSpan`] is this with the span dropped at once. Dropped before completion,
    /// the span is tagged `cancelled`; a panicking poll marks it as failed (see
    /// [`crate::Entered`]).
    pub(crate) struct Traced<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
        // True only during a poll: seen from `drop`, it means the poll unwound.
        polling: bool,
    }

    impl<F> PinnedDrop for Traced<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(span) = this.span.take()
                && !*this.polling
            {
                span.add_tag("cancelled", "true");
            }
        }
    }
}

impl<F> Traced<F> {
    pub(crate) fn new(inner: F, span: Span) -> Self {
        Traced {
            inner,
            span: Some(span),
            polling: false,
        }
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = (F::Output, Span);

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Entered with `Span::enter`: inside its parent's poll (the usual case) that switches the
        // current span id in place; otherwise it puts a counted clone of the handle in the
        // thread-local. Never lent like an `EnteredSpan`'s: user code inside the poll may hold a
        // guard across an `.await`, and a lent handle caught in such a guard would be lost.
        let poll = match this.span.as_ref() {
            Some(span) => {
                let _entered = span.enter_for_poll();
                *this.polling = true;
                let poll = this.inner.poll(cx);
                *this.polling = false;
                poll
            }
            None => this.inner.poll(cx),
        };
        match poll {
            Poll::Ready(output) => Poll::Ready((output, this.span.take().unwrap_or(Span::noop()))),
            Poll::Pending => Poll::Pending,
        }
    }
}
