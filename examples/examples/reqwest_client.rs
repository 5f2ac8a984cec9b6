//! Outgoing HTTP calls traced by `skytrace::integrations::reqwest`: `send_traced()` instead of
//! `send()` makes each call an exit span (peer `host:port`, tags `http.method`, `url`,
//! `http.status_code`) and writes `sw8` onto the request. Segments go to the console unless
//! `SW_AGENT_COLLECTOR_BACKEND_SERVICES` is set.
//!
//! For a self-contained run the example starts a small untraced HTTP server that answers with
//! the `sw8` header it received, i.e. what the callee continues from.
//!
//! ```sh
//! cargo run -p skytrace-examples --example reqwest_client
//! # Or call any URL (inside a trace of its own):
//! cargo run -p skytrace-examples --example reqwest_client -- http://127.0.0.1:3000/users/42
//! ```

use std::error::Error;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use skytrace::integrations::reqwest::{RequestBuilderExt, TracedClientExt};
use skytrace::{Instrument, Span, Sw8Header};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let agent = skytrace_examples::init_example("reqwest-example")?;
    let client = reqwest::Client::new();

    let urls: Vec<String> = match std::env::args().nth(1) {
        Some(url) => vec![url],
        None => {
            let addr = echo_server().await?;
            vec![
                format!("http://{addr}/inventory/7"),
                format!("http://{addr}/fail"),
                // Nobody listens there: a transport error, logged on the span.
                "http://127.0.0.1:9/unreachable".to_owned(),
            ]
        }
    };

    // Exit spans need a trace to belong to: here a job's entry span.
    async {
        for url in &urls {
            match client.get(url).send_traced().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    match Sw8Header::decode(&body) {
                        Ok(sw8) => println!(
                            "GET {url} -> {status}; the callee got sw8 from span {} of segment {}",
                            sw8.parent_span_id, sw8.parent_segment_id
                        ),
                        Err(_) => println!("GET {url} -> {status}"),
                    }
                }
                Err(error) => println!("GET {url} failed: {error}"),
            }
        }
        // The same with a prepared request.
        if let Ok(request) = client.get(&urls[0]).build() {
            let outcome = client.execute_traced(request).await.map(|r| r.status());
            println!("execute_traced GET {} -> {outcome:?}", urls[0]);
        }
    }
    .in_span(Span::root_entry("refresh-inventory"))
    .await;

    agent.shutdown_async(Duration::from_secs(5)).await;
    Ok(())
}

/// An untraced server answering with the `sw8` header it received; `/fail` answers 503.
async fn echo_server() -> std::io::Result<std::net::SocketAddr> {
    async fn echo(headers: HeaderMap) -> String {
        headers
            .get("sw8")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
    let app = Router::new().route("/inventory/{id}", get(echo)).route(
        "/fail",
        get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "try later") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
