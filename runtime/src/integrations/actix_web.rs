//! actix-web (feature `actix-web`): [`SkytraceMiddleware`], an entry span per request, with the
//! same behaviour as the axum layer (`skytrace::integrations::axum`) where that is enabled.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use skytrace::integrations::actix_web::SkytraceMiddleware;
//!
//! async fn user(id: web::Path<u64>) -> String {
//!     format!("user {id}")
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let _agent = skytrace::init(skytrace::Config::from_env()?)?;
//!     actix_web::rt::System::new().block_on(
//!         HttpServer::new(|| {
//!             App::new()
//!                 .wrap(SkytraceMiddleware::new())
//!                 .route("/users/{id}", web::get().to(user))
//!         })
//!         .bind(("127.0.0.1", 8080))?
//!         .run(),
//!     )?;
//!     Ok(())
//! }
//! ```
//!
//! Per request the middleware opens an entry span named `{METHOD}:{route}` from
//! [`HttpRequest::match_pattern`](::actix_web::HttpRequest::match_pattern)
//! (`GET:/users/{id}`; the method alone, `GET`, when no resource matches: see
//! [`SkytraceMiddleware::unmatched`]), continuing the caller's trace
//! from `sw8`, `sw8-correlation` and `sw8-x`. It sets layer Http, component http (49), the tags
//! `http.method`, `url` (scheme, host and path; no query string) and `http.status_code`, and the peer
//! to the client's address. A 5xx response marks the span as failed (logging the handler's
//! error, if it returned one), and so does an error from the inner service. Requests whose
//! path matches `SW_AGENT_TRACE_IGNORE_PATH` are passed through untraced. The handler runs
//! inside the span. `App::wrap` is the place for it: actix resolves the route template from
//! the app's resource map even before routing.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use ::actix_web::http::header::HeaderMap;
use pin_project_lite::pin_project;

pub use super::Unmatched;
use super::{Traced, TracerSlot, end_with_status};
use crate::propagation::Extractor;
use crate::span::Span;
use crate::tracer::Tracer;

/// Reads propagation headers from actix-web's header map.
///
/// ```
/// use skytrace::Extractor;
///
/// let request = actix_web::test::TestRequest::default()
///     .insert_header(("sw8", "1-x"))
///     .to_http_request();
/// assert_eq!(Extractor::get(request.headers(), "sw8"), Some("1-x"));
/// ```
impl Extractor for HeaderMap {
    fn get(&self, key: &str) -> Option<&str> {
        HeaderMap::get(self, key).and_then(|v| v.to_str().ok())
    }
}

/// Reads propagation headers from an actix-web request.
///
/// ```
/// use skytrace::Extractor;
///
/// let request = actix_web::test::TestRequest::default().to_http_request();
/// assert_eq!(Extractor::get(&request, "sw8"), None);
/// ```
impl Extractor for ::actix_web::HttpRequest {
    fn get(&self, key: &str) -> Option<&str> {
        Extractor::get(self.headers(), key)
    }
}

/// The middleware: `App::new().wrap(SkytraceMiddleware::new())`. See the
/// [module documentation](self).
///
/// ```
/// use actix_web::{App, web};
/// use skytrace::integrations::actix_web::SkytraceMiddleware;
///
/// let app = App::new()
///     .wrap(SkytraceMiddleware::new())
///     .route("/users/{id}", web::get().to(|| async { "user" }));
/// # let _ = app;
/// ```
#[derive(Clone, Debug, Default)]
pub struct SkytraceMiddleware {
    tracer: TracerSlot,
    unmatched: Unmatched,
}

impl SkytraceMiddleware {
    /// A middleware that starts entry spans on the global tracer installed by [`crate::init`].
    ///
    /// ```
    /// use actix_web::App;
    /// use skytrace::integrations::actix_web::SkytraceMiddleware;
    ///
    /// let app = App::new().wrap(SkytraceMiddleware::new());
    /// # let _ = app;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A middleware that starts entry spans on `tracer`.
    ///
    /// ```
    /// use actix_web::{App, web};
    /// use skytrace::{Config, DiscardReporter, Tracer};
    /// use skytrace::integrations::actix_web::SkytraceMiddleware;
    ///
    /// let config = Config::builder().service_name("users").build().unwrap();
    /// let tracer = Tracer::new(&config, DiscardReporter::new());
    /// let app = App::new()
    ///     .wrap(SkytraceMiddleware::with_tracer(tracer))
    ///     .route("/users/{id}", web::get().to(|| async { "user" }));
    /// # let _ = app;
    /// ```
    pub fn with_tracer(tracer: Tracer) -> Self {
        SkytraceMiddleware {
            tracer: TracerSlot::Explicit(tracer),
            unmatched: Unmatched::default(),
        }
    }

