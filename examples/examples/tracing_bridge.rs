//! The `tracing` and `log` bridges: an axum service traced by skytrace's axum layer whose
//! handler calls `#[tracing::instrument]` functions and logs with `tracing` and `log` macros.
//! The `tracing` spans become spans of the request's segment (one of them an exit span, by its
//! `sw.*` fields), events become span logs, and WARN and above become `LogData` linked to the
//! trace. The application's own log lines (the fmt layer, a `log` logger) start with the trace
//! context in the `SW_CTX` form. It sends itself a few requests and exits.
//!
//! Everything goes the way the README's recipe sends it: `skytrace::init`, then the layer and
//! the logger; the reporter `init` started delivers the segments and the log records over
//! gRPC, to OAP or, without one, to a collector started here, whose trees (with the records
//! under their spans) are printed.
//!
//! ```sh
//! cargo run -p skytrace-examples --example tracing_bridge
//! # To an OAP (or `cargo run -p skytrace-collector`): exits non-zero if nothing was delivered.
//! SW_AGENT_COLLECTOR_BACKEND_SERVICES=127.0.0.1:11800 \
//!     cargo run -p skytrace-examples --example tracing_bridge
//! ```

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use skytrace::integrations::axum::SkytraceLayer;
use skytrace::integrations::log::SkyWalkingLogger;
use skytrace::integrations::tracing::{SkyWalkingLayer, SwCtxFormat};
use skytrace::logs;
use skytrace_collector::{Collector, Detail, render_trace_tree_with_logs};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracing_bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let oap = std::env::var("SW_AGENT_COLLECTOR_BACKEND_SERVICES").ok();
    let collector = match oap {
        Some(_) => None,
        None => Some(Collector::start().await?),
    };
    let backend = match (&oap, &collector) {
        (Some(oap), _) => oap.clone(),
        (None, Some(collector)) => collector.addr().to_string(),
        (None, None) => unreachable!("a collector is started without OAP"),
    };
    // The README's recipe: `init` (which installs the log queue its reporter drains, as
    // SW_AGENT_LOG_REPORTER_* say), then the layer and the logger.
    let config = skytrace::Config::builder()
        .service_name("tracing-bridge-example")
        .backend_services(backend.as_str())
        .env(|name| std::env::var(name).ok())?
        .build()?;
    let agent = skytrace::init(config)?;

    // The bridge beside the application's own fmt layer, whose lines carry the context.
    tracing_subscriber::registry()
        // INFO and above for both layers.
        .with(LevelFilter::INFO)
        .with(SkyWalkingLayer::new())
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(SwCtxFormat::new(
                    tracing_subscriber::fmt::format().compact(),
                ))
                .with_writer(std::io::stderr),
        )
        .init();
    // The `log` crate: reported, and forwarded to the application's own logger.
    SkyWalkingLogger::new(StderrLogger).init(log::LevelFilter::Info)?;

    let app = Router::new()
        .route("/users/{id}", get(get_user))
        .layer(SkytraceLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    for path in ["/users/42", "/users/0"] {
        let status = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await?
            .status();
        println!("GET {path} -> {status}");
    }

    // Delivers what is queued, segments and log records alike.
    let stats = agent.shutdown_async(Duration::from_secs(5)).await;
    let queued_logs = logs::stats();
    if let Some(collector) = collector {
        let segments = collector.segments();
        let records = collector.logs();
        print!(
            "{}",
            render_trace_tree_with_logs(&segments, &records, Detail::Normal)
        );
        println!(
            "tracing_bridge: {} segment(s) and {} log record(s) arrived",
            segments.len(),
            records.len()
        );
        if segments.is_empty() || records.is_empty() {
            return Ok(ExitCode::FAILURE);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if stats.sent == 0 || queued_logs.submitted == 0 {
        eprintln!(
            "tracing_bridge: could not deliver to {backend} within 5 s (segments queued {}, \
             dropped {}, failed {}; log records queued {}, dropped {})",
            stats.queued, stats.dropped, stats.failed, queued_logs.submitted, queued_logs.dropped
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "tracing_bridge: delivered {} segment(s) and queued {} log record(s) for {backend}",
        stats.sent, queued_logs.submitted
    );
    Ok(ExitCode::SUCCESS)
}

async fn get_user(Path(id): Path<u64>) -> Result<String, StatusCode> {
    load_user(id).await.map_err(|_| StatusCode::NOT_FOUND)
}

/// A local span (child of the request's entry span), with `id` as a tag.
#[tracing::instrument]
async fn load_user(id: u64) -> Result<String, String> {
    tracing::info!("looking the user up");
    let found = query(id).await;
    if found.is_none() {
        // WARN: a span log, and a record in OAP's log view linked to this span.
        log::warn!("user {id} not found");
    }
    found.ok_or_else(|| format!("no user {id}"))
}

/// An exit span to the database, by its reserved fields; an ERROR event marks it failed.
#[tracing::instrument(fields(sw.kind = "exit", sw.peer = "users-db:5432", sw.layer = "database",
                             sw.component = 22, rows = tracing::field::Empty))]
async fn query(id: u64) -> Option<String> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    if id == 0 {
        tracing::error!(table = "users", "no row for id 0");
        tracing::Span::current().record("rows", 0);
        return None;
    }
    tracing::Span::current().record("rows", 1);
    Some(format!("user {id}"))
}

/// The application's own `log` logger: stderr, each line with the trace context first.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "{} {} {}: {}",
                logs::sw_ctx(),
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
