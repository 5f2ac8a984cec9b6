//! Any tower or hyper HTTP service and client (feature `tower`): [`HttpServerLayer`] gives every
//! request of a service of `http::Request` → `http::Response` an entry span, and
//! [`HttpClientLayer`] gives every request sent through a client service (hyper-util's
//! `Client`, or any tower stack of `http::Request` → `http::Response`) an exit span with `sw8`
//! in its headers. No framework is needed: a plain hyper server, or any framework that serves
//! tower services (warp through `warp::service`, tonic's HTTP side, …).
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::{Ready, ready};
//! use std::task::{Context, Poll};
//!
//! use skytrace::integrations::tower::HttpServerLayer;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! /// The application: any tower service of `http::Request`.
//! #[derive(Clone)]
//! struct Hello;
//!
//! impl Service<http::Request<String>> for Hello {
//!     type Response = http::Response<String>;
//!     type Error = Infallible;
//!     type Future = Ready<Result<Self::Response, Infallible>>;
//!
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
//!         Poll::Ready(Ok(()))
//!     }
//!
//!     fn call(&mut self, _: http::Request<String>) -> Self::Future {
//!         ready(Ok(http::Response::new("hello".to_owned())))
//!     }
//! }
//!
//! // Per connection (hyper's accept loop knows the client's address):
//! # let client: std::net::SocketAddr = "127.0.0.1:50000".parse().unwrap();
//! let service = HttpServerLayer::new()
//!     .client_addr(client)
//!     // Frameworks that know the route template name spans after it; without a hook
//!     // spans are named `{METHOD}:{path}`.
//!     .route_name(|head| head.uri.path().starts_with("/users/").then(|| "/users/{id}".to_owned()))
//!     .layer(Hello);
//! # let _ = service;
//! ```
//!
//! ## Server spans
//!
//! Per request the layer opens an entry span continuing the caller's trace from `sw8`,
//! `sw8-correlation` and `sw8-x`, with layer Http, component http (49), the tags `http.method`,
//! `url` (without the query string) and `http.status_code`, and the peer given with
//! [`HttpServerLayer::client_addr`]. A 5xx or an error from the inner service fails it; paths
//! matching `SW_AGENT_TRACE_IGNORE_PATH` are not traced. Its name is `{METHOD}:{route}` where
//! [`HttpServerLayer::route_name`] gives the route (`None` from the hook: no route matched,
//! named `{METHOD}` alone, or untraced with [`Unmatched::Untraced`], as with the axum layer).
//! Without a hook the layer knows no route and names the span `{METHOD}:{path}`, as the Java
//! agent's Tomcat plugin does: every distinct path is then an endpoint in OAP, so a service whose
//! paths carry ids (`/users/42`) should give a hook.
//!
//! ## Client spans
//!
//! Per request, an exit span, child of the current span, named `{METHOD}:{path}`, with peer =
//! the URI's `host:port` (the scheme's default port when none is given; the `Host` header for a
//! relative URI), layer Http, component HttpClient (2) and the tags `http.method`, `url` (no
//! query, fragment or credentials) and `http.status_code`, as the reqwest integration. `sw8` (and
//! `sw8-correlation` / `sw8-x`) are written onto the request. A 5xx fails the span; so does an
//! error of the client, logged with its causes. The span ends when the response's headers have
//! arrived. Outside any trace the request goes out unchanged.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

pub use super::Unmatched;
pub use super::http_entry::ResponseFuture;
pub use super::http_exit::ExitFuture;
use super::{TracerSlot, http_entry, http_exit};
use crate::tracer::Tracer;

/// What a route hook sees of a request: its method, URI, headers and extensions (where routers
/// put what they matched).
///
/// ```
/// use skytrace::integrations::tower::{HttpServerLayer, RequestHead};
///
/// fn route(head: &RequestHead<'_>) -> Option<String> {
///     // A router that stores its match as an extension.
///     head.extensions.get::<&'static str>().map(|r| (*r).to_owned())
/// }
/// let layer = HttpServerLayer::new().route_name(route);
/// # let _ = layer;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request's method.
    pub method: &'a http::Method,
    /// The request's URI.
    pub uri: &'a http::Uri,
    /// The request's headers.
    pub headers: &'a http::HeaderMap,
    /// The request's extensions.
    pub extensions: &'a http::Extensions,
}

