//! tonic (feature `tonic`): a server layer ([`GrpcServerLayer`]) giving every call an entry span,
//! a client layer ([`GrpcClientLayer`]) giving every call an exit span and the `sw8` header the
//! callee continues from, and [`Extractor`] / [`Injector`] for tonic's
//! [`MetadataMap`] and [`tonic::Request`].
//!
//! ```no_run
//! use skytrace::integrations::tonic::{GrpcClientLayer, GrpcServerLayer};
//! use tonic::transport::{Endpoint, Server};
//! use tower_layer::Layer;
//!
//! # type Body = tonic::body::Body;
//! // `service`: a generated server, e.g. `GreeterServer::new(MyGreeter)`.
//! async fn serve<S>(service: S) -> Result<(), tonic::transport::Error>
//! where
//!     S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
//!         + Clone + Send + 'static,
//!     S::Future: Send + 'static,
//!     S::Error: std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>> + Send,
//! {
//!     // Every call becomes an entry span named `/pkg.Service/Method`. (With tonic's `router`
//!     // feature: `.layer(…).add_service(a).add_service(b).serve(addr)`.)
//!     Server::builder()
//!         .layer(GrpcServerLayer::new())
//!         .serve("127.0.0.1:50051".parse().unwrap(), service)
//!         .await
//! }
//!
//! async fn client() -> Result<(), tonic::transport::Error> {
//!     // Every call becomes an exit span with `sw8` in its metadata. Hand the wrapped channel
//!     // to the generated client: `GreeterClient::new(channel)`.
//!     let endpoint = Endpoint::from_static("http://127.0.0.1:50051");
//!     let channel = GrpcClientLayer::for_endpoint(&endpoint).layer(endpoint.connect().await?);
//!     # let _ = channel;
//!     Ok(())
//! }
//! ```
//!
//! ## Server
//!
//! Per call, an entry span named after the gRPC method path (`/pkg.Service/Method`) continues
//! the caller's trace from the request's metadata (its HTTP/2 headers), with layer
//! RPCFramework, component gRPC (23) and the peer set to the client's address. The handler runs
//! inside the span. The span fails when the call's `grpc-status` is not `OK` (0), with a log
//! `event=error`, `message=grpc-status {code} ({meaning}): {grpc-message}`, and carries the tag
//! `rpc.status_code` with the status's name (`OK`, `NOT_FOUND`, …): the tag OAP's analysis reads
//! as an RPC status, with the values the Java agent's gRPC plugin writes. Both ways a gRPC
//! response carries its status are handled: *trailers-only* responses (tonic's answer when a
//! handler returns `Err(Status)`), where `grpc-status` is among the response headers, end the
//! span when the response is ready; other responses carry it in the trailers after the messages, so the span stays open while the body
//! streams and ends at the trailers (or when the body ends or is dropped). A streaming body is
//! polled inside the span too. Calls whose path matches `SW_AGENT_TRACE_IGNORE_PATH` (e.g.
//! `/grpc.health.v1.Health/**`) are not traced.
//!
//! ## Client
//!
//! Per call, an exit span named after the method path, a child of the current span, with peer
//! = the endpoint's authority (`host:port`), layer RPCFramework and component gRPC; `sw8`
//! (and `sw8-correlation` / `sw8-x`) is written into the request metadata. The span ends at the
//! response's trailers and fails like the server's when the status is not `OK`, or when the
//! transport fails.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use ::tonic::transport::Endpoint;
use ::tonic::transport::server::TcpConnectInfo;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Traced, TracerSlot};
use crate::component;
use crate::propagation::{Extractor, Injector};
use crate::segment::SpanLayer;
use crate::span::Span;
use crate::tracer::Tracer;

/// Reads propagation headers from gRPC metadata (binary `-bin` keys are never read).
///
/// ```
/// use skytrace::Extractor;
///
/// let mut metadata = tonic::metadata::MetadataMap::new();
/// metadata.insert("sw8", "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaQ==-YToy".parse().unwrap());
/// assert!(metadata.get("sw8").is_some());
/// assert_eq!(Extractor::get(&metadata, "sw8-correlation"), None);
/// ```
impl Extractor for MetadataMap {
    fn get(&self, key: &str) -> Option<&str> {
        MetadataMap::get(self, key).and_then(|v| v.to_str().ok())
    }
}

/// Writes propagation headers into gRPC metadata.
///
/// ```
/// use skytrace::Injector;
///
/// let mut metadata = tonic::metadata::MetadataMap::new();
/// Injector::set(&mut metadata, "sw8", "1-…".replace('…', "x"));
/// assert_eq!(metadata.get("sw8").unwrap(), "1-x");
/// ```
impl Injector for MetadataMap {
    fn set(&mut self, key: &str, value: String) {
        // Our own values are always valid metadata text; a key from a bad namespace is skipped.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.insert(key, value);
        }
    }
}

