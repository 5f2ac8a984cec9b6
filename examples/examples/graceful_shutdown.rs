//! Shutting an async service down without losing its last traces: axum's graceful shutdown
//! lets the requests in flight finish (their entry spans end and their segments are queued),
//! then `TracerGuard::shutdown_async` delivers what is queued — on a thread of its own, so the
//! runtime is never blocked. Segments go to the console unless
//! `SW_AGENT_COLLECTOR_BACKEND_SERVICES` is set.
//!
//! ```sh
//! # Starts a slow request, asks for shutdown while it runs, and exits once it is delivered:
//! cargo run -p skytrace-examples --example graceful_shutdown
//! # Serves on 127.0.0.1:3000 until Ctrl-C (try `curl http://127.0.0.1:3000/slow`):
//! cargo run -p skytrace-examples --example graceful_shutdown -- serve
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use skytrace::integrations::axum::SkytraceLayer;
use tokio::sync::oneshot;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The guard keeps tracing installed; named `agent`, not `tracing` (that is another crate).
    let agent = skytrace_examples::init_example("graceful-shutdown-example")?;
    let app = Router::new()
        .route("/slow", get(slow))
        .layer(SkytraceLayer::new())
        .into_make_service_with_connect_info::<SocketAddr>();

    let serve_forever = std::env::args().nth(1).as_deref() == Some("serve");
    let listener = tokio::net::TcpListener::bind(if serve_forever {
        "127.0.0.1:3000"
    } else {
        "127.0.0.1:0"
    })
    .await?;
    let addr = listener.local_addr()?;

    // What ends the service: Ctrl-C when serving, else the client below once its request is
    // under way.
    let (stop, stopped) = oneshot::channel::<()>();
    let client = if serve_forever {
        println!("listening on http://{addr} (Ctrl-C to stop): try `curl http://{addr}/slow`");
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(());
        })
    } else {
        tokio::spawn(async move {
            let request = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
            // Not a guarantee, only likely: the request has reached the handler by now.
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("shutting down with a request in flight");
            let _ = stop.send(());
            match request.await {
                Ok(Ok(response)) => println!("GET /slow -> {}", response.status()),
                Ok(Err(e)) => println!("GET /slow failed: {e}"),
                Err(e) => println!("the request task failed: {e}"),
            }
        })
    };

    // 1. Stop accepting, let the requests in flight finish: their spans end, segments queue.
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await?;
    client.await?;
    // 2. Deliver what is queued, waiting at most 5 s, without blocking a runtime thread.
    let stats = agent.shutdown_async(Duration::from_secs(5)).await;
    println!(
        "tracing stopped: {} segment(s) sent, {} dropped, {} failed",
        stats.sent, stats.dropped, stats.failed
    );
    Ok(())
}

/// A request that is still running when shutdown is asked for.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(500)).await;
    "done"
}
