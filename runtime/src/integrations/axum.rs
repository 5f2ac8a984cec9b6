//! axum (feature `axum` for axum 0.8, `axum-0-7` for axum 0.7): [`SkytraceLayer`], a tower
//! layer that gives every request an entry span. The same layer serves both lines: enable the
//! feature of the one your crate uses (both at once is fine). With axum 0.7, routes are written
//! `/users/:id` and spans are named so (`GET:/users/:id`).
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//! use skytrace::integrations::axum::SkytraceLayer;
//!
//! async fn user(axum::extract::Path(id): axum::extract::Path<u64>) -> String {
//!     format!("user {id}")
//! }
//!
//! let app = Router::new()
//!     .route("/users/{id}", get(user))
//!     // `Router::layer`, so the layer runs after routing and sees the route template.
//!     .layer(SkytraceLayer::new());
//! // Served with connect info, spans record the client's address as their peer:
//! // `axum::serve(listener, app).await` (see `examples/axum_server.rs`).
//! let app = app.into_make_service_with_connect_info::<SocketAddr>();
//! # let _ = app;
//! ```
//!
//! Per request the layer opens an entry span named `{METHOD}:{route}` from axum's
//! `MatchedPath` (`GET:/users/{id}`, never `GET:/users/42`), continuing the caller's trace
//! from `sw8`, `sw8-correlation` and `sw8-x`. It
//! sets layer Http, component http (49), the tags `http.method`, `url` (without the query
//! string) and `http.status_code`, and the peer to the client's address when the router is served
//! with `ConnectInfo` (`into_make_service_with_connect_info::<SocketAddr>()`). A 5xx response
//! or an error from the inner service marks the span as failed. Requests whose path matches
//! `SW_AGENT_TRACE_IGNORE_PATH` are passed through untraced.
//!
//! A request no route matches (answered by the router's 404 or by a `Router::fallback`) is
//! named by its method alone, `GET`: never by its
//! path, which would give OAP an endpoint per scanned or mistyped URL. With
//! [`SkytraceLayer::unmatched`]`(`[`Unmatched::Untraced`]`)` such requests are not traced at all.
//! See [the integrations' documentation](super#requests-no-route-matches) for what the official
//! agents do.
//!
//! ```
//! use axum::{Router, routing::get};
//! use skytrace::integrations::axum::{SkytraceLayer, Unmatched};
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     // `GET /nope` is not traced; `GET /users/7` is `GET:/users/{id}`.
//!     .layer(SkytraceLayer::new().unmatched(Unmatched::Untraced));
//! ```
//!
//! The handler future is polled inside the span, so every span it opens — `#[trace]`ed
//! functions, exit spans of clients — is a child of the entry span, whichever worker thread
//! polls it.
//!
//! ## Where to add the layer
//!
//! axum inserts `MatchedPath` while routing, so the layer must run after routing: add it with
//! `Router::layer` (which wraps every route, and the fallback) or `Router::route_layer` (routes
//! only: requests no route matches are then not traced). Wrapped around the whole router from outside (for example with
//! `tower::ServiceBuilder` around `Router`), the layer runs before routing, sees no route and
//! names every span by its method alone. Routes of nested routers carry the full template
//! (`/api/users/{id}`).
//!
//! ## The wrong axum
//!
//! With an axum whose feature is not enabled (axum 0.7 in the crate, only `axum` on skytrace),
//! `Router::layer(SkytraceLayer::new())` does not compile, and the error says which feature to
//! enable: "skytrace's axum layer was not built for requests of `axum_core::body::Body`", with
//! the note "skytrace supports axum 0.8 (feature `axum`) and axum 0.7 (feature `axum-0-7`)".

use std::fmt;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

pub use super::Unmatched;
pub use super::http_entry::ResponseFuture;
use super::{TracerSlot, http_entry};
use crate::span::Span;
use crate::tracer::Tracer;

/// A [`tower_layer::Layer`] that traces every request of an axum router; see the
/// [module documentation](self).
///
/// ```
/// use axum::{Router, routing::get};
/// use skytrace::integrations::axum::SkytraceLayer;
///
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(SkytraceLayer::new());
/// ```
#[derive(Clone, Debug, Default)]
pub struct SkytraceLayer {
    tracer: TracerSlot,
    unmatched: Unmatched,
}

impl SkytraceLayer {
    /// A layer that starts entry spans on the global tracer installed by [`crate::init`] (when
    /// none is installed, requests are not traced).
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use skytrace::integrations::axum::SkytraceLayer;
    ///
    /// let api = Router::new().route("/orders/{id}", get(|| async { "order" }));
    /// // Requests no route matches stay untraced with `route_layer`.
    /// let app: Router = api.route_layer(SkytraceLayer::new());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer that starts entry spans on `tracer`, for a process that hosts several services.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use skytrace::{Config, DiscardReporter, Tracer};
    /// use skytrace::integrations::axum::SkytraceLayer;
    ///
    /// let config = Config::builder().service_name("orders").build().unwrap();
    /// let tracer = Tracer::new(&config, DiscardReporter::new());
    /// let app: Router = Router::new()
    ///     .route("/orders/{id}", get(|| async { "order" }))
    ///     .layer(SkytraceLayer::with_tracer(tracer));
    /// ```
    pub fn with_tracer(tracer: Tracer) -> Self {
        SkytraceLayer {
            tracer: TracerSlot::Explicit(tracer),
            unmatched: Unmatched::default(),
        }
    }

