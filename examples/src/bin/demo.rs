//! skytrace's demo: two instrumented services on loopback and a SkyWalking collector, all in
//! this process. It sends a handful of requests and prints each trace as a tree, like
//! SkyWalking's trace view, then a few of the meters the agent sent beside them (every second
//! here: `SW_AGENT_METER_REPORTER_PERIOD` overrides it). With the embedded collector, it also
//! serves an ignore rule as OAP's dynamic configuration, and the users service stops tracing
//! the paths it names.
//!
//! With `--ui [IP:PORT]` the embedded collector also serves its web view (default
//! `127.0.0.1:8080`), the demo prints its address and keeps running — a request every two
//! seconds — until Ctrl-C.
//!
//! ```sh
//! cargo run -p skytrace-examples --bin demo
//! # the same traces in a browser (open the address it prints):
//! cargo run -p skytrace-examples --bin demo -- --ui
//! # or report to a real OAP instead of the embedded collector:
//! SW_AGENT_COLLECTOR_BACKEND_SERVICES=127.0.0.1:11800 cargo run -p skytrace-examples --bin demo
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use skytrace::integrations::axum::SkytraceLayer;
use skytrace::meter::names;
use skytrace::{Config, ConfigBuilder, GrpcReporter, Tracer};
use skytrace_collector::skytrace_proto::v3::meter_data::Metric;
use skytrace_collector::skytrace_proto::v3::{MeterData, SegmentObject, SpanType};
use skytrace_collector::{Collector, Detail, render_trace_tree_with_logs};
use skytrace_examples::{frontend, serve, users};

/// Requests the demo sends to the frontend, and what each shows.
const REQUESTS: &[(&str, &str)] = &[
    ("/checkout/7", "a user found in the database"),
    ("/checkout/0", "a cache hit: no database call"),
    (
        "/checkout/13",
        "the database fails: errors on both services",
    ),
    (
        "/checkout/404",
        "an unknown user: the users service answers 404",
    ),
];

const USAGE: &str = "\
usage: demo [--ui [IP:PORT]]

  --ui [IP:PORT]   the embedded collector also serves its web view on IP:PORT (default
                   127.0.0.1:8080); the demo prints its address and keeps running, sending a
                   request every 2 s, until Ctrl-C
  -h, --help       print this help";

/// The web view's address when none is given to `--ui`.
const DEFAULT_UI: &str = "127.0.0.1:8080";

/// How often the demo sends a request while it keeps running for the web view.
const LIVE_PERIOD: Duration = Duration::from_secs(2);

/// `Ok(None)`: no web view; `Err`: a message for standard error.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
    let mut args = args.peekable();
    let mut ui = None;
    while let Some(arg) = args.next() {
        let text = match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--ui" => match args.next_if(|next| !next.starts_with('-')) {
                Some(addr) => addr,
                None => DEFAULT_UI.to_owned(),
            },
            other => match other.strip_prefix("--ui=") {
                Some(addr) => addr.to_owned(),
                None => return Err(format!("unknown argument `{other}`\n\n{USAGE}")),
            },
        };
        ui = Some(text.parse().map_err(|_| {
            format!("--ui: `{text}` is not an IP:PORT address (e.g. {DEFAULT_UI})")
        })?);
    }
    Ok(ui)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let ui = match parse_args(std::env::args().skip(1)) {
        Ok(ui) => ui,
        Err(message) if message == USAGE => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(2);
        }
    };
    match run(ui).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(backends: &str, service: &str, embedded: bool) -> Result<Config, skytrace::ConfigError> {
    let mut builder: ConfigBuilder = Config::builder()
        .ignore_paths("/health")
        // A period short enough for meters to arrive while the demo runs.
        .meter_reporter_period(Duration::from_secs(1));
    if embedded {
        // The dynamic configuration's part of the demo: fetched every second, not every 20.
        builder = builder.dynamic_config_interval(Duration::from_secs(1));
    }
    let builder = builder
        .env(|name| std::env::var(name).ok())?
        .backend_services(backends)
        .service_name(service)
        .instance_name(format!("{service}@127.0.0.1"));
    builder.build()
}

