//! The framework integrations (axum, actix-web, tonic, reqwest) with real servers and real
//! clients on loopback, each service reporting over gRPC to the in-process collector through its
//! own tracer.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use skytrace::integrations::actix_web::SkytraceMiddleware;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace::integrations::reqwest::{RequestBuilderExt, TracedClientExt};
use skytrace::integrations::tonic::{GrpcClientLayer, GrpcClientService, GrpcServerLayer};
use skytrace::{Instrument, Span, Sw8Header, Tracer};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::configuration_discovery_service_client::ConfigurationDiscoveryServiceClient;
use skytrace_proto::v3::configuration_discovery_service_server::{
    ConfigurationDiscoveryService, ConfigurationDiscoveryServiceServer,
};
use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, RefType, SegmentObject, SpanLayer, SpanObject, SpanType,
};
use skytrace_tests::{WAIT, config_for, grpc_tracer, parent_name, span, unused_addr};
use tonic::transport::{Channel, Endpoint};
use tower_layer::Layer;

const FETCH: &str = "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations";

/// A tracer for service `name` (instance `{name}-1`) reporting to `collector`, ignoring
/// `/health` and `/static/**`.
fn tracer(collector: &Collector, name: &str) -> Tracer {
    grpc_tracer(
        config_for(collector.addr())
            .service_name(name)
            .instance_name(format!("{name}-1"))
            .ignore_paths("/health,/static/**"),
    )
}

/// An `sw8` value as an upstream agent would send it.
fn upstream_sw8(trace_id: &str, endpoint: &str, address: &str) -> String {
    Sw8Header {
        sampled: true,
        trace_id: trace_id.into(),
        parent_segment_id: "upstream-segment".into(),
        parent_span_id: 3,
        parent_service: "upstream".into(),
        parent_service_instance: "upstream-1".into(),
        parent_endpoint: endpoint.into(),
        target_address: address.into(),
    }
    .encode()
}

fn tag<'a>(span: &'a SpanObject, key: &str) -> Option<&'a str> {
    span.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

fn log_message(span: &SpanObject) -> Option<&str> {
    span.logs
        .iter()
        .flat_map(|l| &l.data)
        .find(|kv| kv.key == "message")
        .map(|kv| kv.value.as_str())
}

/// The segment of service `service` in `segments`.
fn of_service<'a>(segments: &'a [SegmentObject], service: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.service == service)
        .unwrap_or_else(|| panic!("no segment of {service}:\n{}", render_trace_tree(segments)))
}

/// Waits until a segment whose entry span is named `endpoint` has arrived, and returns it.
async fn wait_for_endpoint(collector: &Collector, endpoint: &str) -> SegmentObject {
    let arrived = collector
        .wait_for(WAIT, |r| {
            r.segments.iter().any(|s| {
                s.spans
                    .first()
                    .is_some_and(|f| f.operation_name == endpoint)
            })
        })
        .await;
    let segments = collector.segments();
    assert!(
        arrived,
        "no segment for {endpoint}:\n{}",
        render_trace_tree(&segments)
    );
    segments
        .into_iter()
        .find(|s| {
            s.spans
                .first()
                .is_some_and(|f| f.operation_name == endpoint)
        })
        .unwrap()
}

fn assert_upstream_ref(entry: &SpanObject, trace_id: &str, endpoint: &str, address: &str) {
    assert_eq!(entry.refs.len(), 1, "{entry:#?}");
    let r = &entry.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.trace_id, trace_id);
    assert_eq!(r.parent_trace_segment_id, "upstream-segment");
    assert_eq!(r.parent_span_id, 3);
    assert_eq!(r.parent_service, "upstream");
    assert_eq!(r.parent_service_instance, "upstream-1");
    assert_eq!(r.parent_endpoint, endpoint);
    assert_eq!(r.network_address_used_at_peer, address);
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

// ----------------------------------------------------------------------------------------------
// axum