    /// What to do with requests no route matches: [`Unmatched::Traced`] (the default) names
    /// their spans by the method alone (`GET`); [`Unmatched::Untraced`] leaves them untraced.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use skytrace::integrations::axum::{SkytraceLayer, Unmatched};
    ///
    /// let app: Router = Router::new()
    ///     .route("/orders/{id}", get(|| async { "order" }))
    ///     .fallback(|| async { "not here" })
    ///     // The fallback's requests are not traced.
    ///     .layer(SkytraceLayer::new().unmatched(Unmatched::Untraced));
    /// ```
    pub fn unmatched(mut self, unmatched: Unmatched) -> Self {
        self.unmatched = unmatched;
        self
    }
}

impl<S> Layer<S> for SkytraceLayer {
    type Service = SkytraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SkytraceService {
            inner,
            tracer: self.tracer.clone(),
            unmatched: self.unmatched,
        }
    }
}

/// The service [`SkytraceLayer`] wraps around each route (or around any tower service of
/// `http::Request` → `http::Response`).
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use skytrace::integrations::axum::{SkytraceLayer, SkytraceService};
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let router = Router::new().route("/ping", get(|| async { "pong" }));
/// let mut service: SkytraceService<Router> = SkytraceLayer::new().layer(router);
/// let response = service
///     .call(http::Request::get("/ping").body(Body::empty()).unwrap())
///     .await
///     .unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SkytraceService<S> {
    inner: S,
    tracer: TracerSlot,
    unmatched: Unmatched,
}

impl<S, B, ResBody> Service<http::Request<B>> for SkytraceService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + 'static,
    S::Error: fmt::Display,
    // What axum routers serve: the bound makes the wrong axum line a clear compile error.
    B: line::Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = self.start(&request);
        http_entry::call(&mut self.inner, request, span, !line::is_route::<S>())
    }
}

impl<S> SkytraceService<S> {
    fn start<B>(&self, request: &http::Request<B>) -> Span {
        let extensions = request.extensions();
        // Inside a nested router the URI is relative to the nest: the original one is whole.
        let uri = line::original_uri(extensions).unwrap_or(request.uri());
        http_entry::start(
            &self.tracer,
            self.unmatched,
            request,
            uri,
            || line::matched_path(extensions),
            || line::client_addr(extensions).map(|addr| addr.to_string()),
        )
    }
}

/// What axum puts into a request while routing, read for each enabled line (the layer is the
/// same code for all of them; only these types differ).
mod line {
    use std::net::SocketAddr;

    /// The request body of the axum lines skytrace is built for.
    #[diagnostic::on_unimplemented(
        message = "skytrace's axum layer was not built for requests of `{Self}`",
        label = "not the request body of an axum line skytrace's features enable",
        note = "skytrace supports axum 0.8 (feature `axum`) and axum 0.7 (feature `axum-0-7`): \
                enable the one your crate's `axum` is"
    )]
    pub trait Body {}

    #[cfg(feature = "axum")]
    impl Body for ::axum::body::Body {}
    #[cfg(feature = "axum-0-7")]
    impl Body for ::axum_0_7::body::Body {}

    /// Whether `S` is axum's `Route`, what `Router::layer` wraps each route's service in. Its
    /// `call` makes a future (a clone of the boxed service, the request, its method) and runs
    /// nothing else: the layers below and the handler run when that future is polled, inside
    /// the span. Entering the span around the call as well cost ≈ 190 instructions a request
    /// for nothing. Decided at compile time.
    pub(super) fn is_route<S: 'static>() -> bool {
        use std::any::TypeId;
        #[cfg(feature = "axum")]
        if TypeId::of::<S>() == TypeId::of::<::axum::routing::Route>() {
            return true;
        }
        #[cfg(feature = "axum-0-7")]
        if TypeId::of::<S>() == TypeId::of::<::axum_0_7::routing::Route>() {
            return true;
        }
        false
    }

    /// The request's URI before any `Router::nest` cut it.
    pub(super) fn original_uri(extensions: &http::Extensions) -> Option<&http::Uri> {
        #[cfg(feature = "axum")]
        if let Some(uri) = extensions.get::<::axum::extract::OriginalUri>() {
            return Some(&uri.0);
        }
        #[cfg(feature = "axum-0-7")]
        if let Some(uri) = extensions.get::<::axum_0_7::extract::OriginalUri>() {
            return Some(&uri.0);
        }
        None
    }

    /// The template of the route that matched, if one did.
    pub(super) fn matched_path(extensions: &http::Extensions) -> Option<&str> {
        #[cfg(feature = "axum")]
        if let Some(path) = extensions.get::<::axum::extract::MatchedPath>() {
            return Some(path.as_str());
        }
        #[cfg(feature = "axum-0-7")]
        if let Some(path) = extensions.get::<::axum_0_7::extract::MatchedPath>() {
            return Some(path.as_str());
        }
        None
    }

    /// The client's address, when the router is served with connect info.
    pub(super) fn client_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
        #[cfg(feature = "axum")]
        if let Some(info) = extensions.get::<::axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0);
        }
        #[cfg(feature = "axum-0-7")]
        if let Some(info) = extensions.get::<::axum_0_7::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0);
        }
        None
    }
}