async fn run(ui: Option<SocketAddr>) -> Result<(), Box<dyn std::error::Error>> {
    let external = std::env::var("SW_AGENT_COLLECTOR_BACKEND_SERVICES").ok();
    let collector = match (&external, ui) {
        (Some(_), Some(_)) => {
            return Err("--ui shows the embedded collector's data: unset \
                        SW_AGENT_COLLECTOR_BACKEND_SERVICES (or run `skytrace-collector --ui \
                        127.0.0.1:8080` and point the services at it)"
                .into());
        }
        (Some(_), None) => None,
        (None, None) => Some(Collector::start().await?),
        (None, Some(addr)) => Some(Collector::builder().ui(addr).start().await?),
    };
    let ui_url = collector.as_ref().and_then(Collector::ui_url);
    if let Some(url) = &ui_url {
        println!("web view: {url} (open it in a browser; the demo keeps running until Ctrl-C)");
    }
    let backends = match (&external, &collector) {
        (Some(list), _) => list.clone(),
        (None, Some(c)) => c.addr().to_string(),
        (None, None) => unreachable!("either an external backend or the embedded collector"),
    };
    println!(
        "skytrace demo: reporting to {backends}{}",
        if collector.is_some() {
            " (embedded collector)"
        } else {
            ""
        }
    );

    // The frontend uses the global tracer (its layer is `SkytraceLayer::new()`); the users
    // service has a tracer of its own, so one process can show two services.
    let embedded = collector.is_some();
    let frontend_agent = skytrace::init(config(&backends, "demo-frontend", embedded)?)?;
    // The `log` crate's records go to OAP's log view (WARN and above by default), linked to the
    // trace they were written in; the application's own logger gets them too (here one that
    // discards them, to keep the demo's output to the trace trees).
    let _ =
        skytrace::integrations::log::SkyWalkingLogger::new(Discard).init(log::LevelFilter::Info);
    let users_config = config(&backends, "demo-users", embedded)?;
    let users_reporter = Arc::new(GrpcReporter::start(&users_config)?);
    let users_tracer = Tracer::with_reporter(&users_config, users_reporter.clone());
    users_tracer.follow_dynamic_config(&users_reporter);

    let users_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let users_addr = users_listener.local_addr()?;
    tokio::spawn(serve(
        users_listener,
        users::router(SkytraceLayer::with_tracer(users_tracer.clone())),
    ));
    let frontend_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let frontend_addr = frontend_listener.local_addr()?;
    let client = reqwest::Client::new();
    tokio::spawn(serve(
        frontend_listener,
        frontend::router(frontend::Backends {
            users: format!("http://{users_addr}"),
            client: client.clone(),
        }),
    ));
    println!("demo-frontend on http://{frontend_addr}, demo-users on http://{users_addr}\n");

    // A meter of the application's own, beside the built-in ones.
    let requests = skytrace::meter::counter("demo_requests").build()?;
    for (path, what) in REQUESTS {
        requests.inc();
        let response = client
            .get(format!("http://{frontend_addr}{path}"))
            .send()
            .await?;
        println!("GET {path} -> {} ({what})", response.status());
    }
    let health = client
        .get(format!("http://{users_addr}/health"))
        .send()
        .await?;
    println!(
        "GET /health -> {} (ignored path: not traced)",
        health.status()
    );

    // Two segments per request: one per service.
    let mut expected = REQUESTS.len() * 2;

    if let Some(collector) = &collector {
        // OAP's dynamic configuration, from the embedded collector: an ignore rule for the
        // users service, applied on its next fetch without a restart.
        let rule = "/health,/users/**";
        collector.set_dynamic_config([("agent.trace.ignore_path", rule)]);
        println!(
            "
the collector now serves agent.trace.ignore_path={rule}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !users_tracer.is_ignored_path("/users/7") && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "demo-users applied it: ignore paths now {:?}",
            users_tracer.settings().ignore_paths
        );
        let response = client
            .get(format!("http://{frontend_addr}/checkout/7"))
            .send()
            .await?;
        println!(
            "GET /checkout/7 -> {} (traced by demo-frontend only: /users/7 is ignored now)",
            response.status()
        );
        expected += 1;
        // A report that counts every segment sent: the reporters' next period after the last.
        let wanted = expected as f64 / 2.0;
        collector
            .wait_for(Duration::from_secs(10), |r| {
                r.meters.iter().any(|d| {
                    single(d).is_some_and(|(n, v)| n == names::AGENT_SEGMENTS_SENT && v >= wanted)
                })
            })
            .await;
    }
    if let (Some(collector), Some(url)) = (&collector, &ui_url) {
        // The agents keep running: print what arrived, then keep sending for the web view.
        let segments = collector
            .wait_for_segments(expected, Duration::from_secs(10))
            .await;
        println!(
            "\n{}",
            render_trace_tree_with_logs(&segments, &collector.logs(), Detail::Normal)
        );
        print_meters(&collector.meters());
        if segments.len() < expected {
            return Err(format!(
                "expected {expected} segments, the collector has {}",
                segments.len()
            )
            .into());
        }
        // The users service traces /users/… again, so new traces cross both services.
        collector.set_dynamic_config(Vec::<(String, String)>::new());
        println!(
            "\nweb view: {url} — a request every {} s until Ctrl-C",
            LIVE_PERIOD.as_secs()
        );
        let mut next = REQUESTS.iter().cycle();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                () = tokio::time::sleep(LIVE_PERIOD) => {}
            }
            if let Some((path, _)) = next.next() {
                // A failed request is a trace too; nothing to stop for.
                let _ = client
                    .get(format!("http://{frontend_addr}{path}"))
                    .send()
                    .await;
            }
        }
    }
    let frontend_stats = frontend_agent.shutdown(Duration::from_secs(5));
    let users_stats = users_tracer.reporter().shutdown(Duration::from_secs(5));
    let sent = frontend_stats.sent + users_stats.sent;
    println!(
        "\nsegments sent: {sent} (dropped {}, failed {})",
        frontend_stats.dropped + users_stats.dropped,
        frontend_stats.failed + users_stats.failed
    );

    match collector {
        Some(collector) if ui_url.is_some() => collector.shutdown().await,
        Some(collector) => {
            let segments = collector
                .wait_for_segments(expected, Duration::from_secs(10))
                .await;
            // The log records the services reported, under the span they were written in.
            let logs = collector.logs();
            println!(
                "\n{}",
                render_trace_tree_with_logs(&segments, &logs, Detail::Normal)
            );
            print_meters(&collector.meters());
            if segments.len() < expected {
                return Err(format!(
                    "expected {expected} segments, the collector has {}",
                    segments.len()
                )
                .into());
            }
            check_shapes(&segments)?;
            collector.shutdown().await;
        }
        None => {
            if sent < expected as u64 {
                return Err(
                    format!("only {sent} of {expected} segments reached {backends}").into(),
                );
            }
            println!("open SkyWalking's trace view: services demo-frontend and demo-users");
        }
    }
    Ok(())
}

