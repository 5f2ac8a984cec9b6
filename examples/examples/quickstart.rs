//! One trace with an entry span, a local span and two exit spans (a database query and an HTTP
//! call, both drawn on OAP's map as the services they reach), reported to OAP when
//! `SW_AGENT_COLLECTOR_BACKEND_SERVICES` is set, else printed to the console.
//!
//! ```sh
//! cargo run -p skytrace-examples --example quickstart
//! SW_AGENT_COLLECTOR_BACKEND_SERVICES=127.0.0.1:11800 cargo run -p skytrace-examples --example quickstart
//! ```

use std::process::ExitCode;
use std::time::Duration;

use skytrace::{Config, ReporterKind};

/// An incoming request: an entry span continuing the caller's trace from its headers.
#[skytrace::entry_span(
    name = "POST:/checkout",
    carrier = headers,
    layer = Http,
    component = HTTP,
    tags(http.method = "POST")
)]
async fn handle_checkout(headers: http::HeaderMap) -> u32 {
    let total = price_cart().await;
    charge_card(total).await;
    total
}

/// Local work inside the service: a local span.
#[skytrace::trace]
async fn price_cart() -> u32 {
    let items = load_cart().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    items * 14
}

/// A database query: an exit span with the server's address as its peer, so that OAP's map
/// shows the database (the sqlx integration records one per query by itself).
#[skytrace::exit_span(
    name = "SELECT carts",
    peer = "postgres:5432",
    layer = Database,
    component = POSTGRESQL,
    tags(db.type = "sql", db.statement = "SELECT items FROM carts WHERE id = $1")
)]
async fn load_cart() -> u32 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    3
}

/// An outgoing call: an exit span whose `sw8` the payment service would continue from.
#[skytrace::exit_span(
    name = "POST:/charge",
    peer = "payments:8080",
    layer = Http,
    component = HTTP_CLIENT,
    tags(amount = amount)
)]
async fn charge_card(amount: u32) {
    let mut outgoing = http::HeaderMap::new();
    skytrace::inject(&mut outgoing);
    tokio::time::sleep(Duration::from_millis(2)).await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let to_oap = std::env::var_os("SW_AGENT_COLLECTOR_BACKEND_SERVICES").is_some();
    let config = Config::builder()
        .service_name("quickstart")
        .reporter(if to_oap {
            ReporterKind::Grpc
        } else {
            ReporterKind::Console
        })
        .env(|name| std::env::var(name).ok())
        .and_then(|b| b.build());
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("quickstart: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backends = config.backends().join(",");
    let agent = match skytrace::init(config) {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("quickstart: {e}");
            return ExitCode::FAILURE;
        }
    };

    let total = handle_checkout(http::HeaderMap::new()).await;
    println!("checkout total: {total}");

    let stats = agent.shutdown_async(Duration::from_secs(5)).await;
    if to_oap && stats.sent == 0 {
        eprintln!(
            "quickstart: could not deliver the trace to {backends} within 5 s \
             (queued {}, dropped {}, failed {})",
            stats.queued, stats.dropped, stats.failed
        );
        return ExitCode::FAILURE;
    }
    if to_oap {
        println!(
            "quickstart: delivered {} segment(s) to {backends}",
            stats.sent
        );
    }
    ExitCode::SUCCESS
}
