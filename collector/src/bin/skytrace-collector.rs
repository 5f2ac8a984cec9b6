//! `skytrace-collector`: a stand-in SkyWalking OAP for the terminal.
//!
//! Listens like OAP (default `127.0.0.1:11800`), prints one line per thing received and, once
//! a trace has been quiet for a moment, its tree (with span logs, refs and peers). Keeps only
//! the last `--keep` segments in memory. With `--ui ADDR`, also serves a web page of what it
//! received (see `CollectorBuilder::ui`). Stop it with Ctrl-C.

#[path = "skytrace-collector/profiling.rs"]
mod profiling;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skytrace_collector::skytrace_proto::v3::SegmentObject;
use skytrace_collector::skytrace_proto::v3::log_data_body::Content;
use skytrace_collector::skytrace_proto::v3::{KeyStringValuePair, LogData, meter_data::Metric};
use skytrace_collector::{Collector, Detail, Event, render_trace_tree_with};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

const USAGE: &str = "\
usage: skytrace-collector [--addr IP:PORT] [--ui IP:PORT] [--token TOKEN] [--stall] [--verbose]
                          [--keep N] [--dynamic-config FILE]

A stand-in SkyWalking OAP: receives what agents report over gRPC and prints it: one line per
thing received and, once a trace has been quiet for half a second, the trace as a tree.

  --addr IP:PORT   address to listen on (default 127.0.0.1:11800)
  --ui IP:PORT     also serve a web page of what arrives on this address, e.g. 127.0.0.1:8080
                   (open http://127.0.0.1:8080/): recent traces to filter, each one as a
                   waterfall across services with its tags, logs and log records, the
                   instances, meters and events, updated as data arrives. Keep it on loopback:
                   what agents send can hold personal data
  --token TOKEN    reject calls whose `authentication` metadata is not TOKEN
  --stall          accept `collect` streams but never read them (a stuck OAP)
  -v, --verbose    trees also show every ref, and each segment's id and instance
  --keep N         segments kept in memory to draw trees (default 10000, at least 1): older
                   ones are dropped, and the drops counted in a printed note, so memory stays
                   bounded however long it runs; a trace that outlives its dropped segments
                   is drawn from those left. The web page keeps as many segments, and as
                   many log records
  --dynamic-config FILE
                   serve FILE's `key=value` lines (`#` starts a comment) as OAP's dynamic
                   configuration, e.g. `agent.trace.ignore_path=/health,/users/**`; read
                   again after every fetch, so an edit reaches agents within two fetches
                   (SW_AGENT_COLLECTOR_GET_AGENT_DYNAMIC_CONFIG_INTERVAL, 20 s by default)
  -h, --help       print this help

In a tree, a span line reads
  [service] operation (Kind, Layer) N ms ← client  → peer  ERROR  tag=value …
([service] on a segment's first span; ← the caller's address on entry spans, → the address
called on exit spans). Under it, before its children:
  ref Kind from service/instance endpoint (segment S, span N, address A)
      where the segment was continued from (another service's `sw8`: CrossProcess; another
      task: CrossThread), when the tree does not show it already (--verbose: always)
  log +N ms key=value …
      the span's logs, in time order, N counted from the span's start (an error's message)";

/// Segments kept in memory by default (`--keep`).
const DEFAULT_KEEP: usize = 10_000;

/// A trace is printed once no segment of any trace arrived for this long...
const QUIET: Duration = Duration::from_millis(500);
/// ...or at the latest this long after its first unprinted segment.
const MAX_DELAY: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    ui: Option<SocketAddr>,
    token: Option<String>,
    stall: bool,
    detail: Detail,
    keep: usize,
    dynamic_config: Option<std::path::PathBuf>,
    profiling: profiling::Args,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 11800)),
        ui: None,
        token: None,
        stall: false,
        detail: Detail::Normal,
        keep: DEFAULT_KEEP,
        dynamic_config: None,
        profiling: profiling::Args::default(),
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
            "--ui" => {
                let text = value("IP:PORT")?;
                parsed.ui = Some(text.parse().map_err(|_| {
                    format!("--ui: `{text}` is not an IP:PORT address (e.g. 127.0.0.1:8080)")
                })?);
            }
            "--token" => parsed.token = Some(value("TOKEN")?),
            "--stall" if inline.is_none() => parsed.stall = true,
            "-v" | "--verbose" if inline.is_none() => parsed.detail = Detail::Verbose,
            "--stall" | "--verbose" => return Err(format!("{name} takes no value")),
            "--keep" => {
                let text = value("N")?;
                parsed.keep = match text.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--keep: `{text}` is not a number of segments >= 1")),
                };
            }
            "--dynamic-config" => {
                let path = std::path::PathBuf::from(value("FILE")?);
                read_dynamic_config(&path)?;
                parsed.dynamic_config = Some(path);
            }
            other => match parsed.profiling.parse(other, &mut |what| value(what)) {
                Some(result) => result?,
                None => return Err(format!("unknown argument `{other}`")),
            },
        }
    }
    parsed.profiling.check()?;
    Ok(Some(parsed))
}

