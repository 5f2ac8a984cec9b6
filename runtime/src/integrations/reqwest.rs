//! reqwest (feature `reqwest` for reqwest 0.13, `reqwest-0-12` for reqwest 0.12): an exit span
//! per outgoing request, with `sw8` in its headers.
//!
//! Two extension traits, no middleware stack and no extra dependency:
//! [`RequestBuilderExt::send_traced`] instead of `send`, and
//! [`TracedClientExt::execute_traced`] instead of `Client::execute`. The same code works on
//! both reqwest lines: enable the feature of the one your crate uses (both at once is fine, for
//! a tree that has both).
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
//! HttpClient (2) and the tags `http.method`, `url` (without the query string, the fragment
//! and any credentials) and `http.status_code`. It fails when the request fails (connection
//! refused, timeout, …; the error is logged) or the response is a 5xx. `sw8` (and
//! `sw8-correlation` / `sw8-x`) are written onto the request before it is sent. The span ends
//! when the response's headers have arrived. Outside any trace the request is sent unchanged.
//!
//! With a reqwest whose feature is not enabled (reqwest 0.12 in the crate, only `reqwest` on
//! skytrace), `send_traced` does not compile and the error says which feature to enable:
//!
//! ```compile_fail
//! use skytrace::integrations::reqwest::RequestBuilderExt;
//!
//! // Not a reqwest `RequestBuilder` of an enabled line: "skytrace's reqwest integration was
//! // not built for `String`", with the features to choose from.
//! let _ = String::from("http://inventory:8080").send_traced();
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::http_exit::{ExitFuture, exit_span};
use crate::span::Span;

/// `execute_traced` for a reqwest `Client` (of each enabled line).
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
    fn execute_traced(
        &self,
        request: <Self as line::Client>::Request,
    ) -> TracedPending<<Self as line::Client>::Response, <Self as line::Client>::Error>
    where
        Self: line::Client;
}

// For every type, so that the method is found on a reqwest of a line skytrace was not built
// for and the error is the hint of `line::Client` rather than "no method named …".
impl<T: ?Sized> TracedClientExt for T {
    fn execute_traced(
        &self,
        request: <Self as line::Client>::Request,
    ) -> TracedPending<<Self as line::Client>::Response, <Self as line::Client>::Error>
    where
        Self: line::Client,
    {
        line::Client::execute_traced(self, request)
    }
}

/// `send_traced` for a reqwest `RequestBuilder` (of each enabled line).
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
    fn send_traced(
        self,
    ) -> TracedPending<<Self as line::Builder>::Response, <Self as line::Builder>::Error>
    where
        Self: line::Builder;
}

impl<T> RequestBuilderExt for T {
    fn send_traced(
        self,
    ) -> TracedPending<<Self as line::Builder>::Response, <Self as line::Builder>::Error>
    where
        Self: line::Builder,
    {
        line::Builder::send_traced(self)
    }
}

/// What the traits need of one reqwest line: implemented for the `Client` and `RequestBuilder`
/// of each enabled line (a module of its own, so that users cannot name them and they can
/// grow).
mod line {
    use super::TracedPending;

    #[diagnostic::on_unimplemented(
        message = "skytrace's reqwest integration was not built for `{Self}`",
        label = "not a reqwest `Client` of a line skytrace's features enable",
        note = "skytrace supports reqwest 0.13 (feature `reqwest`) and reqwest 0.12 (feature \
                `reqwest-0-12`): enable the one your crate's `reqwest` is"
    )]
    pub trait Client {
        type Request;
        type Response;
        type Error;
        fn execute_traced(
            &self,
            request: Self::Request,
        ) -> TracedPending<Self::Response, Self::Error>;
    }

    #[diagnostic::on_unimplemented(
        message = "skytrace's reqwest integration was not built for `{Self}`",
        label = "not a reqwest `RequestBuilder` of a line skytrace's features enable",
        note = "skytrace supports reqwest 0.13 (feature `reqwest`) and reqwest 0.12 (feature \
                `reqwest-0-12`): enable the one your crate's `reqwest` is"
    )]
    pub trait Builder: Sized {
        type Response;
        type Error;
        fn send_traced(self) -> TracedPending<Self::Response, Self::Error>;
    }
}

/// The two traits for one reqwest line, `$reqwest` its crate. What differs between lines is
/// only the types' paths: the work is in the functions below, shared.
macro_rules! reqwest_line {
    ($reqwest:ident) => {
        impl line::Client for ::$reqwest::Client {
            type Request = ::$reqwest::Request;
            type Response = ::$reqwest::Response;
            type Error = ::$reqwest::Error;

            fn execute_traced(
                &self,
                mut request: ::$reqwest::Request,
            ) -> TracedPending<::$reqwest::Response, ::$reqwest::Error> {
                let url = request.url();
                let span = exit_span(
                    request.method().as_str(),
                    url.as_str(),
                    url.host_str(),
                    url.port_or_known_default(),
                    url.path(),
                );
                span.inject(request.headers_mut());
                traced(self.execute(request), span, |response| {
                    response.status().as_u16()
                })
            }
        }

        impl line::Builder for ::$reqwest::RequestBuilder {
            type Response = ::$reqwest::Response;
            type Error = ::$reqwest::Error;

            fn send_traced(self) -> TracedPending<::$reqwest::Response, ::$reqwest::Error> {
                let (client, request) = self.build_split();
                match request {
                    Ok(request) => line::Client::execute_traced(&client, request),
                    Err(error) => TracedPending::ready(Err(error)),
                }
            }
        }
    };
}

#[cfg(feature = "reqwest")]
reqwest_line!(reqwest);
#[cfg(feature = "reqwest-0-12")]
reqwest_line!(reqwest_0_12);

/// `future` (the request, sent), polled inside `span`, which ends with the response's status
/// or the error.
fn traced<R, E>(
    future: impl Future<Output = Result<R, E>> + Send + 'static,
    span: Span,
    status: fn(&R) -> u16,
) -> TracedPending<R, E>
where
    R: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    TracedPending {
        inner: Box::pin(ExitFuture::new(future, span, status)),
    }
}

/// The future of a traced request: resolves to the response (or the error) once its headers
/// have arrived, ending the exit span. `R` and `E` are the reqwest line's `Response` and
/// `Error`.
///
/// ```no_run
/// use skytrace::integrations::reqwest::{RequestBuilderExt, TracedPending};
///
/// # async fn demo(client: reqwest::Client) -> Result<(), reqwest::Error> {
/// let pending: TracedPending<reqwest::Response, reqwest::Error> =
///     client.get("http://inventory:8080/items").send_traced();
/// let response = pending.await?;
/// # let _ = response;
/// # Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct TracedPending<R, E> {
    inner: Pin<Box<dyn Future<Output = Result<R, E>> + Send>>,
}

impl<R: Send + 'static, E: Send + 'static> TracedPending<R, E> {
    fn ready(result: Result<R, E>) -> Self {
        TracedPending {
            inner: Box::pin(std::future::ready(result)),
        }
    }
}

impl<R, E> Future for TracedPending<R, E> {
    type Output = Result<R, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<R, E> fmt::Debug for TracedPending<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedPending").finish_non_exhaustive()
    }
}
