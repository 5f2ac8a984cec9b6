//! The `skytrace-collector` binary: listens, prints arrivals and trace trees.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skytrace_proto::v3::management_service_client::ManagementServiceClient;
use skytrace_proto::v3::trace_segment_report_service_client::TraceSegmentReportServiceClient;
use skytrace_proto::v3::{
    InstancePingPkg, KeyStringValuePair, Log, RefType, SegmentObject, SegmentReference, SpanObject,
    SpanType,
};

/// Kills the child process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn next_line(lines: &mpsc::Receiver<String>, deadline: Instant) -> String {
    let left = deadline.saturating_duration_since(Instant::now());
    lines.recv_timeout(left).expect("no output in time")
}

/// Starts the binary with `args` on a free port: the process, its output lines, and the
/// address it listens on.
fn start(args: &[&str], deadline: Instant) -> (Running, mpsc::Receiver<String>, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_skytrace-collector"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = next_line(&lines, deadline);
    let addr = first
        .split_whitespace()
        .find(|word| word.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    (child, lines, addr)
}

/// Sends `segments` in one `collect` stream to the collector at `addr`.
fn send(addr: &str, segments: Vec<SegmentObject>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut traces = TraceSegmentReportServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        traces.collect(tokio_stream::iter(segments)).await.unwrap();
    });
}

/// Output lines until one contains `what` (or the deadline passes: a panic).
fn until(lines: &mpsc::Receiver<String>, what: &str, deadline: Instant) -> String {
    let mut output: Vec<String> = Vec::new();
    while !output.iter().any(|l| l.contains(what)) {
        output.push(next_line(lines, deadline));
    }
    let text = output.join("\n");
    println!("{text}");
    text
}

