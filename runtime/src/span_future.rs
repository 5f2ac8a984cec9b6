//! [`Traced`]: a future polled with a span entered, handing the span back with its output (what
//! [`crate::Instrument::in_span`], spawned tasks and the integrations build on).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::span::Span;

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
    #[inline]
    pub(crate) fn new(inner: F, span: Span) -> Self {
        Traced {
            inner,
            span: Some(span),
            polling: false,
        }
    }
}

impl<F> Traced<F> {
    /// The span, to be replaced between polls (a spawned task moving to a new segment).
    pub(crate) fn span_slot(self: Pin<&mut Self>) -> &mut Option<Span> {
        self.project().span
    }

    pub(crate) fn span(&self) -> Option<&Span> {
        self.span.as_ref()
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
