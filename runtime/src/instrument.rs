//! Running a future inside a span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::context::{Handle, replace_current, take_back};
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
    /// [`crate::EnteredSpan`]).
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
        let lent = this.span.as_mut().and_then(Span::take_handle);
        let poll = match lent {
            Some(handle) => {
                // The span's handle is lent to the thread-local for the poll and taken back
                // after it (even when the poll unwinds): entering costs no reference count.
                let identity = handle.identity();
                let previous = replace_current(Some(handle));
                let _restore = Restore {
                    span: &mut *this.span,
                    previous,
                    identity,
                };
                *this.polling = true;
                let poll = this.inner.poll(cx);
                *this.polling = false;
                poll
            }
            // A no-op span (or none): nothing to enter.
            None => this.inner.poll(cx),
        };
        match poll {
            Poll::Ready(output) => Poll::Ready((output, this.span.take().unwrap_or(Span::noop()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Gives a lent handle back to its span when a poll ends, normally or by unwinding.
struct Restore<'a> {
    span: &'a mut Option<Span>,
    previous: Option<Handle>,
    identity: (usize, i32),
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let (Some(handle), Some(span)) = (
            take_back(self.previous.take(), self.identity),
            self.span.as_mut(),
        ) {
            span.put_handle(handle);
            if std::thread::panicking() {
                span.record_panic();
            }
        }
    }
}