/// Reads propagation headers from a tonic request's metadata, so a handler can be an
/// `#[entry_span]` carrier or call [`Span::entry`] itself.
///
/// ```
/// use skytrace::Extractor;
///
/// let request = tonic::Request::new(());
/// assert_eq!(Extractor::get(&request, "sw8"), None);
/// ```
impl<T> Extractor for ::tonic::Request<T> {
    fn get(&self, key: &str) -> Option<&str> {
        Extractor::get(self.metadata(), key)
    }
}

/// Writes propagation headers into a tonic request's metadata.
///
/// ```
/// use skytrace::Injector;
///
/// let mut request = tonic::Request::new(());
/// Injector::set(&mut request, "sw8", "1-x".to_string());
/// assert_eq!(request.metadata().get("sw8").unwrap(), "1-x");
/// ```
impl<T> Injector for ::tonic::Request<T> {
    fn set(&mut self, key: &str, value: String) {
        Injector::set(self.metadata_mut(), key, value);
    }
}

// ----------------------------------------------------------------------------------------------
// Server

/// A tower layer for [`tonic::transport::Server`]: an entry span
/// per call. See the [module documentation](self).
///
/// ```
/// use skytrace::integrations::tonic::GrpcServerLayer;
///
/// let server = tonic::transport::Server::builder().layer(GrpcServerLayer::new());
/// # let _ = server;
/// ```
#[derive(Clone, Debug, Default)]
pub struct GrpcServerLayer {
    tracer: TracerSlot,
}

impl GrpcServerLayer {
    /// A layer that starts entry spans on the global tracer installed by [`crate::init`].
    ///
    /// ```
    /// use skytrace::integrations::tonic::GrpcServerLayer;
    ///
    /// let layer = GrpcServerLayer::new();
    /// let server = tonic::transport::Server::builder().layer(layer);
    /// # let _ = server;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer that starts entry spans on `tracer`.
    ///
    /// ```
    /// use skytrace::{Config, DiscardReporter, Tracer};
    /// use skytrace::integrations::tonic::GrpcServerLayer;
    ///
    /// let config = Config::builder().service_name("greeter").build().unwrap();
    /// let tracer = Tracer::new(&config, DiscardReporter::new());
    /// let server = tonic::transport::Server::builder().layer(GrpcServerLayer::with_tracer(tracer));
    /// # let _ = server;
    /// ```
    pub fn with_tracer(tracer: Tracer) -> Self {
        GrpcServerLayer {
            tracer: TracerSlot::Explicit(tracer),
        }
    }
}

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerService {
            inner,
            tracer: self.tracer.clone(),
        }
    }
}

/// The service [`GrpcServerLayer`] wraps around a tonic server's services. Its responses carry
/// a [`GrpcBody`], which holds the entry span until the call's status is known.
///
/// ```
/// use skytrace::integrations::tonic::{GrpcServerLayer, GrpcServerService};
/// use tower_layer::Layer;
///
/// // `service`: a generated server, e.g. `GreeterServer::new(MyGreeter)`.
/// fn traced<S>(service: S) -> GrpcServerService<S> {
///     GrpcServerLayer::new().layer(service)
/// }
/// # let _ = traced(());
/// ```
#[derive(Clone, Debug)]
pub struct GrpcServerService<S> {
    inner: S,
    tracer: TracerSlot,
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcServerService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: fmt::Display,
    ResBody: Body,
    ResBody::Error: fmt::Display,
{
    type Response = http::Response<GrpcBody<ResBody>>;
    type Error = S::Error;
    type Future = GrpcResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = self.start(&request);
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        GrpcResponseFuture {
            inner: Traced::new(inner, span),
            enter_body: true,
        }
    }
}

impl<S> GrpcServerService<S> {
    fn start<B>(&self, request: &http::Request<B>) -> Span {
        let method = request.uri().path();
        if self.tracer.is_ignored_path(method) {
            return Span::noop();
        }
        let span = self.tracer.entry(method.to_owned(), request.headers());
        if span.is_recording() {
            span.set_layer(SpanLayer::RpcFramework);
            span.set_component(component::GRPC);
            if let Some(addr) = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
            {
                span.set_peer(addr.to_string());
            }
        }
        span
    }
}

// ----------------------------------------------------------------------------------------------
// Client