/// The `key=value` pairs of a dynamic-configuration file.
fn read_dynamic_config(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--dynamic-config: cannot read {}: {e}", path.display()))?;
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "--dynamic-config: {} line {}: `{line}` is not key=value",
                path.display(),
                number + 1
            ));
        };
        pairs.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(pairs)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}\n{}", profiling::USAGE);
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
    // Nothing is stored by the collector itself: `window` keeps what the trees need, bounded.
    let mut builder = Collector::builder()
        .addr(args.addr)
        .stall(args.stall)
        .store(false)
        .ui_keep(args.keep);
    if let Some(ui) = args.ui {
        builder = builder.ui(ui);
    }
    if let Some(token) = args.token {
        builder = builder.require_token(token);
    }
    builder = args.profiling.apply(builder);
    let collector = match builder.start().await {
        Ok(collector) => collector,
        Err(err) => {
            if args.ui.is_some() && err.to_string().starts_with("the web view") {
                eprintln!("skytrace-collector: cannot listen on {err}");
            } else {
                eprintln!("skytrace-collector: cannot listen on {}: {err}", args.addr);
            }
            return ExitCode::FAILURE;
        }
    };
    let mut events = collector.subscribe_events();
    let serve_config = |collector: &Collector, out: &mut Output| {
        if let Some(path) = &args.dynamic_config {
            match read_dynamic_config(path) {
                Ok(pairs) => collector.set_dynamic_config(pairs),
                Err(err) => out.line(format!("{err}; serving the configuration read before")),
            }
        }
    };
    let mut out = Output::default();
    out.line(format!(
        "skytrace-collector listening on {}{} (Ctrl-C to stop)",
        collector.addr(),
        if args.stall { ", stalled" } else { "" }
    ));
    if let Some(url) = collector.ui_url() {
        out.line(format!("web view on {url}"));
    }
    serve_config(&collector, &mut out);
    if let Some(banner) = args.profiling.banner() {
        out.line(banner);
    }

    let mut window = Window::new(args.keep);
    // Traces with segments not printed yet, in arrival order; when the first one came.
    let mut dirty: Vec<String> = Vec::new();
    // The same, for lookups: a flood of traces must not make each arrival a linear search.
    let mut dirty_set: HashSet<String> = HashSet::new();
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
                for tree in window.trees(&dirty, args.detail) {
                    out.text(&tree);
                    out.text("\n");
                }
                dirty.clear();
                dirty_set.clear();
                if let Some(note) = window.drop_note() {
                    out.line(note);
                }
            }
            Some(Ok(Event::Segment(segment))) => {
                last_segment = Instant::now();
                if dirty.is_empty() {
                    dirty_since = last_segment;
                }
                if dirty_set.insert(segment.trace_id.clone()) {
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
                window.push(segment);
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
                out.line(format!("config      {} uuid={:?}", r.service, r.uuid));
                // Read again for the next request: edits are served without a restart.
                serve_config(&collector, &mut out);
            }
            Some(Ok(Event::ServiceEvent(e))) => {
                let (service, instance) = e.source.as_ref().map_or(("", ""), |s| {
                    (s.service.as_str(), s.service_instance.as_str())
                });
                out.line(format!(
                    "event       {service}/{instance} {}: {}",
                    e.name, e.message
                ))
            }
            Some(Ok(Event::Rejected { rpc })) => {
                out.line(format!("rejected    {rpc}: missing or wrong token"))
            }
            Some(Ok(event)) => {
                if let Some(text) = profiling::describe(&event) {
                    out.text(&text);
                }
            }
            Some(Err(RecvError::Lagged(n))) => out.line(format!("(missed {n} events)")),
            Some(Err(RecvError::Closed)) => break,
        }
    }
    collector.shutdown().await;
    ExitCode::SUCCESS
}

/// The last `keep` segments, from which trees are drawn; older ones are dropped and counted.
struct Window {
    keep: usize,
    segments: VecDeque<SegmentObject>,
    dropped: u64,
    /// `dropped` when the last note about drops was printed.
    noted: u64,
}

impl Window {
    fn new(keep: usize) -> Self {
        Window {
            keep,
            segments: VecDeque::new(),
            dropped: 0,
            noted: 0,
        }
    }