    /// What to do with requests no resource matches (answered by actix's 404 or the app's
    /// `default_service`): [`Unmatched::Traced`] (the default) names their spans by the method
    /// alone (`GET`), never by the path, which would give OAP an endpoint per scanned or
    /// mistyped URL; [`Unmatched::Untraced`] leaves them untraced. See
    /// [the integrations' documentation](super#requests-no-route-matches).
    ///
    /// ```
    /// use actix_web::{App, web};
    /// use skytrace::integrations::actix_web::{SkytraceMiddleware, Unmatched};
    ///
    /// let app = App::new()
    ///     .wrap(SkytraceMiddleware::new().unmatched(Unmatched::Untraced))
    ///     .route("/users/{id}", web::get().to(|| async { "user" }));
    /// # let _ = app;
    /// ```
    pub fn unmatched(mut self, unmatched: Unmatched) -> Self {
        self.unmatched = unmatched;
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for SkytraceMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = ::actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = ::actix_web::Error;
    type Transform = SkytraceActixService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SkytraceActixService {
            service,
            tracer: self.tracer.clone(),
            unmatched: self.unmatched,
        }))
    }
}

/// The service [`SkytraceMiddleware`] wraps around an app.
///
/// ```
/// use actix_web::{App, test, web};
/// use skytrace::integrations::actix_web::SkytraceMiddleware;
///
/// actix_web::rt::System::new().block_on(async {
///     // The app's service, with `SkytraceActixService` around its routes.
///     let app = test::init_service(
///         App::new()
///             .wrap(SkytraceMiddleware::new())
///             .route("/ping", web::get().to(|| async { "pong" })),
///     )
///     .await;
///     let response = test::call_service(&app, test::TestRequest::get().uri("/ping").to_request()).await;
///     assert_eq!(response.status(), 200);
/// });
/// ```
#[derive(Debug)]
pub struct SkytraceActixService<S> {
    service: S,
    tracer: TracerSlot,
    unmatched: Unmatched,
}

impl<S, B> Service<ServiceRequest> for SkytraceActixService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = ::actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = ::actix_web::Error;
    type Future = ActixResponseFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let span = self.start(&request);
        let inner = {
            let _entered = span.enter();
            self.service.call(request)
        };
        ActixResponseFuture {
            inner: Traced::new(inner, span),
        }
    }
}

impl<S> SkytraceActixService<S> {
    fn start(&self, request: &ServiceRequest) -> Span {
        let path = request.path();
        // The ignore rules judge `path` with the sampling decision (`http_entry`).
        let route = request.match_pattern();
        if route.is_none() && self.unmatched == Unmatched::Untraced {
            return Span::noop();
        }
        self.tracer.http_entry(
            request.method().as_str(),
            route.as_deref(),
            path,
            request.headers(),
            || {
                let info = request.connection_info();
                format!("{}://{}{}", info.scheme(), info.host(), path)
            },
            || request.peer_addr().map(|addr| addr.to_string()),
        )
    }
}

pin_project! {
    /// The response future of [`SkytraceActixService`]: the app's future, polled inside the
    /// entry span, which ends when the response is ready.
    ///
    /// ```
    /// use actix_web::dev::{Service, ServiceRequest};
    /// use skytrace::integrations::actix_web::{ActixResponseFuture, SkytraceActixService};
    ///
    /// // The future type of the middleware's service around an app service `S`.
    /// fn future_of<S: Service<ServiceRequest>>(
    ///     _: &SkytraceActixService<S>,
    /// ) -> Option<ActixResponseFuture<S::Future>> {
    ///     None
    /// }
    /// ```
    pub struct ActixResponseFuture<F> {
        #[pin]
        inner: Traced<F>,
    }
}

impl<F, B> Future for ActixResponseFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, ::actix_web::Error>>,
{
    type Output = Result<ServiceResponse<B>, ::actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (result, span) = std::task::ready!(self.project().inner.poll(cx));
        match &result {
            Ok(response) => {
                let status = response.status().as_u16();
                if status >= 500
                    && let Some(error) = response.response().error()
                {
                    span.record_error(error);
                }
                end_with_status(span, status);
            }
            Err(error) => span.record_error(error),
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ActixResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActixResponseFuture")
            .finish_non_exhaustive()
    }
}
