//! The generic tower layers (feature `tower`) with real servers and clients on loopback: a plain
//! hyper server under `HttpServerLayer`, hyper-util's client under `HttpClientLayer`, and a warp
//! filter served through `warp::service`, each service reporting over gRPC to the in-process
//! collector through its own tracer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use skytrace::integrations::tower::{HttpClientLayer, HttpServerLayer};
use skytrace::{Instrument, Tracer};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{RefType, SegmentObject, SpanLayer, SpanType};
use skytrace_tests::{WAIT, log_message, named_tracer, tag};
use tower_layer::Layer;
use tower_service::Service;

/// The application behind the plain hyper server: `/users/{id}` answers 200, `/boom` 500.
#[derive(Clone)]
struct App;

impl Service<http::Request<Incoming>> for App {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        // Work done before the future is returned: inside the entry span too.
        drop(skytrace::Span::local("route"));
        let status = if request.uri().path() == "/boom" {
            500
        } else {
            200
        };
        Box::pin(async move {
            // A span of the handler: a child of the entry span.
            drop(skytrace::Span::local("load-user"));
            let mut response = http::Response::new(Full::new(Bytes::from_static(b"ok")));
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
            Ok(response)
        })
    }
}

/// The route hook of the plain server: the template of `/users/{id}`, `None` elsewhere.
fn route(head: &skytrace::integrations::tower::RequestHead<'_>) -> Option<String> {
    let path = head.uri.path();
    if path.starts_with("/users/") {
        Some("/users/{id}".to_owned())
    } else if path == "/boom" {
        Some(path.to_owned())
    } else {
        None
    }
}

/// Serves `service` (per connection: `make(remote address)`) with hyper on a loopback port.
async fn serve<S, F>(make: F) -> SocketAddr
where
    F: Fn(SocketAddr) -> S + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let service = TowerToHyperService::new(make(remote));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// hyper-util's client under the layer.
fn client() -> skytrace::integrations::tower::HttpClientService<
    Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
> {
    HttpClientLayer::new().layer(Client::builder(TokioExecutor::new()).build_http())
}

/// Sends a GET to `url` through `client` inside an entry span of `tracer`.
async fn get_traced<S>(tracer: &Tracer, client: &mut S, url: &str) -> Result<u16, S::Error>
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<Incoming>>,
{
    let entry = tracer.entry_span("GET:/checkout", &());
    let request = http::Request::get(url).body(Empty::new()).unwrap();
    async {
        std::future::poll_fn(|cx| client.poll_ready(cx)).await?;
        client.call(request).await.map(|r| r.status().as_u16())
    }
    .in_span(entry)
    .await
}

