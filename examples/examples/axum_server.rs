//! An axum service traced by `skytrace::integrations::axum::SkytraceLayer`: one entry span per
//! request, named after the route (`GET:/users/{id}`), with a `#[skytrace::trace]`ed function
//! inside. Segments go to the console unless `SW_AGENT_COLLECTOR_BACKEND_SERVICES` is set.
//!
//! ```sh
//! # Sends itself a few requests (one continuing an upstream trace), prints the segments, exits:
//! cargo run -p skytrace-examples --example axum_server
//! # Keeps serving on 127.0.0.1:3000 (try `curl http://127.0.0.1:3000/users/42`):
//! cargo run -p skytrace-examples --example axum_server -- serve
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use skytrace::Sw8Header;
use skytrace::integrations::axum::SkytraceLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let agent = skytrace_examples::init_example("axum-example")?;
    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .route("/fail", get(fail))
        .route("/health", get(|| async { "ok" }))
        // `Router::layer`: the layer runs after routing and sees the route template.
        .layer(SkytraceLayer::new());
    // With connect info, entry spans record the client's address as their peer.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();

    let serve_forever = std::env::args().nth(1).as_deref() == Some("serve");
    let listener = tokio::net::TcpListener::bind(if serve_forever {
        "127.0.0.1:3000"
    } else {
        "127.0.0.1:0"
    })
    .await?;
    let addr = listener.local_addr()?;
    if serve_forever {
        println!("listening on http://{addr}: try `curl http://{addr}/users/42`");
        axum::serve(listener, app).await?;
        return Ok(());
    }
    tokio::spawn(async move { axum::serve(listener, app).await });

    // What an upstream service (say, a Java gateway) would send: the trace continues from it.
    let upstream = Sw8Header {
        sampled: true,
        trace_id: "upstream-trace-1".into(),
        parent_segment_id: "upstream-segment-1".into(),
        parent_span_id: 1,
        parent_service: "gateway".into(),
        parent_service_instance: "gateway-1".into(),
        parent_endpoint: "GET:/api/users".into(),
        target_address: addr.to_string(),
    };
    let client = reqwest::Client::new();
    for (path, sw8) in [
        ("/users/42", Some(upstream.encode())),
        ("/fail", None),
        ("/health", None), // `SW_AGENT_TRACE_IGNORE_PATH=/health`: not traced
    ] {
        let mut request = client.get(format!("http://{addr}{path}"));
        if let Some(sw8) = sw8 {
            request = request.header("sw8", sw8);
        }
        let status = request.send().await?.status();
        println!("GET {path} -> {status}");
    }
    agent.shutdown_async(Duration::from_secs(5)).await;
    Ok(())
}

async fn get_user(Path(id): Path<u64>) -> String {
    load_user(id).await
}

/// A traced function: a local span, child of the request's entry span.
#[skytrace::trace(tags(user.id = id))]
async fn load_user(id: u64) -> String {
    tokio::time::sleep(Duration::from_millis(3)).await;
    format!("user {id}")
}

async fn fail() -> (StatusCode, &'static str) {
    // A 5xx marks the entry span as failed.
    (StatusCode::INTERNAL_SERVER_ERROR, "database down")
}
