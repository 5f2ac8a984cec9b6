//! The previous major lines still most used (issue 22 item 2): axum 0.7 (feature `axum-0-7`)
//! and reqwest 0.12 (feature `reqwest-0-12`), through the same layer and traits as the current
//! lines, with a real axum 0.7 server and a real reqwest 0.12 client on loopback, reporting over
//! gRPC to the collector.

use std::net::SocketAddr;

use axum_0_7::Router;
use axum_0_7::extract::Path;
use axum_0_7::http::StatusCode;
use axum_0_7::routing::get;
use skytrace::Instrument;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace::integrations::reqwest::{RequestBuilderExt, TracedClientExt};
use skytrace_collector::{Collector, render_trace_tree};
use skytrace_proto::v3::{RefType, SegmentObject, SpanLayer, SpanType};
use skytrace_tests::{WAIT, config_for, grpc_tracer, tag};

async fn user(Path(id): Path<u64>) -> Result<String, StatusCode> {
    match id {
        0 => Err(StatusCode::INTERNAL_SERVER_ERROR),
        id => Ok(format!("user {id}")),
    }
}

/// An axum 0.7 router behind the layer, served with connect info.
async fn serve(tracer: skytrace::Tracer) -> SocketAddr {
    let app = Router::new()
        .route("/users/:id", get(user))
        .layer(SkytraceLayer::with_tracer(tracer))
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum_0_7::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> reqwest_0_12::Client {
    reqwest_0_12::Client::builder().no_proxy().build().unwrap()
}

fn segment_of<'a>(segments: &'a [SegmentObject], first_span: &str) -> &'a SegmentObject {
    segments
        .iter()
        .find(|s| {
            s.spans
                .first()
                .is_some_and(|f| f.operation_name == first_span)
        })
        .unwrap_or_else(|| panic!("no {first_span}:\n{}", render_trace_tree(segments)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_0_12_calls_axum_0_7_in_one_trace() {
    let collector = Collector::start().await.unwrap();
    let users = grpc_tracer(config_for(collector.addr()).service_name("users"));
    let front = grpc_tracer(config_for(collector.addr()).service_name("front"));
    let addr = serve(users).await;
    let client = client();

    let job = front.entry_span("job", &());
    async {
        let ok = client
            .get(format!("http://{addr}/users/7?token=secret"))
            .send_traced()
            .await
            .unwrap();
        assert_eq!(ok.text().await.unwrap(), "user 7");
        let request = client
            .get(format!("http://{addr}/users/0"))
            .build()
            .unwrap();
        let failed = client.execute_traced(request).await.unwrap();
        assert_eq!(failed.status(), 500);
        let missing = client
            .get(format!("http://{addr}/nowhere"))
            .send_traced()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    }
    .in_span(job)
    .await;

    assert!(
        collector.wait_for(WAIT, |r| r.segments.len() >= 4).await,
        "{}",
        render_trace_tree(&collector.segments())
    );
    let segments = collector.segments();
    let job = segment_of(&segments, "job");
    let exits: Vec<_> = job
        .spans
        .iter()
        .filter(|s| s.span_type == SpanType::Exit as i32)
        .collect();
    assert_eq!(exits.len(), 3, "{}", render_trace_tree(&segments));
    // The reqwest 0.12 exit spans: named, tagged and peered as the 0.13 ones.
    let call = exits[0];
    assert_eq!(call.operation_name, "GET:/users/7");
    assert_eq!(call.peer, addr.to_string());
    assert_eq!(call.span_layer, SpanLayer::Http as i32);
    assert_eq!(call.component_id, 2);
    assert_eq!(tag(call, "http.method"), Some("GET"));
    assert_eq!(
        tag(call, "url"),
        Some(format!("http://{addr}/users/7").as_str())
    );
    assert_eq!(tag(call, "http.status_code"), Some("200"));
    assert!(!call.is_error);
    assert_eq!(tag(exits[1], "http.status_code"), Some("500"));
    assert!(exits[1].is_error);

    // The axum 0.7 entry spans: the route template (0.7's `:id`), the status, the client.
    let entry = &segment_of(&segments, "GET:/users/:id").spans[0];
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.component_id, 49);
    assert!(entry.peer.starts_with("127.0.0.1:"), "{}", entry.peer);
    assert_eq!(tag(entry, "http.method"), Some("GET"));
    let reference = &entry.refs[0];
    assert_eq!(reference.ref_type, RefType::CrossProcess as i32);
    assert_eq!(reference.trace_id, job.trace_id);
    assert_eq!(reference.parent_trace_segment_id, job.trace_segment_id);
    assert_eq!(reference.parent_span_id, call.span_id);
    assert_eq!(reference.parent_endpoint, "job");
    assert_eq!(reference.network_address_used_at_peer, addr.to_string());
    let statuses: Vec<(Option<&str>, bool)> = segments
        .iter()
        .filter(|s| s.service == "users")
        .map(|s| (tag(&s.spans[0], "http.status_code"), s.spans[0].is_error))
        .collect();
    assert!(statuses.contains(&(Some("200"), false)), "{statuses:?}");
    assert!(statuses.contains(&(Some("500"), true)), "{statuses:?}");
    // No route: the method alone, as with axum 0.8.
    let unmatched = &segment_of(&segments, "GET").spans[0];
    assert_eq!(tag(unmatched, "http.status_code"), Some("404"));
    assert!(!unmatched.is_error);
    collector.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reqwest_0_12_transport_error_fails_the_exit_span() {
    let collector = Collector::start().await.unwrap();
    let front = grpc_tracer(config_for(collector.addr()).service_name("front"));
    let dead = skytrace_tests::unused_addr();
    let job = front.entry_span("job", &());
    // The exit span starts when `send_traced` is called: inside the job's span.
    let result = async { client().get(format!("http://{dead}/x")).send_traced().await }
        .in_span(job)
        .await;
    assert!(result.is_err());
    let segments = collector.wait_for_segments(1, WAIT).await;
    let exit = &segments[0].spans[1];
    assert_eq!(exit.operation_name, "GET:/x");
    assert!(exit.is_error);
    assert_eq!(tag(exit, "http.status_code"), None);
    let message = exit
        .logs
        .iter()
        .flat_map(|l| &l.data)
        .find(|kv| kv.key == "message")
        .map(|kv| kv.value.clone())
        .unwrap_or_default();
    assert!(message.contains("error sending request"), "{message}");
    collector.shutdown().await;
}