type RouteHook = Arc<dyn Fn(&RequestHead<'_>) -> Option<String> + Send + Sync>;

/// A [`tower_layer::Layer`] that gives every request an entry span; see the
/// [module documentation](self).
///
/// ```
/// use skytrace::integrations::tower::{HttpServerLayer, Unmatched};
///
/// // Requests the hook finds no route for are not traced.
/// let layer = HttpServerLayer::new()
///     .route_name(|head| (head.uri.path() == "/health").then(|| "/health".to_owned()))
///     .unmatched(Unmatched::Untraced);
/// # let _ = layer;
/// ```
#[derive(Clone, Default)]
pub struct HttpServerLayer {
    tracer: TracerSlot,
    unmatched: Unmatched,
    route: Option<RouteHook>,
    peer: Option<Arc<str>>,
}

impl HttpServerLayer {
    /// A layer that starts entry spans on the global tracer installed by [`crate::init`].
    ///
    /// ```
    /// let layer = skytrace::integrations::tower::HttpServerLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer that starts entry spans on `tracer`.
    ///
    /// ```
    /// use skytrace::{Config, DiscardReporter, Tracer};
    /// use skytrace::integrations::tower::HttpServerLayer;
    ///
    /// let config = Config::builder().service_name("orders").build().unwrap();
    /// let layer = HttpServerLayer::with_tracer(Tracer::new(&config, DiscardReporter::new()));
    /// # let _ = layer;
    /// ```
    pub fn with_tracer(tracer: Tracer) -> Self {
        HttpServerLayer {
            tracer: TracerSlot::Explicit(tracer),
            ..Self::default()
        }
    }

    /// The hook naming a request's route (`/users/{id}`): spans are named `{METHOD}:{route}`,
    /// and a request it returns `None` for is one no route matched. It runs for every request,
    /// before the ignore rules (`SW_AGENT_TRACE_IGNORE_PATH`) judge the path (they do so with the
    /// sampling decision, in one look at the settings): keep it cheap.
    ///
    /// ```
    /// use skytrace::integrations::tower::HttpServerLayer;
    ///
    /// let layer = HttpServerLayer::new().route_name(|head| {
    ///     let id = head.uri.path().strip_prefix("/orders/")?;
    ///     id.parse::<u64>().ok().map(|_| "/orders/{id}".to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn route_name(
        mut self,
        hook: impl Fn(&RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.route = Some(Arc::new(hook));
        self
    }

    /// What to do with requests the route hook finds no route for; see [`Unmatched`].
    ///
    /// ```
    /// use skytrace::integrations::tower::{HttpServerLayer, Unmatched};
    ///
    /// let layer = HttpServerLayer::new().unmatched(Unmatched::Untraced);
    /// # let _ = layer;
    /// ```
    pub fn unmatched(mut self, unmatched: Unmatched) -> Self {
        self.unmatched = unmatched;
        self
    }

    /// The client's address, recorded as the peer of every span (a layer per connection).
    ///
    /// ```
    /// use skytrace::integrations::tower::HttpServerLayer;
    ///
    /// let remote: std::net::SocketAddr = "10.0.0.7:51234".parse().unwrap();
    /// let layer = HttpServerLayer::new().client_addr(remote);
    /// # let _ = layer;
    /// ```
    pub fn client_addr(mut self, addr: SocketAddr) -> Self {
        self.peer = Some(Arc::from(addr.to_string()));
        self
    }
}

impl fmt::Debug for HttpServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerLayer")
            .field("unmatched", &self.unmatched)
            .field("route_name", &self.route.is_some())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HttpServerLayer {
    type Service = HttpServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpServerService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`HttpServerLayer`] wraps around an HTTP service.
///
/// ```
/// use skytrace::integrations::tower::{HttpServerLayer, HttpServerService};
/// use tower_layer::Layer;
///
/// # #[derive(Clone)] struct App;
/// let service: HttpServerService<App> = HttpServerLayer::new().layer(App);
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct HttpServerService<S> {
    inner: S,
    layer: HttpServerLayer,
}

impl<S, B, ResBody> Service<http::Request<B>> for HttpServerService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let layer = &self.layer;
        let span = http_entry::start(
            &layer.tracer,
            layer.unmatched,
            &request,
            request.uri(),
            || match &layer.route {
                Some(hook) => hook(&RequestHead {
                    method: request.method(),
                    uri: request.uri(),
                    headers: request.headers(),
                    extensions: request.extensions(),
                }),
                None => Some(request.uri().path().to_owned()),
            },
            || layer.peer.as_deref().map(str::to_owned),
        );
        http_entry::call(&mut self.inner, request, span, true)
    }
}

/// A [`tower_layer::Layer`] that gives every request sent through an HTTP client service an
/// exit span and writes `sw8` onto it; see the [module documentation](self).
///
/// ```no_run
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use skytrace::integrations::tower::HttpClientLayer;
/// use tower_layer::Layer;
/// use tower_service::Service;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
/// let mut client = HttpClientLayer::new().layer(client);
/// // Inside a traced request:
/// let request = http::Request::get("http://inventory:8080/items/7").body(Empty::new())?;
/// let response = client.call(request).await?;
/// # let _ = response;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct HttpClientLayer {
    _private: (),
}

impl HttpClientLayer {
    /// The layer.
    ///
    /// ```
    /// let layer = skytrace::integrations::tower::HttpClientLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for HttpClientLayer {
    type Service = HttpClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpClientService { inner }
    }
}

/// The service [`HttpClientLayer`] wraps around an HTTP client.
///
/// ```
/// use skytrace::integrations::tower::{HttpClientLayer, HttpClientService};
/// use tower_layer::Layer;
///
/// # #[derive(Clone)] struct Client;
/// let client: HttpClientService<Client> = HttpClientLayer::new().layer(Client);
/// # let _ = client;
/// ```
#[derive(Clone, Debug)]
pub struct HttpClientService<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for HttpClientService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: std::error::Error,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ExitFuture<S::Future, http::Response<ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let uri = request.uri();
        let host = uri.host().map(str::to_owned).or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        let span = http_exit::exit_span(
            request.method().as_str(),
            &uri.to_string(),
            host.as_deref(),
            port.filter(|_| uri.host().is_some()),
            uri.path(),
        );
        span.inject(request.headers_mut());
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ExitFuture::new(inner, span, |response| response.status().as_u16())
    }
}