async fn serve_axum(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A `#[trace]`ed fn awaited by the handler: a child of the entry span.
#[skytrace::trace]
async fn load_user(id: u64) -> String {
    // Resumes after a timer, possibly on the other worker thread: still inside the span.
    tokio::time::sleep(Duration::from_millis(5)).await;
    async { format!("user {id}") }
        .in_span(Span::local("format_user"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_continues_sw8_names_spans_after_the_route_and_tags_the_status() {
    let collector = Collector::start().await.unwrap();
    let items = Router::new().route(
        "/items/{id}",
        get(|Path(id): Path<u64>| async move { format!("item {id}") }),
    );
    let app = Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move { load_user(id).await }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database down") }),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/static/{*file}", get(|| async { "body {}" }))
        .nest("/api", items)
        .layer(SkytraceLayer::with_tracer(tracer(&collector, "users")));
    let addr = serve_axum(app).await;
    let client = plain_client();

    // A caller's trace continues: the route template names the span.
    let sw8 = upstream_sw8("trace-axum", "GET:/front", &addr.to_string());
    let response = client
        .get(format!("http://{addr}/users/42?token=secret"))
        .header("sw8", &sw8)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "user 42");
    let seg = wait_for_endpoint(&collector, "GET:/users/{id}").await;
    assert_eq!(seg.trace_id, "trace-axum");
    assert_eq!(seg.service, "users");
    let entry = assert_users_entry(&seg, "trace-axum", addr);
    assert_ne!(entry.peer, addr.to_string(), "the peer is the client");
    // The handler ran inside the entry span, across an await.
    assert_eq!(parent_name(&seg, "load_user"), "GET:/users/{id}");
    assert_eq!(parent_name(&seg, "format_user"), "load_user");

    // 5xx: failed, with the status.
    client
        .get(format!("http://{addr}/fail"))
        .send()
        .await
        .unwrap();
    let seg = wait_for_endpoint(&collector, "GET:/fail").await;
    let entry = &seg.spans[0];
    assert!(entry.is_error);
    assert_eq!(tag(entry, "http.status_code"), Some("500"));
    assert!(entry.refs.is_empty(), "no sw8: a new trace");

    // Nested routers: the full template. No route: the method alone, a 404, not an error.
    client
        .get(format!("http://{addr}/api/items/9"))
        .send()
        .await
        .unwrap();
    wait_for_endpoint(&collector, "GET:/api/items/{id}").await;
    let response = client
        .get(format!("http://{addr}/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let seg = wait_for_endpoint(&collector, "GET").await;
    assert_eq!(tag(&seg.spans[0], "http.status_code"), Some("404"));
    assert!(!seg.spans[0].is_error);

    // Ignored paths are not traced; a request sent after them is, and arrives after them.
    for path in ["/health", "/static/app/main.js"] {
        let response = client
            .get(format!("http://{addr}{path}"))
            .header("sw8", &sw8)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    client
        .get(format!("http://{addr}/users/7"))
        .send()
        .await
        .unwrap();
    collector
        .wait_for(WAIT, |r| {
            r.segments
                .iter()
                .filter(|s| s.spans[0].operation_name == "GET:/users/{id}")
                .count()
                == 2
        })
        .await;
    let segments = collector.segments();
    let names: Vec<&str> = segments
        .iter()
        .map(|s| s.spans[0].operation_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "GET:/users/{id}",
            "GET:/fail",
            "GET:/api/items/{id}",
            "GET",
            "GET:/users/{id}"
        ],
        "{}",
        render_trace_tree(&segments)
    );
}

/// A request that reaches the layer inside a trace already (a job calling a router in-process,
/// another tracing middleware outside) is a local child of it, not a second entry: with the
/// HTTP attributes all the same.
#[tokio::test]
async fn axum_layer_inside_a_trace_records_a_local_child_with_the_http_attributes() {
    use tower_service::Service as _;

    let collector = Collector::start().await.unwrap();
    let tracer = tracer(&collector, "in-process");
    let mut router = Router::new()
        .route("/inner/{id}", get(|| async { "ok" }))
        .layer(SkytraceLayer::with_tracer(tracer.clone()));
    let request = http::Request::get("/inner/7")
        .header("host", "example.com:8080")
        .body(axum::body::Body::empty())
        .unwrap();
    let outer = tracer.entry_span("outer-job", &());
    let response = {
        let _entered = outer.enter();
        router.call(request)
    };
    let response = response.in_span(outer).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let segment = wait_for_endpoint(&collector, "outer-job").await;
    assert_eq!(segment.spans.len(), 2, "{segment:#?}");
    let inner = span(&segment, "GET:/inner/{id}");
    assert_eq!(inner.span_type, SpanType::Local as i32);
    assert_eq!(inner.parent_span_id, 0);
    assert_eq!(inner.span_layer, SpanLayer::Http as i32);
    assert_eq!(inner.component_id, 49);
    assert_eq!(tag(inner, "http.method"), Some("GET"));
    assert_eq!(tag(inner, "url"), Some("http://example.com:8080/inner/7"));
    assert_eq!(tag(inner, "http.status_code"), Some("200"));
    assert!(inner.end_time >= inner.start_time);
}

/// The application's own layer inside skytrace's (applied before it): axum's route future
/// calls it when first polled, inside the entry span, and the handler after it. (The axum layer
/// does not enter the span around axum's `Route::call`, which only makes that future.)
#[tokio::test]
async fn an_application_layer_inside_the_axum_layer_runs_inside_the_entry_span() {
    use tower_service::Service as _;

    let collector = Collector::start().await.unwrap();
    let mut router = Router::new()
        .route(
            "/audited",
            get(|| async {
                drop(Span::local("handler"));
                "ok"
            }),
        )
        .layer(tower_layer::layer_fn(Audit))
        .layer(SkytraceLayer::with_tracer(tracer(&collector, "audited")));
    let request = http::Request::get("/audited")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let segment = wait_for_endpoint(&collector, "GET:/audited").await;
    assert_eq!(parent_name(&segment, "audit"), "GET:/audited");
    assert_eq!(parent_name(&segment, "handler"), "GET:/audited");
}

/// A layer's service that records a span in its `call`.
#[derive(Clone)]
struct Audit<S>(S);

impl<S, B> tower_service::Service<http::Request<B>> for Audit<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        drop(Span::local("audit"));
        self.0.call(request)
    }
}

// ----------------------------------------------------------------------------------------------
// actix-web

/// Runs an actix-web server on its own thread (actix runs its own single-threaded runtimes).
fn serve_actix(tracer: Tracer) -> (SocketAddr, actix_web::dev::ServerHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(SkytraceMiddleware::with_tracer(tracer.clone()))
                    .route(
                        "/users/{id}",
                        web::get().to(|id: web::Path<u64>| async move {
                            tokio::task::yield_now().await;
                            let _load = Span::local("load_user");
                            format!("user {id}")
                        }),
                    )
                    .route(
                        "/fail",
                        web::get().to(|| async {
                            Err::<String, _>(actix_web::error::ErrorInternalServerError(
                                "database down",
                            ))
                        }),
                    )
                    .route("/health", web::get().to(|| async { "ok" }))
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            server.await.unwrap();
        });
    });
    rx.recv().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_continues_sw8_names_spans_after_the_route_and_tags_the_status() {
    let collector = Collector::start().await.unwrap();
    let (addr, server) = serve_actix(tracer(&collector, "accounts"));
    let client = plain_client();

    let sw8 = upstream_sw8("trace-actix", "GET:/front", &addr.to_string());
    let response = client
        .get(format!("http://{addr}/users/42?token=secret"))
        .header("sw8", &sw8)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "user 42");
    let seg = wait_for_endpoint(&collector, "GET:/users/{id}").await;
    assert_eq!(seg.trace_id, "trace-actix");
    assert_eq!(seg.service, "accounts");
    assert_users_entry(&seg, "trace-actix", addr);
    assert_eq!(parent_name(&seg, "load_user"), "GET:/users/{id}");

    // A handler error answered with a 500: failed, the error logged.
    client
        .get(format!("http://{addr}/fail"))
        .send()
        .await
        .unwrap();
    let seg = wait_for_endpoint(&collector, "GET:/fail").await;
    let entry = &seg.spans[0];
    assert!(entry.is_error);
    assert_eq!(tag(entry, "http.status_code"), Some("500"));
    assert_eq!(log_message(entry), Some("database down"));

    // No resource: the method alone, a 404. Ignored paths: no segment.
    client
        .get(format!("http://{addr}/nowhere"))
        .send()
        .await
        .unwrap();
    wait_for_endpoint(&collector, "GET").await;
    client
        .get(format!("http://{addr}/health"))
        .header("sw8", &sw8)
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{addr}/users/7"))
        .send()
        .await
        .unwrap();
    collector.wait_for(WAIT, |r| r.segments.len() >= 4).await;
    let segments = collector.segments();
    let names: Vec<&str> = segments
        .iter()
        .map(|s| s.spans[0].operation_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["GET:/users/{id}", "GET:/fail", "GET", "GET:/users/{id}"]
    );
    server.stop(false).await;
}

