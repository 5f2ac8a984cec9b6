//! `skytrace-collector`: a stand-in SkyWalking OAP for the terminal.
//!
//! Listens like OAP (default `127.0.0.1:11800`), prints one line per thing received and, once
//! a trace has been quiet for a moment, its tree. Stop it with Ctrl-C.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skytrace_collector::skytrace_proto::v3::log_data_body::Content;
use skytrace_collector::skytrace_proto::v3::{KeyStringValuePair, LogData, meter_data::Metric};
use skytrace_collector::{Collector, Event, render_trace_tree};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

const USAGE: &str = "\
usage: skytrace-collector [--addr IP:PORT] [--token TOKEN] [--stall]

A stand-in SkyWalking OAP: receives what agents report over gRPC and prints it.

  --addr IP:PORT   address to listen on (default 127.0.0.1:11800)
  --token TOKEN    reject calls whose `authentication` metadata is not TOKEN
  --stall          accept `collect` streams but never read them (a stuck OAP)
  -h, --help       print this help";

/// A trace is printed once no segment of any trace arrived for this long...
const QUIET: Duration = Duration::from_millis(500);
/// ...or at the latest this long after its first unprinted segment.
const MAX_DELAY: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    token: Option<String>,
    stall: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 11800)),
        token: None,
        stall: false,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value: {what}"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => {
                let text = value("IP:PORT")?;
                parsed.addr = text.parse().map_err(|_| {
                    format!("--addr: `{text}` is not an IP:PORT address (e.g. 127.0.0.1:11800)")
                })?;
            }
            "--token" => parsed.token = Some(value("TOKEN")?),
            "--stall" if inline.is_none() => parsed.stall = true,
            "--stall" => return Err("--stall takes no value".into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("skytrace-collector: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("skytrace-collector: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let mut builder = Collector::builder().addr(args.addr).stall(args.stall);
    if let Some(token) = args.token {
        builder = builder.require_token(token);
    }
    let collector = match builder.start().await {
        Ok(collector) => collector,
        Err(err) => {
            eprintln!("skytrace-collector: cannot listen on {}: {err}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let mut events = collector.subscribe_events();
    let mut out = Output::default();
    out.line(format!(
        "skytrace-collector listening on {}{} (Ctrl-C to stop)",
        collector.addr(),
        if args.stall { ", stalled" } else { "" }
    ));

    // Traces with segments not printed yet, in arrival order; when the first one came.
    let mut dirty: Vec<String> = Vec::new();
    let mut dirty_since = Instant::now();
    let mut last_segment = Instant::now();
    while !out.broken {
        let event = if dirty.is_empty() {
            Some(events.recv().await)
        } else {
            let deadline = (last_segment + QUIET).min(dirty_since + MAX_DELAY);
            tokio::time::timeout_at(deadline, events.recv()).await.ok()
        };
        match event {
            None => {
                let segments = collector.segments();
                for trace in dirty.drain(..) {
                    let of_trace: Vec<_> = segments
                        .iter()
                        .filter(|s| s.trace_id == trace)
                        .cloned()
                        .collect();
                    out.text(&render_trace_tree(&of_trace));
                    out.text("\n");
                }
            }
            Some(Ok(Event::Segment(segment))) => {
                last_segment = Instant::now();
                if dirty.is_empty() {
                    dirty_since = last_segment;
                }
                if !dirty.contains(&segment.trace_id) {
                    dirty.push(segment.trace_id.clone());
                }
                let endpoint = segment
                    .spans
                    .iter()
                    .find(|s| s.parent_span_id == -1)
                    .map_or("", |s| s.operation_name.as_str());
                out.line(format!(
                    "segment     {}/{} trace={} {} span(s) {}",
                    segment.service,
                    segment.service_instance,
                    segment.trace_id,
                    segment.spans.len(),
                    endpoint,
                ));
            }
            Some(Ok(Event::InstanceProperties(p))) => out.line(format!(
                "properties  {}/{} {}",
                p.service,
                p.service_instance,
                pairs(&p.properties)
            )),
            Some(Ok(Event::Ping(p))) => {
                out.line(format!("keep-alive  {}/{}", p.service, p.service_instance))
            }
            Some(Ok(Event::Log(log))) => out.line(log_line(&log)),
            Some(Ok(Event::Meters(meters))) => {
                let names: Vec<&str> = meters
                    .iter()
                    .filter_map(|m| match &m.metric {
                        Some(Metric::SingleValue(v)) => Some(v.name.as_str()),
                        Some(Metric::Histogram(h)) => Some(h.name.as_str()),
                        None => None,
                    })
                    .collect();
                let from = meters.first().map_or("", |m| m.service.as_str());
                out.line(format!(
                    "meters      {from} {} value(s): {}",
                    meters.len(),
                    names.join(", ")
                ));
            }
            Some(Ok(Event::ConfigurationRequest(r))) => {
                out.line(format!("config      {} uuid={:?}", r.service, r.uuid))
            }
            Some(Ok(Event::Rejected { rpc })) => {
                out.line(format!("rejected    {rpc}: missing or wrong token"))
            }
            Some(Ok(_)) => {}
            Some(Err(RecvError::Lagged(n))) => out.line(format!("(missed {n} events)")),
            Some(Err(RecvError::Closed)) => break,
        }
    }
    collector.shutdown().await;
    ExitCode::SUCCESS
}

fn log_line(log: &LogData) -> String {
    let body = match log.body.as_ref().and_then(|b| b.content.as_ref()) {
        Some(Content::Text(t)) => t.text.as_str(),
        Some(Content::Json(j)) => j.json.as_str(),
        Some(Content::Yaml(y)) => y.yaml.as_str(),
        None => "",
    };
    let trace = log
        .trace_context
        .as_ref()
        .map(|t| format!(" trace={}", t.trace_id))
        .unwrap_or_default();
    format!(
        "log         {}/{}{trace} {body}",
        log.service, log.service_instance
    )
}

fn pairs(pairs: &[KeyStringValuePair]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|p| format!("{}={}", p.key, p.value))
        .collect();
    items.join(" ")
}

/// Stdout, with a UTC time stamp on event lines and control characters escaped. Stops the
/// program (via `broken`) when stdout goes away, e.g. a closed pipe.
#[derive(Default)]
struct Output {
    broken: bool,
}

impl Output {
    fn line(&mut self, line: String) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
        let mut clean = String::with_capacity(line.len());
        for c in line.chars() {
            if c.is_control() {
                clean.extend(c.escape_default());
            } else {
                clean.push(c);
            }
        }
        self.text(&format!("{h:02}:{m:02}:{s:02} {clean}\n"));
    }

    fn text(&mut self, text: &str) {
        let mut stdout = io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.broken = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let default = parse(&[]).unwrap().unwrap();
        assert_eq!(default.addr.to_string(), "127.0.0.1:11800");
        assert!(!default.stall && default.token.is_none());

        let given = parse(&["--addr", "0.0.0.0:1234", "--token=s3", "--stall"])
            .unwrap()
            .unwrap();
        assert_eq!(given.addr.to_string(), "0.0.0.0:1234");
        assert_eq!(given.token.as_deref(), Some("s3"));
        assert!(given.stall);
        assert_eq!(
            parse(&["--addr=[::1]:9"])
                .unwrap()
                .unwrap()
                .addr
                .to_string(),
            "[::1]:9"
        );

        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--addr"]).unwrap_err().contains("needs a value"));
        assert!(
            parse(&["--addr", "localhost"])
                .unwrap_err()
                .contains("not an IP:PORT")
        );
        assert!(parse(&["--stall=yes"]).is_err());
        assert!(parse(&["extra"]).unwrap_err().contains("unknown argument"));
    }
}
