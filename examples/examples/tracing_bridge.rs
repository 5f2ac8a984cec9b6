//! The `tracing` and `log` bridges: an axum service traced by skytrace's axum layer whose
//! handler calls `#[tracing::instrument]` functions and logs with `tracing` and `log` macros.
//! The `tracing` spans become spans of the request's segment (one of them an exit span, by its
//! `sw.*` fields), events become span logs, and WARN and above become `LogData` linked to the
//! trace. The application's own log lines (the fmt layer, a `log` logger) start with the trace
//! context in the `SW_CTX` form. It sends itself a few requests and exits.
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
use skytrace::logs::{self, LogSettings};
use skytrace::proto::v3::{LogData, log_data_body};
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
    let agent = skytrace_examples::init_example("tracing-bridge-example")?;
    // SW_AGENT_LOG_REPORTER_ACTIVE / _LEVEL (WARN) / _MAX_BUFFER_SIZE / _MAX_MESSAGE_SIZE.
    let mut log_queue = logs::install(&LogSettings::from_env()?);

    // The bridge beside the application's own fmt layer, whose lines carry the context.
    tracing_subscriber::registry()
        // INFO and above for both layers (hyper's TRACE events stay out).
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

    let stats = agent.shutdown_async(Duration::from_secs(5)).await;
    // The records the bridges queued for OAP's log view.
    let mut records = Vec::new();
    if let Some(queue) = log_queue.as_mut() {
        while let Some(record) = queue.try_recv() {
            records.push(record);
        }
    }
    logs::uninstall();
    let Some(oap) = oap else {
        for record in &records {
            print_record(record);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if stats.sent == 0 {
        eprintln!(
            "tracing_bridge: could not deliver the traces to {oap} within 5 s \
             (queued {}, dropped {}, failed {})",
            stats.queued, stats.dropped, stats.failed
        );
        return Ok(ExitCode::FAILURE);
    }
    // Sent here over `LogReportService/collect` until the gRPC reporter drains the log queue
    // itself.
    let sent_logs = send_logs(&oap, records).await?;
    println!(
        "tracing_bridge: delivered {} segment(s) and {sent_logs} log record(s) to {oap}",
        stats.sent
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

fn print_record(record: &LogData) {
    let text = match record.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(log_data_body::Content::Text(t)) => t.text.as_str(),
        _ => "",
    };
    let tags: Vec<String> = record
        .tags
        .iter()
        .flat_map(|t| &t.data)
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    match &record.trace_context {
        Some(c) => println!(
            "log for OAP: {text:?} [{}] endpoint {} trace {} segment {} span {}",
            tags.join(" "),
            record.endpoint,
            c.trace_id,
            c.trace_segment_id,
            c.span_id
        ),
        None => println!("log for OAP: {text:?} [{}] (no trace)", tags.join(" ")),
    }
}

async fn send_logs(oap: &str, records: Vec<LogData>) -> Result<usize, Box<dyn std::error::Error>> {
    use skytrace::proto::v3::log_report_service_client::LogReportServiceClient;
    let n = records.len();
    let first = oap.split(',').next().unwrap_or(oap).trim();
    let mut client = LogReportServiceClient::connect(format!("http://{first}")).await?;
    client.collect(tokio_stream::iter(records)).await?;
    Ok(n)
}