// ----------------------------------------------------------------------------------------------
// tonic

/// Service C: answers `fetchConfigurations`; `service: "missing"` is a NOT_FOUND.
struct Configurations;

#[tonic::codegen::async_trait]
impl ConfigurationDiscoveryService for Configurations {
    async fn fetch_configurations(
        &self,
        request: tonic::Request<ConfigurationSyncRequest>,
    ) -> Result<tonic::Response<Commands>, tonic::Status> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let _lookup = Span::local("lookup");
        if request.get_ref().service == "missing" {
            return Err(tonic::Status::not_found("no such service: missing"));
        }
        Ok(tonic::Response::new(Commands::default()))
    }
}

async fn serve_grpc(tracer: Tracer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(GrpcServerLayer::with_tracer(tracer))
            .serve_with_incoming(
                ConfigurationDiscoveryServiceServer::new(Configurations),
                incoming,
            )
            .await
            .unwrap();
    });
    addr
}

fn sync_request(service: &str) -> ConfigurationSyncRequest {
    ConfigurationSyncRequest {
        service: service.into(),
        uuid: String::new(),
    }
}

type TracedGrpcClient = ConfigurationDiscoveryServiceClient<GrpcClientService<Channel>>;

fn traced_grpc_client(addr: SocketAddr) -> TracedGrpcClient {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let channel = GrpcClientLayer::for_endpoint(&endpoint).layer(endpoint.connect_lazy());
    ConfigurationDiscoveryServiceClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_server_continues_sw8_from_metadata_and_fails_on_a_non_ok_status() {
    let collector = Collector::start().await.unwrap();
    let addr = serve_grpc(tracer(&collector, "configs")).await;
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = ConfigurationDiscoveryServiceClient::new(channel);

    // OK: grpc-status 0 arrives in the trailers, after the message.
    let mut request = tonic::Request::new(sync_request("shop"));
    let sw8 = upstream_sw8("trace-grpc", "GET:/front", &addr.to_string());
    request.metadata_mut().insert("sw8", sw8.parse().unwrap());
    client.fetch_configurations(request).await.unwrap();
    let seg = wait_for_endpoint(&collector, FETCH).await;
    assert_eq!(seg.trace_id, "trace-grpc");
    assert_eq!(seg.service, "configs");
    let entry = span(&seg, FETCH);
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.span_layer, SpanLayer::RpcFramework as i32);
    assert_eq!(entry.component_id, 23);
    assert_upstream_ref(entry, "trace-grpc", "GET:/front", &addr.to_string());
    assert!(entry.peer.starts_with("127.0.0.1:"), "{}", entry.peer);
    assert_eq!(tag(entry, "rpc.status_code"), Some("OK"));
    assert!(!entry.is_error);
    assert_eq!(parent_name(&seg, "lookup"), FETCH);
    collector.clear();

    // NOT_FOUND: a trailers-only response, grpc-status in the headers.
    let status = client
        .fetch_configurations(sync_request("missing"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let seg = wait_for_endpoint(&collector, FETCH).await;
    let entry = &seg.spans[0];
    assert!(entry.is_error);
    assert!(entry.refs.is_empty());
    assert_eq!(tag(entry, "rpc.status_code"), Some("NOT_FOUND"));
    assert_eq!(
        log_message(entry),
        Some("grpc-status 5 (Some requested entity was not found): no such service: missing")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_client_opens_an_exit_span_and_injects_sw8_into_the_metadata() {
    let collector = Collector::start().await.unwrap();
    let addr = serve_grpc(tracer(&collector, "configs")).await;
    let caller = tracer(&collector, "caller");
    let mut client = traced_grpc_client(addr);

    let entry = caller.entry_span("job", &());
    async {
        client
            .fetch_configurations(sync_request("shop"))
            .await
            .unwrap();
        let status = client
            .fetch_configurations(sync_request("missing"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    .in_span(entry)
    .await;

    let segments = collector.wait_for_segments(3, WAIT).await;
    assert_eq!(segments.len(), 3, "{}", render_trace_tree(&segments));
    let caller_seg = of_service(&segments, "caller");
    let exits: Vec<&SpanObject> = caller_seg.spans.iter().skip(1).collect();
    assert_eq!(exits.len(), 2);
    for exit in &exits {
        assert_eq!(exit.operation_name, FETCH);
        assert_eq!(exit.span_type, SpanType::Exit as i32);
        assert_eq!(exit.span_layer, SpanLayer::RpcFramework as i32);
        assert_eq!(exit.component_id, 23);
        assert_eq!(exit.peer, addr.to_string());
        assert_eq!(exit.parent_span_id, 0);
    }
    // OK in the trailers; NOT_FOUND in the headers of a trailers-only response.
    assert!(!exits[0].is_error);
    assert_eq!(tag(exits[0], "rpc.status_code"), Some("OK"));
    assert!(exits[1].is_error);
    assert_eq!(tag(exits[1], "rpc.status_code"), Some("NOT_FOUND"));

    // Each server segment continues from its exit span.
    let server_segs: Vec<&SegmentObject> =
        segments.iter().filter(|s| s.service == "configs").collect();
    assert_eq!(server_segs.len(), 2);
    for seg in server_segs {
        assert_eq!(seg.trace_id, caller_seg.trace_id);
        let r = &seg.spans[0].refs[0];
        assert_eq!(r.parent_trace_segment_id, caller_seg.trace_segment_id);
        assert_eq!(r.parent_service, "caller");
        assert_eq!(r.parent_endpoint, "job");
        assert_eq!(r.network_address_used_at_peer, addr.to_string());
        assert!(exits.iter().any(|e| e.span_id == r.parent_span_id));
    }
}

/// A hand-written gRPC service that answers every call with one (empty) message and then
/// `grpc-status: 13` in the trailers: what a handler that fails after it started streaming
/// sends, as opposed to tonic's trailers-only answer to `Err(Status)`.
#[derive(Clone)]
struct FailsInTrailers;

impl tower_service::Service<http::Request<tonic::body::Body>> for FailsInTrailers {
    type Response = http::Response<FramesBody>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<tonic::body::Body>) -> Self::Future {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "13".parse().unwrap());
        trailers.insert("grpc-message", "disk%20full".parse().unwrap());
        let body = FramesBody(
            [
                // One gRPC message: not compressed, 0 bytes long (an empty `Commands`).
                http_body::Frame::data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])),
                http_body::Frame::trailers(trailers),
            ]
            .into(),
        );
        let mut response = http::Response::new(body);
        response
            .headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        std::future::ready(Ok(response))
    }
}

struct FramesBody(std::collections::VecDeque<http_body::Frame<bytes::Bytes>>);

impl http_body::Body for FramesBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_spans_fail_on_a_non_ok_status_in_the_trailers() {
    let collector = Collector::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tracer(&collector, "failing");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(GrpcServerLayer::with_tracer(server))
            .serve_with_incoming(FailsInTrailers, incoming)
            .await
            .unwrap();
    });
    let caller = tracer(&collector, "caller");
    let mut client = traced_grpc_client(addr);

    let status = client
        .fetch_configurations(sync_request("shop"))
        .in_span(caller.entry_span("job", &()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(status.message(), "disk full");

    let segments = collector.wait_for_segments(2, WAIT).await;
    let tree = render_trace_tree(&segments);
    let exit = &of_service(&segments, "caller").spans[1];
    let entry = &of_service(&segments, "failing").spans[0];
    for span in [exit, entry] {
        assert_eq!(span.operation_name, FETCH, "{tree}");
        assert!(span.is_error, "{tree}");
        assert_eq!(tag(span, "rpc.status_code"), Some("INTERNAL"));
        assert_eq!(
            log_message(span),
            Some("grpc-status 13 (Internal error): disk full")
        );
    }
    assert_eq!(entry.refs[0].parent_span_id, exit.span_id);
}

// ----------------------------------------------------------------------------------------------
// reqwest

/// An untraced server that answers with the `sw8` it received; `/fail` answers 503.
async fn echo_server() -> SocketAddr {
    async fn echo(headers: HeaderMap) -> String {
        headers
            .get("sw8")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    let app = Router::new().route("/echo/{id}", get(echo)).route(
        "/fail",
        get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "") }),
    );
    serve_axum(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_exit_spans_inject_sw8_and_fail_on_5xx_and_transport_errors() {
    let collector = Collector::start().await.unwrap();
    let caller = tracer(&collector, "caller");
    let addr = echo_server().await;
    let dead = unused_addr();
    let client = plain_client();

    // Outside any trace: sent unchanged.
    let echoed = client
        .get(format!("http://{addr}/echo/1"))
        .send_traced()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(echoed, "");

    let entry = caller.entry_span("job", &());
    let echoed = async {
        let echoed = client
            .get(format!("http://{addr}/echo/7?token=secret"))
            .send_traced()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let request = client.get(format!("http://{addr}/fail")).build().unwrap();
        let response = client.execute_traced(request).await.unwrap();
        assert_eq!(response.status(), 503);
        let error = client
            .post(format!("http://{dead}/orders"))
            .send_traced()
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error:?}");
        echoed
    }
    .in_span(entry)
    .await;

    let seg = collector.wait_for_segments(1, WAIT).await.remove(0);
    assert_eq!(
        seg.spans.len(),
        4,
        "{}",
        render_trace_tree(std::slice::from_ref(&seg))
    );

    let ok = span(&seg, "GET:/echo/7");
    assert_eq!(ok.span_type, SpanType::Exit as i32);
    assert_eq!(ok.span_layer, SpanLayer::Http as i32);
    // OAP's `HttpClient`, as the Java and Node.js agents' HTTP client spans.
    assert_eq!(ok.component_id, 2);
    assert_eq!(ok.peer, addr.to_string());
    assert_eq!(ok.parent_span_id, 0);
    assert_eq!(tag(ok, "http.method"), Some("GET"));
    assert_eq!(tag(ok, "url"), Some(&*format!("http://{addr}/echo/7")));
    assert_eq!(tag(ok, "http.status_code"), Some("200"));
    assert!(!ok.is_error);
    // The callee received the exit span's context.
    let header = Sw8Header::decode(&echoed).unwrap();
    assert!(header.sampled);
    assert_eq!(header.trace_id, seg.trace_id);
    assert_eq!(header.parent_segment_id, seg.trace_segment_id);
    assert_eq!(header.parent_span_id, ok.span_id);
    assert_eq!(header.parent_service, "caller");
    assert_eq!(header.parent_service_instance, "caller-1");
    assert_eq!(header.parent_endpoint, "job");
    assert_eq!(header.target_address, addr.to_string());

    let failed = span(&seg, "GET:/fail");
    assert!(failed.is_error);
    assert_eq!(tag(failed, "http.status_code"), Some("503"));

    let refused = span(&seg, "POST:/orders");
    assert!(refused.is_error);
    assert_eq!(refused.peer, dead.to_string());
    assert_eq!(tag(refused, "http.status_code"), None);
    let message = log_message(refused).unwrap();
    assert!(
        message.starts_with("error sending request") && message.contains("onnect"),
        "the error's causes are logged: {message}"
    );
}

// ----------------------------------------------------------------------------------------------
// The chain: axum A → reqwest → axum B → tonic client → tonic server C

#[derive(Clone)]
struct ServiceA {
    client: reqwest::Client,
    b: SocketAddr,
}

async fn handle_a(State(a): State<ServiceA>, Path(order): Path<u64>) -> Result<String, StatusCode> {
    let response = a
        .client
        .get(format!("http://{}/b/{order}", a.b))
        .send_traced()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    response.text().await.map_err(|_| StatusCode::BAD_GATEWAY)
}

async fn handle_b(
    State(mut c): State<TracedGrpcClient>,
    Path(order): Path<u64>,
) -> Result<String, StatusCode> {
    let commands = c
        .fetch_configurations(sync_request("shop"))
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?
        .into_inner();
    Ok(format!(
        "order {order}: {} commands",
        commands.commands.len()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_axum_reqwest_axum_tonic_is_one_trace_of_linked_segments() {
    let collector = Collector::start().await.unwrap();

    let c = serve_grpc(tracer(&collector, "svc-c")).await;
    let b = serve_axum(
        Router::new()
            .route("/b/{order}", get(handle_b))
            .layer(SkytraceLayer::with_tracer(tracer(&collector, "svc-b")))
            .with_state(traced_grpc_client(c)),
    )
    .await;
    let a = serve_axum(
        Router::new()
            .route("/a/{order}", get(handle_a))
            .layer(SkytraceLayer::with_tracer(tracer(&collector, "svc-a")))
            .with_state(ServiceA {
                client: plain_client(),
                b,
            }),
    )
    .await;

    let body = plain_client()
        .get(format!("http://{a}/a/7"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "order 7: 0 commands");

    let segments = collector.wait_for_segments(3, WAIT).await;
    let tree = render_trace_tree(&segments);
    println!("{tree}");
    assert_eq!(segments.len(), 3, "{tree}");
    let (seg_a, seg_b, seg_c) = (
        of_service(&segments, "svc-a"),
        of_service(&segments, "svc-b"),
        of_service(&segments, "svc-c"),
    );
    assert!(
        segments.iter().all(|s| s.trace_id == seg_a.trace_id),
        "{tree}"
    );

    // A: entry with no ref, exit to B.
    assert_eq!(seg_a.spans[0].operation_name, "GET:/a/{order}");
    assert!(seg_a.spans[0].refs.is_empty());
    let exit_a = span(seg_a, "GET:/b/7");
    assert_eq!(exit_a.span_type, SpanType::Exit as i32);
    assert_eq!(exit_a.peer, b.to_string());
    assert_eq!(exit_a.parent_span_id, 0);

    // B: entry continuing from A's exit span; exit to C.
    let entry_b = &seg_b.spans[0];
    assert_eq!(entry_b.operation_name, "GET:/b/{order}");
    assert_eq!(entry_b.span_type, SpanType::Entry as i32);
    let r = &entry_b.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.trace_id, seg_a.trace_id);
    assert_eq!(r.parent_trace_segment_id, seg_a.trace_segment_id);
    assert_eq!(r.parent_span_id, exit_a.span_id);
    assert_eq!(r.parent_service, "svc-a");
    assert_eq!(r.parent_service_instance, "svc-a-1");
    assert_eq!(r.parent_endpoint, "GET:/a/{order}");
    assert_eq!(r.network_address_used_at_peer, b.to_string());
    let exit_b = &seg_b.spans[1];
    assert_eq!(exit_b.operation_name, FETCH);
    assert_eq!(exit_b.span_type, SpanType::Exit as i32);
    assert_eq!(exit_b.peer, c.to_string());
    assert_eq!(exit_b.parent_span_id, 0);

    // C: entry continuing from B's exit span.
    let entry_c = &seg_c.spans[0];
    assert_eq!(entry_c.operation_name, FETCH);
    let r = &entry_c.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.trace_id, seg_a.trace_id);
    assert_eq!(r.parent_trace_segment_id, seg_b.trace_segment_id);
    assert_eq!(r.parent_span_id, exit_b.span_id);
    assert_eq!(r.parent_service, "svc-b");
    assert_eq!(r.parent_service_instance, "svc-b-1");
    assert_eq!(r.parent_endpoint, "GET:/b/{order}");
    assert_eq!(r.network_address_used_at_peer, c.to_string());
    assert_eq!(parent_name(seg_c, "lookup"), FETCH);
}

/// What the axum layer and the actix middleware both record for `GET /users/42?token=secret`
/// arriving with the `sw8` of `upstream_sw8(trace, "GET:/front", addr)`.
fn assert_users_entry<'a>(seg: &'a SegmentObject, trace: &str, addr: SocketAddr) -> &'a SpanObject {
    let entry = span(seg, "GET:/users/{id}");
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.span_layer, SpanLayer::Http as i32);
    assert_eq!(entry.component_id, 49);
    assert_upstream_ref(entry, trace, "GET:/front", &addr.to_string());
    assert_eq!(tag(entry, "http.method"), Some("GET"));
    assert_eq!(tag(entry, "url"), Some(&*format!("http://{addr}/users/42")));
    assert_eq!(tag(entry, "http.status_code"), Some("200"));
    assert!(!entry.is_error);
    assert!(entry.peer.starts_with("127.0.0.1:"), "{}", entry.peer);
    entry
}
