//! reqwest (feature `reqwest`): an exit span per outgoing request, with `sw8` in its headers.
//!
//! Two extension traits, no middleware stack and no extra dependency:
//! [`RequestBuilderExt::send_traced`] instead of `send`, and
//! [`TracedClientExt::execute_traced`] instead of `Client::execute`.
//!
//! ```no_run
//! use skytrace::integrations::reqwest::RequestBuilderExt;
//!
//! # async fn demo(client: reqwest::Client) -> Result<(), reqwest::Error> {
//! // Inside a traced request handler:
//! let response = client
//!     .get("http://inventory:8080/items/7")
//!     .send_traced()
//!     .await?;
//! # let _ = response;
//! # Ok(()) }
//! ```
//!
//! The exit span is a child of the current span, named `{METHOD}:{path}`, with peer = the
//! URL's `host:port` (the scheme's default port when none is given), layer Http, component
//! http (49) and the tags `http.method`, `url` (without the query string) and `http.status_code`.
//! It fails when the request fails (connection refused, timeout, …; the error is logged) or the
//! response is a 5xx. `sw8` (and `sw8-correlation` / `sw8-x`) are written onto the request
//! before it is sent. The span ends when the response's headers have arrived. Outside any trace
//! the request is sent unchanged.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::reqwest::{Client, Request, RequestBuilder, Response};

use super::{Traced, end_with_status, join};
use crate::component;
use crate::segment::SpanLayer;
use crate::span::Span;

/// `execute_traced` for [`reqwest::Client`].
///
/// ```no_run
/// use skytrace::integrations::reqwest::TracedClientExt;
///
/// # async fn demo() -> Result<(), reqwest::Error> {
/// let client = reqwest::Client::new();
/// let request = client.get("http://inventory:8080/items/7").build()?;
/// let response = client.execute_traced(request).await?;
/// # let _ = response;
/// # Ok(()) }
/// ```
pub trait TracedClientExt {
    /// Sends `request` like `Client::execute`, inside an exit span; see the
    /// [module documentation](self).
    fn execute_traced(&self, request: Request) -> TracedPending;
}

impl TracedClientExt for Client {
    fn execute_traced(&self, mut request: Request) -> TracedPending {
        let span = exit_span(&request);
        span.inject(request.headers_mut());
        let pending = Traced::new(self.execute(request), span);
        TracedPending {
            inner: Box::pin(async move {
                let (result, span) = pending.await;
                match &result {
                    Ok(response) => end_with_status(span, response.status().as_u16()),
                    Err(error) => span.record_error(&ErrorChain(error)),
                }
                result
            }),
        }
    }
}

/// `send_traced` for [`reqwest::RequestBuilder`].
///
/// ```no_run
/// use skytrace::integrations::reqwest::RequestBuilderExt;
///
/// # async fn demo(client: reqwest::Client) -> Result<(), reqwest::Error> {
/// let response = client.post("http://payments:8080/charge").send_traced().await?;
/// # let _ = response;
/// # Ok(()) }
/// ```
pub trait RequestBuilderExt {
    /// Sends the request like `RequestBuilder::send`, inside an exit span; see the
    /// [module documentation](self).
    fn send_traced(self) -> TracedPending;
}

impl RequestBuilderExt for RequestBuilder {
    fn send_traced(self) -> TracedPending {
        let (client, request) = self.build_split();
        match request {
            Ok(request) => client.execute_traced(request),
            Err(error) => TracedPending {
                inner: Box::pin(std::future::ready(Err(error))),
            },
        }
    }
}

/// The exit span of `request`, a child of the current span.
fn exit_span(request: &Request) -> Span {
    let url = request.url();
    let peer = match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    };
    let method = request.method().as_str();
    let span = Span::exit(join([method, ":", url.path()]), peer);
    if span.is_recording() {
        span.set_layer(SpanLayer::Http);
        span.set_component(component::HTTP_CLIENT);
        span.add_tag("http.method", method.to_owned());
        let mut tagged = url.clone();
        tagged.set_query(None);
        tagged.set_fragment(None);
        span.add_tag("url", String::from(tagged));
    }
    span
}

/// An error with its causes: reqwest's own message ("error sending request for url (…)") says
/// little without them ("…: tcp connect error: Connection refused").
struct ErrorChain<'a>(&'a ::reqwest::Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The future of a traced request: resolves to the response (or the error) once its headers
/// have arrived, ending the exit span.
///
/// ```no_run
/// use skytrace::integrations::reqwest::{RequestBuilderExt, TracedPending};
///
/// # async fn demo(client: reqwest::Client) -> Result<(), reqwest::Error> {
/// let pending: TracedPending = client.get("http://inventory:8080/items").send_traced();
/// let response = pending.await?;
/// # let _ = response;
/// # Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct TracedPending {
    inner: Pin<Box<dyn Future<Output = Result<Response, ::reqwest::Error>> + Send>>,
}

impl Future for TracedPending {
    type Output = Result<Response, ::reqwest::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for TracedPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedPending").finish_non_exhaustive()
    }
}