#[test]
fn prints_arrivals_and_trees() {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (_child, lines, addr) = start(&[], deadline);

    let front = SegmentObject {
        trace_id: "trace-9".into(),
        trace_segment_id: "front".into(),
        service: "frontend".into(),
        service_instance: "f1".into(),
        spans: vec![
            SpanObject {
                span_id: 1,
                parent_span_id: 0,
                start_time: 10,
                end_time: 20,
                operation_name: "/price".into(),
                peer: "backend:80".into(),
                span_type: SpanType::Exit as i32,
                ..Default::default()
            },
            SpanObject {
                span_id: 0,
                parent_span_id: -1,
                start_time: 0,
                end_time: 30,
                operation_name: "GET:/cart".into(),
                span_type: SpanType::Entry as i32,
                ..Default::default()
            },
        ],
        is_size_limited: false,
    };
    let back = SegmentObject {
        trace_id: "trace-9".into(),
        trace_segment_id: "back".into(),
        service: "backend".into(),
        service_instance: "b1".into(),
        spans: vec![SpanObject {
            span_id: 0,
            parent_span_id: -1,
            start_time: 12,
            end_time: 18,
            operation_name: "/price".into(),
            span_type: SpanType::Entry as i32,
            refs: vec![SegmentReference {
                ref_type: RefType::CrossProcess as i32,
                trace_id: "trace-9".into(),
                parent_trace_segment_id: "front".into(),
                parent_span_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        is_size_limited: false,
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("http://{addr}");
        let mut management = ManagementServiceClient::connect(url.clone()).await.unwrap();
        management
            .keep_alive(InstancePingPkg {
                service: "frontend".into(),
                service_instance: "f1".into(),
                layer: String::new(),
            })
            .await
            .unwrap();
        let mut traces = TraceSegmentReportServiceClient::connect(url).await.unwrap();
        traces
            .collect(tokio_stream::iter([back, front]))
            .await
            .unwrap();
    });

    let text = until(&lines, "[backend]", deadline);
    assert!(text.contains("keep-alive  frontend/f1"), "{text}");
    assert!(
        text.contains("segment     backend/b1 trace=trace-9"),
        "{text}"
    );
    assert!(
        text.contains("segment     frontend/f1 trace=trace-9"),
        "{text}"
    );
    let tree = &text[text.find("trace trace-9:").expect(&text)..];
    assert_eq!(
        tree,
        "trace trace-9: 2 segments, 3 spans, 30 ms\n\
         └─ [frontend] GET:/cart (Entry) 30 ms\n   \
            └─ /price (Exit) 10 ms → backend:80\n      \
               └─ [backend] /price (Entry) 6 ms",
    );
}

fn pair(key: &str, value: &str) -> KeyStringValuePair {
    KeyStringValuePair {
        key: key.into(),
        value: value.into(),
    }
}

/// What a user checks their instrumentation with: the span logs (a failed call's message), where
/// a continued trace came from, and the client's address on the entry span. And memory stays
/// bounded: with `--keep 2`, the third segment drops the first, with a note.
#[test]
fn prints_logs_refs_and_peers_and_keeps_a_bounded_window() {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (_child, lines, addr) = start(&["--keep", "2"], deadline);

    let old = |trace: &str| SegmentObject {
        trace_id: trace.into(),
        trace_segment_id: format!("{trace}-seg"),
        service: "old".into(),
        service_instance: "old-1".into(),
        spans: vec![SpanObject {
            span_id: 0,
            parent_span_id: -1,
            operation_name: "GET:/old".into(),
            span_type: SpanType::Entry as i32,
            ..Default::default()
        }],
        is_size_limited: false,
    };
    let users = SegmentObject {
        trace_id: "trace-7".into(),
        trace_segment_id: "users-seg".into(),
        service: "users".into(),
        service_instance: "users-1".into(),
        spans: vec![
            SpanObject {
                span_id: 1,
                parent_span_id: 0,
                start_time: 1_005,
                end_time: 1_025,
                operation_name: "/profiles".into(),
                peer: "profiles:8080".into(),
                span_type: SpanType::Exit as i32,
                is_error: true,
                logs: vec![Log {
                    time: 1_024,
                    data: vec![
                        pair("event", "error"),
                        pair("error.kind", "reqwest::Error"),
                        pair("message", "error sending request: connection refused"),
                    ],
                }],
                ..Default::default()
            },
            SpanObject {
                span_id: 0,
                parent_span_id: -1,
                start_time: 1_000,
                end_time: 1_030,
                operation_name: "GET:/users/{id}".into(),
                peer: "10.1.2.3:45678".into(),
                span_type: SpanType::Entry as i32,
                refs: vec![SegmentReference {
                    ref_type: RefType::CrossProcess as i32,
                    trace_id: "trace-7".into(),
                    parent_trace_segment_id: "gateway-seg".into(),
                    parent_span_id: 2,
                    parent_service: "gateway".into(),
                    parent_service_instance: "gateway-1".into(),
                    parent_endpoint: "GET:/api/users".into(),
                    network_address_used_at_peer: "users:8080".into(),
                }],
                ..Default::default()
            },
        ],
        is_size_limited: false,
    };
    send(&addr, vec![old("trace-old-1"), old("trace-old-2"), users]);

    let text = until(&lines, "dropped ", deadline);
    let tree = &text[text.find("trace trace-7:").expect(&text)..];
    let tree = &tree[..tree.find("\n\n").unwrap_or(tree.len())];
    assert_eq!(
        tree,
        "trace trace-7: 1 segment, 2 spans, 30 ms\n\
         └─ [users] GET:/users/{id} (Entry) 30 ms ← 10.1.2.3:45678\n   \
            │ ref CrossProcess from gateway/gateway-1 GET:/api/users (segment gateway-seg, span 2, address users:8080)\n   \
            └─ /profiles (Exit) 20 ms → profiles:8080 ERROR\n        \
                 log +19 ms event=error error.kind=reqwest::Error message=error sending request: connection refused",
    );
    // The first segment was dropped before its tree was drawn: one tree of the old service.
    assert_eq!(text.matches("[old]").count(), 1, "{text}");
    assert!(
        text.contains("dropped     1 older segment(s) from memory (1 in all): only the last 2"),
        "{text}"
    );
}

#[test]
fn rejects_bad_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_skytrace-collector"))
        .args(["--addr", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not an IP:PORT"), "{stderr}");
    assert!(stderr.contains("usage:"), "{stderr}");
}