/// A tower layer for a tonic client channel: an exit span per call, with `sw8` in the request
/// metadata. Wrap the [`Channel`](::tonic::transport::Channel) and hand the result to the
/// generated client's `new`.
///
/// ```no_run
/// use skytrace::integrations::tonic::GrpcClientLayer;
/// use tonic::transport::Endpoint;
/// use tower_layer::Layer;
///
/// # async fn demo() -> Result<(), tonic::transport::Error> {
/// let endpoint = Endpoint::from_static("http://greeter:50051");
/// let channel = GrpcClientLayer::for_endpoint(&endpoint).layer(endpoint.connect().await?);
/// // let mut client = GreeterClient::new(channel);
/// # let _ = channel;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct GrpcClientLayer {
    peer: Option<Arc<str>>,
}

impl GrpcClientLayer {
    /// A layer whose exit spans name `peer` (`host:port`, the address dialled) as their peer.
    ///
    /// ```
    /// use skytrace::integrations::tonic::GrpcClientLayer;
    ///
    /// let layer = GrpcClientLayer::new("greeter:50051");
    /// # let _ = layer;
    /// ```
    pub fn new(peer: impl Into<String>) -> Self {
        let peer: String = peer.into();
        GrpcClientLayer {
            peer: (!peer.is_empty()).then(|| peer.into()),
        }
    }

    /// A layer whose peer is `endpoint`'s authority (`host:port`).
    ///
    /// ```
    /// use skytrace::integrations::tonic::GrpcClientLayer;
    ///
    /// let endpoint = tonic::transport::Endpoint::from_static("http://greeter:50051");
    /// let layer = GrpcClientLayer::for_endpoint(&endpoint);
    /// # let _ = layer;
    /// ```
    pub fn for_endpoint(endpoint: &Endpoint) -> Self {
        Self::new(authority_of(endpoint.uri()).unwrap_or_default())
    }

    /// A layer that takes the peer from each request's URI. tonic's generated clients only put
    /// an authority there when made `with_origin`; prefer [`GrpcClientLayer::new`] or
    /// [`GrpcClientLayer::for_endpoint`].
    ///
    /// ```
    /// use skytrace::integrations::tonic::GrpcClientLayer;
    ///
    /// // For a client made with `GreeterClient::with_origin(channel, origin)`.
    /// let layer = GrpcClientLayer::from_request_uri();
    /// # let _ = layer;
    /// ```
    pub fn from_request_uri() -> Self {
        GrpcClientLayer { peer: None }
    }
}

/// `host:port` of `uri`, with the scheme's default port when it has none.
fn authority_of(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Some(format!("{host}:{port}"))
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClientService {
            inner,
            peer: self.peer.clone(),
        }
    }
}

/// The service [`GrpcClientLayer`] wraps around a channel: what the generated client is made
/// from.
///
/// ```
/// use skytrace::integrations::tonic::{GrpcClientLayer, GrpcClientService};
/// use tonic::transport::{Channel, Endpoint};
/// use tower_layer::Layer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let endpoint = Endpoint::from_static("http://greeter:50051");
/// let channel: GrpcClientService<Channel> =
///     GrpcClientLayer::for_endpoint(&endpoint).layer(endpoint.connect_lazy());
/// // let client = GreeterClient::new(channel);
/// # let _ = channel;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct GrpcClientService<S> {
    inner: S,
    peer: Option<Arc<str>>,
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcClientService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: fmt::Display,
    ResBody: Body,
    ResBody::Error: fmt::Display,
{
    type Response = http::Response<GrpcBody<ResBody>>;
    type Error = S::Error;
    type Future = GrpcResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let peer: Cow<'static, str> = match &self.peer {
            Some(peer) => Cow::Owned(peer.to_string()),
            None => Cow::Owned(authority_of(request.uri()).unwrap_or_default()),
        };
        let span = Span::exit(request.uri().path().to_owned(), peer);
        if span.is_recording() {
            span.set_layer(SpanLayer::RpcFramework);
            span.set_component(component::GRPC);
        }
        span.inject(request.headers_mut());
        let inner = self.inner.call(request);
        GrpcResponseFuture {
            inner: Traced::new(inner, span),
            enter_body: false,
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Response

pin_project! {
    /// The response future of [`GrpcServerService`] and [`GrpcClientService`]: resolves to the
    /// response with its body wrapped in a [`GrpcBody`].
    ///
    /// ```
    /// use skytrace::integrations::tonic::{GrpcClientService, GrpcResponseFuture};
    /// use tonic::transport::Channel;
    ///
    /// // The future type a traced channel's calls return.
    /// type Call = <GrpcClientService<Channel> as tower_service::Service<
    ///     http::Request<tonic::body::Body>,
    /// >>::Future;
    /// let _: Option<Call> = None::<GrpcResponseFuture<_>>;
    /// ```
    pub struct GrpcResponseFuture<F> {
        #[pin]
        inner: Traced<F>,
        enter_body: bool,
    }
}

impl<F, ResBody, E> Future for GrpcResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    E: fmt::Display,
{
    type Output = Result<http::Response<GrpcBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (result, span) = std::task::ready!(this.inner.poll(cx));
        let enter = *this.enter_body;
        Poll::Ready(match result {
            Ok(response) => {
                let status = response.status();
                if !status.is_success() {
                    span.record_error(&format_args!("HTTP status {}", status.as_u16()));
                }
                // Trailers-only response: the call's status is already known.
                let span = if check_grpc_status(&span, response.headers()) {
                    drop(span);
                    None
                } else {
                    Some(span)
                };
                Ok(response.map(|inner| GrpcBody { inner, span, enter }))
            }
            Err(error) => {
                span.record_error(&error);
                Err(error)
            }
        })
    }
}

