//! Requests no route matches, through real axum and actix-web servers on loopback: one operation
//! name per method (the method alone), never the path; or, with `Unmatched::Untraced`, no
//! segment at all. Matched requests keep their route template.

use std::net::SocketAddr;

use actix_web::{App, HttpServer, web};
use axum::Router;
use axum::routing::get;
use skytrace::Tracer;
use skytrace::integrations::Unmatched;
use skytrace::integrations::actix_web::SkytraceMiddleware;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{SegmentObject, SpanObject, SpanType};
use skytrace_tests::{WAIT, config_for, grpc_tracer};

fn tracer(collector: &Collector, name: &str) -> Tracer {
    grpc_tracer(
        config_for(collector.addr())
            .service_name(name)
            .instance_name(format!("{name}-1")),
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn tag<'a>(span: &'a SpanObject, key: &str) -> Option<&'a str> {
    span.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

/// Sends `(method, path, expected status)` in order, each after the previous one answered.
async fn send(addr: SocketAddr, requests: &[(&str, &str, u16)]) {
    let client = client();
    for (method, path, status) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .request(method.clone(), format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), *status, "{method} {path}");
    }
}

/// Waits for `n` segments and returns them, failing with the trace trees if fewer came.
async fn segments(collector: &Collector, n: usize) -> Vec<SegmentObject> {
    let segments = collector.wait_for_segments(n, WAIT).await;
    assert!(
        segments.len() >= n,
        "expected {n} segments:\n{}",
        render_trace_tree(&segments)
    );
    segments
}

/// The entry span's name and `url` tag of each segment, in arrival order.
fn names_and_urls(segments: &[SegmentObject]) -> Vec<(String, String)> {
    segments
        .iter()
        .map(|s| {
            let entry = &s.spans[0];
            assert_eq!(entry.span_type, SpanType::Entry as i32);
            let url = tag(entry, "url").unwrap_or_default();
            // The path part of the url tag (`http://host:port/path`).
            let path = url
                .splitn(4, '/')
                .nth(3)
                .map_or(String::new(), |p| format!("/{p}"));
            (entry.operation_name.clone(), path)
        })
        .collect()
}

// ----------------------------------------------------------------------------------------------
// axum

async fn serve_axum(layer: SkytraceLayer) -> SocketAddr {
    let api = Router::new().route("/items/{id}", get(|| async { "item" }));
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .nest("/api", api)
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_names_unmatched_requests_by_their_method() {
    let collector = Collector::start().await.unwrap();
    let addr = serve_axum(SkytraceLayer::with_tracer(tracer(&collector, "axum"))).await;
    send(
        addr,
        &[
            ("GET", "/nope", 404),
            ("GET", "/wp-login.php", 404),
            ("POST", "/users/123/x", 404),
            ("GET", "/api/nope", 404),
            // `SW_AGENT_IGNORE_SUFFIX` (default: .ico among others) still sees the path.
            ("GET", "/favicon.ico", 404),
            ("GET", "/users/7", 200),
            ("GET", "/api/items/9", 200),
        ],
    )
    .await;
    let segments = segments(&collector, 6).await;
    assert_eq!(
        names_and_urls(&segments),
        [
            ("GET", "/nope"),
            ("GET", "/wp-login.php"),
            ("POST", "/users/123/x"),
            ("GET", "/api/nope"),
            ("GET:/users/{id}", "/users/7"),
            ("GET:/api/items/{id}", "/api/items/9"),
        ]
        .map(|(n, u)| (n.to_owned(), u.to_owned())),
        "{}",
        render_trace_tree(&segments)
    );
    let unmatched = &segments[0].spans[0];
    assert_eq!(tag(unmatched, "http.status_code"), Some("404"));
    assert_eq!(tag(unmatched, "http.method"), Some("GET"));
    assert!(!unmatched.is_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_leaves_unmatched_requests_untraced_when_asked() {
    let collector = Collector::start().await.unwrap();
    let layer =
        SkytraceLayer::with_tracer(tracer(&collector, "axum")).unmatched(Unmatched::Untraced);
    let addr = serve_axum(layer).await;
    // The matched request, sent last, arrives; nothing came before it.
    send(
        addr,
        &[
            ("GET", "/nope", 404),
            ("POST", "/api/nope", 404),
            ("GET", "/users/7", 200),
        ],
    )
    .await;
    let segments = segments(&collector, 1).await;
    assert_eq!(
        names_and_urls(&segments),
        [("GET:/users/{id}".to_owned(), "/users/7".to_owned())],
        "{}",
        render_trace_tree(&segments)
    );
}

// ----------------------------------------------------------------------------------------------
// actix-web

/// Runs an actix-web server on its own thread (actix runs its own single-threaded runtimes).
fn serve_actix(middleware: SkytraceMiddleware) -> (SocketAddr, actix_web::dev::ServerHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(middleware.clone())
                    .route("/users/{id}", web::get().to(|| async { "user" }))
                    .service(
                        web::scope("/api").route("/items/{id}", web::get().to(|| async { "item" })),
                    )
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
async fn actix_names_unmatched_requests_by_their_method() {
    let collector = Collector::start().await.unwrap();
    let (addr, server) = serve_actix(SkytraceMiddleware::with_tracer(tracer(&collector, "actix")));
    send(
        addr,
        &[
            ("GET", "/nope", 404),
            ("GET", "/wp-login.php", 404),
            ("POST", "/users/123/x", 404),
            ("GET", "/api/nope", 404),
            ("GET", "/favicon.ico", 404),
            ("GET", "/users/7", 200),
            ("GET", "/api/items/9", 200),
        ],
    )
    .await;
    let segments = segments(&collector, 6).await;
    assert_eq!(
        names_and_urls(&segments),
        [
            ("GET", "/nope"),
            ("GET", "/wp-login.php"),
            ("POST", "/users/123/x"),
            ("GET", "/api/nope"),
            ("GET:/users/{id}", "/users/7"),
            ("GET:/api/items/{id}", "/api/items/9"),
        ]
        .map(|(n, u)| (n.to_owned(), u.to_owned())),
        "{}",
        render_trace_tree(&segments)
    );
    assert_eq!(tag(&segments[0].spans[0], "http.status_code"), Some("404"));
    server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_leaves_unmatched_requests_untraced_when_asked() {
    let collector = Collector::start().await.unwrap();
    let middleware =
        SkytraceMiddleware::with_tracer(tracer(&collector, "actix")).unmatched(Unmatched::Untraced);
    let (addr, server) = serve_actix(middleware);
    send(
        addr,
        &[
            ("GET", "/nope", 404),
            ("POST", "/api/nope", 404),
            ("GET", "/users/7", 200),
        ],
    )
    .await;
    let segments = segments(&collector, 1).await;
    assert_eq!(
        names_and_urls(&segments),
        [("GET:/users/{id}".to_owned(), "/users/7".to_owned())],
        "{}",
        render_trace_tree(&segments)
    );
    server.stop(false).await;
}
