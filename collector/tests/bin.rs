//! The `skytrace-collector` binary: listens, prints arrivals and trace trees.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skytrace_proto::v3::management_service_client::ManagementServiceClient;
use skytrace_proto::v3::trace_segment_report_service_client::TraceSegmentReportServiceClient;
use skytrace_proto::v3::{
    InstancePingPkg, RefType, SegmentObject, SegmentReference, SpanObject, SpanType,
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

#[test]
fn prints_arrivals_and_trees() {
    let child = Command::new(env!("CARGO_BIN_EXE_skytrace-collector"))
        .args(["--addr", "127.0.0.1:0"])
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
    let deadline = Instant::now() + Duration::from_secs(20);

    let first = next_line(&lines, deadline);
    let addr = first
        .split_whitespace()
        .find(|word| word.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();

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

    let mut output = Vec::new();
    while !output.iter().any(|l: &String| l.contains("[backend]")) {
        output.push(next_line(&lines, deadline));
    }
    let text = output.join("\n");
    println!("{text}");
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