    fn push(&mut self, segment: SegmentObject) {
        while self.segments.len() >= self.keep {
            self.segments.pop_front();
            self.dropped += 1;
        }
        self.segments.push_back(segment);
    }

    /// The trees of `traces`, in that order, from the segments still kept (one pass over them).
    fn trees(&self, traces: &[String], detail: Detail) -> Vec<String> {
        let mut of_trace: HashMap<&str, Vec<SegmentObject>> = traces
            .iter()
            .map(|trace| (trace.as_str(), Vec::new()))
            .collect();
        for segment in &self.segments {
            if let Some(list) = of_trace.get_mut(segment.trace_id.as_str()) {
                list.push(segment.clone());
            }
        }
        traces
            .iter()
            .filter_map(|trace| {
                let segments = of_trace.remove(trace.as_str())?;
                (!segments.is_empty()).then(|| render_trace_tree_with(&segments, detail))
            })
            .collect()
    }

    /// A note when segments were dropped since the last one.
    fn drop_note(&mut self) -> Option<String> {
        if self.dropped == self.noted {
            return None;
        }
        let new = self.dropped - self.noted;
        self.noted = self.dropped;
        Some(format!(
            "dropped     {new} older segment(s) from memory ({} in all): only the last {} are kept for trees (--keep)",
            self.dropped, self.keep
        ))
    }
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
        assert_eq!(default.detail, Detail::Normal);
        assert_eq!(default.keep, DEFAULT_KEEP);

        let given = parse(&[
            "--addr",
            "0.0.0.0:1234",
            "--token=s3",
            "--stall",
            "-v",
            "--keep=5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(given.addr.to_string(), "0.0.0.0:1234");
        assert_eq!(given.ui, None);
        assert_eq!(
            parse(&["--ui", "127.0.0.1:8080"]).unwrap().unwrap().ui,
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert!(parse(&["--ui", "8080"]).unwrap_err().contains("--ui"));
        assert_eq!(given.token.as_deref(), Some("s3"));
        assert!(given.stall);
        assert_eq!(given.detail, Detail::Verbose);
        assert_eq!(given.keep, 5);
        assert_eq!(
            parse(&["--verbose"]).unwrap().unwrap().detail,
            Detail::Verbose
        );
        assert!(parse(&["--keep", "0"]).unwrap_err().contains(">= 1"));
        assert!(parse(&["--keep", "many"]).unwrap_err().contains(">= 1"));
        assert!(parse(&["--verbose=yes"]).is_err());
        assert_eq!(
            parse(&["--addr=[::1]:9"])
                .unwrap()
                .unwrap()
                .addr
                .to_string(),
            "[::1]:9"
        );

        let file = std::env::temp_dir().join(format!("skytrace-dc-{}", std::process::id()));
        std::fs::write(
            &file,
            "# ignore rules\nagent.trace.ignore_path = /health,/users/**\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let given = parse(&["--dynamic-config", &path]).unwrap().unwrap();
        assert_eq!(given.dynamic_config.as_deref(), Some(file.as_path()));
        assert_eq!(
            read_dynamic_config(&file).unwrap(),
            [(
                "agent.trace.ignore_path".to_owned(),
                "/health,/users/**".to_owned()
            )]
        );
        std::fs::write(&file, "no pair here\n").unwrap();
        assert!(
            parse(&["--dynamic-config", &path])
                .unwrap_err()
                .contains("line 1")
        );
        std::fs::remove_file(&file).unwrap();
        assert!(
            parse(&["--dynamic-config", &path])
                .unwrap_err()
                .contains("cannot read")
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

    fn segment(trace: &str, id: &str) -> SegmentObject {
        SegmentObject {
            trace_id: trace.into(),
            trace_segment_id: id.into(),
            service: "svc".into(),
            ..Default::default()
        }
    }

    #[test]
    fn window_keeps_the_last_segments_and_counts_drops() {
        let mut window = Window::new(2);
        assert_eq!(window.drop_note(), None);
        window.push(segment("a", "a1"));
        window.push(segment("b", "b1"));
        window.push(segment("a", "a2"));
        assert_eq!(window.segments.len(), 2);
        let note = window.drop_note().unwrap();
        assert!(
            note.contains("1 older segment(s)") && note.contains("last 2"),
            "{note}"
        );
        assert_eq!(window.drop_note(), None, "said once");
        // `a1` is gone: trace a is drawn from `a2` alone; a trace with nothing left is skipped.
        let trees = window.trees(&["gone".into(), "a".into(), "b".into()], Detail::Normal);
        assert_eq!(trees.len(), 2);
        assert!(trees[0].starts_with("trace a: 1 segment"), "{}", trees[0]);
        assert!(trees[1].starts_with("trace b: 1 segment"), "{}", trees[1]);
    }
}
