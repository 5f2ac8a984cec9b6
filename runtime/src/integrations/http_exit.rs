//! What the HTTP client integrations (reqwest, the tower client layer) share: the exit span of
//! a request, its `url` tag, and the error text with its causes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{Traced, end_with_status, join};
use crate::component;
use crate::segment::SpanLayer;
use crate::span::Span;

/// The exit span of a request, a child of the current span.
pub(crate) fn exit_span(
    method: &str,
    url: &str,
    host: Option<&str>,
    port: Option<u16>,
    path: &str,
) -> Span {
    let peer = match (host, port) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    };
    let span = Span::exit(join([method, ":", path]), peer);
    if span.is_recording() {
        span.set_layer(SpanLayer::Http);
        span.set_component(component::HTTP_CLIENT);
        span.add_tag("http.method", method.to_owned());
        span.add_tag("url", url_tag(url));
    }
    span
}

/// A serialized URL without its query, fragment and credentials: the query may carry secrets,
/// and so may `user:password@`.
fn url_tag(url: &str) -> String {
    // In a serialized URL the first `?` or `#` starts the query or fragment: one inside the
    // credentials or the path is percent-encoded.
    let url = &url[..url.find(['?', '#']).unwrap_or(url.len())];
    let Some(after_scheme) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) => join([&url[..after_scheme], &url[after_scheme + at + 1..]]),
        None => url.to_owned(),
    }
}

/// An error with its causes: reqwest's own message ("error sending request for url (…)") says
/// little without them ("…: tcp connect error: Connection refused").
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

pin_project! {
    /// A request being sent, polled inside its exit span, which ends with the response's status
    /// or the error (logged with its causes): the future of the tower client layer's service.
    ///
    /// ```
    /// # #[cfg(feature = "tower")]
    /// # mod demo {
    /// use skytrace::integrations::tower::{ExitFuture, HttpClientService};
    /// use tower_service::Service;
    ///
    /// fn send<S, B>(
    ///     client: &mut HttpClientService<S>,
    ///     request: http::Request<B>,
    /// ) -> ExitFuture<S::Future, http::Response<String>>
    /// where
    ///     S: Service<http::Request<B>, Response = http::Response<String>>,
    ///     S::Error: std::error::Error,
    /// {
    ///     client.call(request)
    /// }
    /// # }
    /// ```
    pub struct ExitFuture<F, R> {
        #[pin]
        inner: Traced<F>,
        status: fn(&R) -> u16,
    }
}

impl<F, R> ExitFuture<F, R> {
    pub(crate) fn new(inner: F, span: Span, status: fn(&R) -> u16) -> Self {
        ExitFuture {
            inner: Traced::new(inner, span),
            status,
        }
    }
}

impl<F, R, E> Future for ExitFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    E: std::error::Error,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (result, span) = std::task::ready!(this.inner.poll(cx));
        match &result {
            Ok(response) => end_with_status(span, (this.status)(response)),
            Err(error) => span.record_error(&ErrorChain(error)),
        }
        Poll::Ready(result)
    }
}

impl<F, R> fmt::Debug for ExitFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::url_tag;

    #[test]
    fn the_url_tag_has_no_query_fragment_or_credentials() {
        assert_eq!(
            url_tag("http://inv:8080/items/7?token=s#x"),
            "http://inv:8080/items/7"
        );
        assert_eq!(url_tag("http://inv/items#frag"), "http://inv/items");
        assert_eq!(
            url_tag("https://user:p%40ss@inv:8443/a?b"),
            "https://inv:8443/a"
        );
        assert_eq!(url_tag("http://user@inv"), "http://inv");
        // An `@` in the path is not a credential.
        assert_eq!(url_tag("http://inv/users/@me"), "http://inv/users/@me");
        assert_eq!(url_tag("data:text/plain,hi"), "data:text/plain,hi");
    }
}