/// What the demo shows and the README promises, checked so that the demo (a CI step) fails when
/// it stops being so: every frontend entry span carries its status and a 5xx is an error; the
/// database call is an exit span with a peer, which OAP draws on its map.
fn check_shapes(segments: &[SegmentObject]) -> Result<(), String> {
    for segment in segments.iter().filter(|s| s.service == "demo-frontend") {
        let entry = &segment.spans[0];
        let status = entry
            .tags
            .iter()
            .find(|t| t.key == "http.status_code")
            .map(|t| t.value.as_str())
            .ok_or_else(|| format!("{} has no http.status_code", entry.operation_name))?;
        if status.starts_with('5') != entry.is_error {
            return Err(format!(
                "{} answered {status} but is_error = {}",
                entry.operation_name, entry.is_error
            ));
        }
    }
    let database = segments
        .iter()
        .flat_map(|s| &s.spans)
        .any(|s| s.operation_name == "SELECT users" && s.span_type == SpanType::Exit as i32);
    if !database {
        return Err("no exit span SELECT users: OAP's map would show no database".into());
    }
    Ok(())
}

fn single(data: &MeterData) -> Option<(&str, f64)> {
    match &data.metric {
        Some(Metric::SingleValue(v)) => Some((v.name.as_str(), v.value)),
        _ => None,
    }
}

/// The last value received of a few meters.
/// The application's own logger, in the demo: discards every record.
struct Discard;

impl log::Log for Discard {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        false
    }
    fn log(&self, _: &log::Record<'_>) {}
    fn flush(&self) {}
}

fn print_meters(meters: &[MeterData]) {
    let shown = [
        (
            "demo_requests",
            "requests counted by the demo's own counter",
        ),
        (names::PROCESS_RESIDENT_MEMORY, "bytes resident"),
        (names::PROCESS_THREADS, "threads"),
        (names::PROCESS_CPU_UTILIZATION, "% of one CPU"),
        (names::TOKIO_WORKERS, "tokio workers"),
        (names::TOKIO_ALIVE_TASKS, "tokio tasks alive"),
        (
            names::AGENT_SEGMENTS_CREATED,
            "segments started (demo-frontend)",
        ),
        (names::AGENT_SEGMENTS_SENT, "segments sent (demo-frontend)"),
    ];
    println!("meters ({} values received; last of each):", meters.len());
    for (name, what) in shown {
        let last = meters
            .iter()
            .filter_map(single)
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .next_back();
        match last {
            Some(v) => println!("  {name} = {v:.1}  ({what})"),
            None => println!("  {name}: none yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<SocketAddr>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]), Ok(None));
        let default = Some(DEFAULT_UI.parse().unwrap());
        assert_eq!(parse(&["--ui"]), Ok(default));
        assert_eq!(
            parse(&["--ui", "127.0.0.1:0"]),
            Ok(Some("127.0.0.1:0".parse().unwrap()))
        );
        assert_eq!(
            parse(&["--ui=[::1]:9"]),
            Ok(Some("[::1]:9".parse().unwrap()))
        );
        assert!(
            parse(&["--ui", "8080"])
                .unwrap_err()
                .contains("not an IP:PORT")
        );
        assert!(parse(&["--x"]).unwrap_err().contains("unknown argument"));
        assert_eq!(parse(&["--help"]), Err(USAGE.to_owned()));
    }
}