impl<F> fmt::Debug for GrpcResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// A gRPC response body that holds the call's span until the trailers (which carry the
    /// call's `grpc-status`) have been read, the body has ended, or it is dropped.
    ///
    /// ```
    /// use skytrace::integrations::tonic::{GrpcBody, GrpcClientService};
    /// use tonic::transport::Channel;
    ///
    /// // What a traced channel answers with.
    /// type Answer = <GrpcClientService<Channel> as tower_service::Service<
    ///     http::Request<tonic::body::Body>,
    /// >>::Response;
    /// let _: Option<Answer> = None::<http::Response<GrpcBody<tonic::body::Body>>>;
    /// ```
    pub struct GrpcBody<B> {
        #[pin]
        inner: B,
        span: Option<Span>,
        // Server side: the body is polled inside the entry span.
        enter: bool,
    }
}

impl<B> GrpcBody<B> {
    /// The wrapped body (the span, if still open, ends).
    ///
    /// ```
    /// use skytrace::integrations::tonic::GrpcBody;
    ///
    /// fn unwrap(response: http::Response<GrpcBody<tonic::body::Body>>) -> tonic::body::Body {
    ///     response.into_body().into_inner()
    /// }
    /// # let _ = unwrap;
    /// ```
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for GrpcBody<B>
where
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let poll = match this.span.as_ref() {
            Some(span) if *this.enter => {
                let _entered = span.enter();
                this.inner.poll_frame(cx)
            }
            _ => this.inner.poll_frame(cx),
        };
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(span) = this.span.take()
                {
                    check_grpc_status(&span, trailers);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(span) = this.span.take() {
                    span.record_error(error);
                }
            }
            Poll::Ready(None) => {
                this.span.take();
            }
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for GrpcBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBody")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

/// Records the call's outcome from `grpc-status` / `grpc-message` in `headers` (response
/// headers of a trailers-only response, or trailers). Returns whether a status was there.
fn check_grpc_status(span: &Span, headers: &http::HeaderMap) -> bool {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
    else {
        return false;
    };
    if span.is_recording() {
        span.add_tag("rpc.status_code", status_name(code));
        if code != 0 {
            let message = headers
                .get("grpc-message")
                .map(|v| percent_decode(v.as_bytes()))
                .unwrap_or_default();
            let meaning = ::tonic::Code::from_i32(code).description();
            span.record_error(&format_args!("grpc-status {code} ({meaning}): {message}"));
        }
    }
    true
}

/// A gRPC status code's canonical name, as grpc-java's `Status.Code.name()` gives it (the Java
/// agent's `rpc.status_code` values, which OAP stores and filters by); a code outside the
/// standard range is `UNKNOWN`, as grpc-java reads it.
fn status_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// `grpc-message` is percent-encoded.
fn percent_decode(bytes: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{authority_of, percent_decode, status_name};

    #[test]
    fn status_names_are_grpc_javas() {
        assert_eq!(status_name(0), "OK");
        assert_eq!(status_name(5), "NOT_FOUND");
        assert_eq!(status_name(13), "INTERNAL");
        assert_eq!(status_name(16), "UNAUTHENTICATED");
        assert_eq!(status_name(17), "UNKNOWN");
        assert_eq!(status_name(-1), "UNKNOWN");
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"no%20such%20user"), "no such user");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz"), "%zz");
        assert_eq!(percent_decode(b"%C3%A9"), "é");
    }

    #[test]
    fn authority_gets_the_default_port() {
        let uri: http::Uri = "http://greeter".parse().unwrap();
        assert_eq!(authority_of(&uri).unwrap(), "greeter:80");
        let uri: http::Uri = "http://127.0.0.1:50051".parse().unwrap();
        assert_eq!(authority_of(&uri).unwrap(), "127.0.0.1:50051");
        let uri: http::Uri = "/pkg.Svc/Method".parse().unwrap();
        assert_eq!(authority_of(&uri), None);
    }
}