fn of_service<'a>(segments: &'a [SegmentObject], service: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| s.service == service)
        .unwrap_or_else(|| panic!("no segment of {service}:\n{}", render_trace_tree(segments)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hyper_client_call_to_a_plain_hyper_server_is_one_trace() {
    let collector = Collector::start().await.unwrap();
    let client_tracer = named_tracer(&collector, "front");
    let server_tracer = named_tracer(&collector, "users");
    let addr = serve(move |remote| {
        HttpServerLayer::with_tracer(server_tracer.clone())
            .client_addr(remote)
            .route_name(route)
            .layer(App)
    })
    .await;
    let mut client = client();
    let status = get_traced(
        &client_tracer,
        &mut client,
        &format!("http://{addr}/users/7?token=s"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2, "{}", render_trace_tree(&segments));
    let front = of_service(&segments, "front");
    let users = of_service(&segments, "users");
    let exit = &front.spans[1];
    assert_eq!(exit.operation_name, "GET:/users/7");
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.span_layer, SpanLayer::Http as i32);
    assert_eq!(exit.component_id, skytrace::component::HTTP_CLIENT);
    assert_eq!(exit.peer, addr.to_string());
    assert_eq!(tag(exit, "http.method"), Some("GET"));
    assert_eq!(
        tag(exit, "url"),
        Some(format!("http://{addr}/users/7").as_str())
    );
    assert_eq!(tag(exit, "http.status_code"), Some("200"));
    assert!(!exit.is_error);

    let entry = &users.spans[0];
    assert_eq!(
        entry.operation_name, "GET:/users/{id}",
        "named by the route hook"
    );
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.span_layer, SpanLayer::Http as i32);
    assert_eq!(entry.component_id, skytrace::component::HTTP);
    assert!(
        entry.peer.starts_with("127.0.0.1:"),
        "the client's address: {}",
        entry.peer
    );
    assert_eq!(tag(entry, "http.status_code"), Some("200"));
    assert_eq!(
        tag(entry, "url"),
        Some(format!("http://{addr}/users/7").as_str())
    );
    let children: Vec<(&str, i32)> = users.spans[1..]
        .iter()
        .map(|s| (s.operation_name.as_str(), s.parent_span_id))
        .collect();
    assert_eq!(children, [("route", 0), ("load-user", 0)]);
    // The server continues the client's exit span: `sw8` was injected.
    assert_eq!(users.trace_id, front.trace_id);
    let r = &entry.refs[0];
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.parent_trace_segment_id, front.trace_segment_id);
    assert_eq!(r.parent_span_id, exit.span_id);
    assert_eq!(r.parent_endpoint, "GET:/checkout");
    assert_eq!(r.network_address_used_at_peer, addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_mark_both_sides() {
    let collector = Collector::start().await.unwrap();
    let client_tracer = named_tracer(&collector, "front");
    let server_tracer = named_tracer(&collector, "users");
    let addr = serve(move |_| {
        HttpServerLayer::with_tracer(server_tracer.clone())
            .route_name(route)
            .layer(App)
    })
    .await;
    let mut client = client();
    // A 500 fails the client's exit span and the server's entry span.
    let status = get_traced(&client_tracer, &mut client, &format!("http://{addr}/boom"))
        .await
        .unwrap();
    assert_eq!(status, 500);
    // Nobody listens: the client's error fails its exit span, with its causes logged.
    let closed = skytrace_tests::unused_addr();
    get_traced(
        &client_tracer,
        &mut client,
        &format!("http://{closed}/users/1"),
    )
    .await
    .unwrap_err();
    // A request the hook finds no route for is named by its method alone.
    let status = get_traced(
        &client_tracer,
        &mut client,
        &format!("http://{addr}/nope/42"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    let segments = collector.wait_for_segments(5, WAIT).await;
    assert_eq!(segments.len(), 5, "{}", render_trace_tree(&segments));
    let exit_to = |path: &str| {
        segments
            .iter()
            .filter(|s| s.service == "front")
            .find_map(|s| {
                s.spans
                    .iter()
                    .find(|x| x.operation_name == format!("GET:{path}"))
            })
            .unwrap_or_else(|| panic!("no exit span to {path}"))
    };
    let boom = exit_to("/boom");
    assert!(boom.is_error);
    assert_eq!(tag(boom, "http.status_code"), Some("500"));
    let refused = exit_to("/users/1");
    assert!(refused.is_error);
    assert_eq!(refused.peer, closed.to_string());
    let message = log_message(refused).expect("the error is logged");
    assert!(message.contains("onnect"), "{message}");
    let served: Vec<_> = segments.iter().filter(|s| s.service == "users").collect();
    let boom = served
        .iter()
        .find(|s| s.spans[0].operation_name == "GET:/boom")
        .unwrap();
    assert!(boom.spans[0].is_error);
    assert!(
        served.iter().any(|s| s.spans[0].operation_name == "GET"),
        "{}",
        render_trace_tree(&segments)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warp_filter_is_traced_through_warp_service() {
    use warp::Filter;
    let collector = Collector::start().await.unwrap();
    let client_tracer = named_tracer(&collector, "front");
    let server_tracer = named_tracer(&collector, "orders");
    let orders = warp::path!("orders" / u64).map(|id: u64| {
        drop(skytrace::Span::local("load-order"));
        format!("order {id}")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            // warp knows no route templates: the hook names the one route of this filter.
            let service = HttpServerLayer::with_tracer(server_tracer.clone())
                .client_addr(remote)
                .route_name(|head| {
                    head.uri
                        .path()
                        .starts_with("/orders/")
                        .then(|| "/orders/{id}".into())
                })
                .layer(warp::service(orders));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)),
            );
        }
    });
    let mut client = client();
    let status = get_traced(
        &client_tracer,
        &mut client,
        &format!("http://{addr}/orders/9"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2, "{}", render_trace_tree(&segments));
    let front = of_service(&segments, "front");
    let served = of_service(&segments, "orders");
    let entry = &served.spans[0];
    assert_eq!(entry.operation_name, "GET:/orders/{id}");
    assert_eq!(tag(entry, "http.status_code"), Some("200"));
    assert_eq!(served.spans[1].operation_name, "load-order");
    assert_eq!(
        entry.refs[0].parent_trace_segment_id,
        front.trace_segment_id
    );
    assert_eq!(entry.refs[0].parent_span_id, front.spans[1].span_id);
}
