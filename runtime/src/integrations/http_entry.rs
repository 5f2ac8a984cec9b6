//! What the HTTP server integrations on tower (the axum layer, the generic tower layer) share:
//! starting a request's entry span, calling the inner service inside it, and the response
//! future that ends it with the status.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::{Traced, TracerSlot, Unmatched, end_with_status, server_url};
use crate::span::Span;

/// The entry span of `request`, whose whole URI is `uri`: no span for an ignored path, or
/// (with [`Unmatched::Untraced`]) for one `route` finds no route for; `peer` is the client's
/// address when known. `peer` runs only for a request that is traced; `route` runs before the
/// ignore rules judge the path, which they do with the sampling decision (one look at the
/// tracer and its settings per request, not two).
pub(crate) fn start<B, R: AsRef<str>>(
    tracer: &TracerSlot,
    unmatched: Unmatched,
    request: &http::Request<B>,
    uri: &http::Uri,
    route: impl FnOnce() -> Option<R>,
    peer: impl FnOnce() -> Option<String>,
) -> Span {
    let path = uri.path();
    let route = route();
    if route.is_none() && unmatched == Unmatched::Untraced {
        return Span::noop();
    }
    tracer.http_entry(
        request.method().as_str(),
        route.as_ref().map(AsRef::as_ref),
        path,
        request.headers(),
        || server_url(uri, host(request.headers()), path),
        peer,
    )
}

/// The `Host` header, for the `url` tag: looked up only for a request that records.
fn host(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
}

/// Calls `inner` with `request` inside `span` (only around its polls when `call_runs_code` is
/// false: see the axum layer's `line::is_route`), and returns the future that ends it.
#[inline]
pub(crate) fn call<S, B>(
    inner: &mut S,
    request: http::Request<B>,
    span: Span,
    call_runs_code: bool,
) -> ResponseFuture<S::Future>
where
    S: Service<http::Request<B>>,
{
    let inner = if call_runs_code {
        // Work the inner service does before returning its future is inside the span too.
        let _entered = span.enter();
        inner.call(request)
    } else {
        inner.call(request)
    };
    ResponseFuture {
        inner: Traced::new(inner, span),
    }
}

pin_project! {
    /// The response future of the HTTP server layers (axum's `SkytraceService`, the tower
    /// `HttpServerService`): the inner service's future, polled inside the entry span, which
    /// ends when the response is ready (tagged `http.status_code`; a 5xx or an error fails it).
    ///
    /// ```
    /// # #[cfg(feature = "tower")]
    /// # mod demo {
    /// use skytrace::integrations::tower::{HttpServerService, ResponseFuture};
    /// use tower_service::Service;
    ///
    /// fn serve<S, B>(
    ///     service: &mut HttpServerService<S>,
    ///     request: http::Request<B>,
    /// ) -> ResponseFuture<S::Future>
    /// where
    ///     S: Service<http::Request<B>, Response = http::Response<String>>,
    ///     S::Error: std::fmt::Display,
    /// {
    ///     service.call(request)
    /// }
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Traced<F>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    E: fmt::Display,
{
    type Output = Result<http::Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (result, span) = std::task::ready!(self.project().inner.poll(cx));
        match &result {
            Ok(response) => end_with_status(span, response.status().as_u16()),
            Err(error) => span.record_error(error),
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
