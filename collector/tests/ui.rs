//! The web view's JSON API and HTTP server: agents' data sent over real gRPC, read back over
//! real HTTP as the page reads it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use skytrace_collector::Collector;
use skytrace_proto::v3::event_service_client::EventServiceClient;
use skytrace_proto::v3::log_report_service_client::LogReportServiceClient;
use skytrace_proto::v3::management_service_client::ManagementServiceClient;
use skytrace_proto::v3::meter_data::Metric;
use skytrace_proto::v3::meter_report_service_client::MeterReportServiceClient;
use skytrace_proto::v3::trace_segment_report_service_client::TraceSegmentReportServiceClient;
use skytrace_proto::v3::{
    Event as ServiceEvent, InstancePingPkg, InstanceProperties, KeyStringValuePair, Label, Log,
    LogData, LogDataBody, LogTags, MeterData, MeterDataCollection, MeterSingleValue, RefType,
    SegmentObject, SegmentReference, Source, SpanLayer, SpanObject, SpanType, TextLog,
    TraceContext, log_data_body,
};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(10);

/// One HTTP/1.1 request (`Connection: close`) with this `Host`: status, headers, body.
fn request(addr: SocketAddr, method: &str, path: &str, host: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("the web view answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).expect("UTF-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// GETs `path` the way the page does (run off the runtime: the collector serves on it).
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let path = path.to_owned();
    let (status, _, body) =
        tokio::task::spawn_blocking(move || request(addr, "GET", &path, &addr.to_string()))
            .await
            .unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, json)
}

async fn channel(collector: &Collector) -> Channel {
    Channel::from_shared(collector.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn kv(key: &str, value: &str) -> KeyStringValuePair {
    KeyStringValuePair {
        key: key.into(),
        value: value.into(),
    }
}

fn span(id: i32, parent: i32, start: i64, end: i64, name: &str, kind: SpanType) -> SpanObject {
    SpanObject {
        span_id: id,
        parent_span_id: parent,
        start_time: start,
        end_time: end,
        operation_name: name.into(),
        span_type: kind as i32,
        ..Default::default()
    }
}

/// A trace across two services: the frontend's entry and its call; the users service's entry
/// (continued from the call) and a failed query.
fn checkout(trace: &str, start: i64) -> Vec<SegmentObject> {
    let front = format!("{trace}-front");
    let mut entry = span(
        0,
        -1,
        start,
        start + 50,
        "GET:/checkout/{id}",
        SpanType::Entry,
    );
    entry.span_layer = SpanLayer::Http as i32;
    entry.component_id = 49;
    entry.tags = vec![kv("http.method", "GET"), kv("url", "/checkout/7")];
    let mut call = span(1, 0, start + 5, start + 45, "GET:/users/7", SpanType::Exit);
    call.peer = "users:8080".into();
    call.component_id = 2;
    let mut callee = span(
        0,
        -1,
        start + 10,
        start + 40,
        "GET:/users/{id}",
        SpanType::Entry,
    );
    callee.refs = vec![SegmentReference {
        ref_type: RefType::CrossProcess as i32,
        trace_id: trace.into(),
        parent_trace_segment_id: front.clone(),
        parent_span_id: 1,
        parent_service: "frontend".into(),
        parent_service_instance: "frontend-1".into(),
        parent_endpoint: "GET:/checkout/{id}".into(),
        network_address_used_at_peer: "users:8080".into(),
    }];
    let mut query = span(
        1,
        0,
        start + 15,
        start + 35,
        "SELECT </script>",
        SpanType::Exit,
    );
    query.span_layer = SpanLayer::Database as i32;
    query.is_error = true;
    query.logs = vec![Log {
        time: start + 35,
        data: vec![kv("event", "error"), kv("message", "connection reset")],
    }];
    let segment = |id: String, service: &str, spans| SegmentObject {
        trace_id: trace.into(),
        trace_segment_id: id,
        service: service.into(),
        service_instance: format!("{service}-1"),
        spans,
        is_size_limited: false,
    };
    // Finished first, so sent first: the callee's segment.
    vec![
        segment(format!("{trace}-users"), "users", vec![query, callee]),
        segment(front, "frontend", vec![call, entry]),
    ]
}

fn record(trace: &str, segment: &str, span: i32, text: &str) -> LogData {
    LogData {
        timestamp: 1_000_030,
        service: "users".into(),
        service_instance: "users-1".into(),
        endpoint: "GET:/users/{id}".into(),
        body: Some(LogDataBody {
            r#type: "TEXT".into(),
            content: Some(log_data_body::Content::Text(TextLog { text: text.into() })),
        }),
        trace_context: Some(TraceContext {
            trace_id: trace.into(),
            trace_segment_id: segment.into(),
            span_id: span,
        }),
        tags: Some(LogTags {
            data: vec![kv("level", "ERROR"), kv("logger", "users::db")],
        }),
        layer: String::new(),
    }
}

#[tokio::test]
async fn the_api_shows_traces_spans_logs_instances_meters_and_events() {
    let collector = Collector::builder()
        .ui("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let ui = collector.ui_addr().expect("served");
    assert_eq!(collector.ui_url(), Some(format!("http://{ui}/")));
    let channel = channel(&collector).await;

    let (_, changes) = get(ui, "/api/changes").await;
    let before = changes["version"].as_u64().unwrap();

    let mut traces = TraceSegmentReportServiceClient::new(channel.clone());
    let mut sent = checkout("t1", 1_000_000);
    sent.extend(checkout("t2", 2_000_000));
    // A quick trace without errors, of the frontend alone.
    sent.push(SegmentObject {
        trace_id: "t3".into(),
        trace_segment_id: "t3-front".into(),
        service: "frontend".into(),
        service_instance: "frontend-1".into(),
        spans: vec![span(
            0,
            -1,
            3_000_000,
            3_000_002,
            "GET:/health-ish",
            SpanType::Entry,
        )],
        is_size_limited: false,
    });
    traces.collect(tokio_stream::iter(sent)).await.unwrap();
    LogReportServiceClient::new(channel.clone())
        .collect(tokio_stream::iter([
            record("t1", "t1-users", 0, "GET /users/7 failed: connection reset"),
            record("t1", "t1-gone", 4, "written in a segment never received"),
            record("t9", "t9-x", 0, "another trace"),
        ]))
        .await
        .unwrap();
    let mut management = ManagementServiceClient::new(channel.clone());
    management
        .report_instance_properties(InstanceProperties {
            service: "users".into(),
            service_instance: "users-1".into(),
            properties: vec![kv("language", "rust"), kv("hostname", "box")],
            layer: String::new(),
        })
        .await
        .unwrap();
    management
        .keep_alive(InstancePingPkg {
            service: "users".into(),
            service_instance: "users-1".into(),
            layer: "GENERAL".into(),
        })
        .await
        .unwrap();
    let meter = |value: f64, time: i64| MeterData {
        metric: Some(Metric::SingleValue(MeterSingleValue {
            name: "requests".into(),
            labels: vec![Label {
                name: "route".into(),
                value: "/users".into(),
            }],
            value,
        })),
        service: "users".into(),
        service_instance: "users-1".into(),
        timestamp: time,
    };
    let mut meters = MeterReportServiceClient::new(channel.clone());
    for (value, time) in [(1.0, 10_000), (3.0, 30_000)] {
        meters
            .collect_batch(tokio_stream::iter([MeterDataCollection {
                meter_data: vec![meter(value, time)],
            }]))
            .await
            .unwrap();
    }
    EventServiceClient::new(channel.clone())
        .collect(tokio_stream::iter([ServiceEvent {
            uuid: "e1".into(),
            source: Some(Source {
                service: "users".into(),
                service_instance: "users-1".into(),
                endpoint: String::new(),
            }),
            name: "Start".into(),
            r#type: 0,
            message: "Start Rust agent.".into(),
            parameters: [("OPTS".to_owned(), "x".to_owned())].into(),
            start_time: 5,
            end_time: 9,
            layer: "GENERAL".into(),
        }]))
        .await
        .unwrap();

    // The long poll answered at once: the version moved on.
    let (_, changes) = get(ui, &format!("/api/changes?after={before}")).await;
    assert!(changes["version"].as_u64().unwrap() > before, "{changes}");

    // The list: the latest first, each trace named after its root's endpoint (the frontend's,
    // though the users service's segment came first), its services root first.
    let (status, list) = get(ui, "/api/traces").await;
    assert_eq!(status, 200);
    assert_eq!(
        (list["total"].as_u64(), list["matched"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(list["services"], serde_json::json!(["frontend", "users"]));
    let ids: Vec<&str> = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t3", "t2", "t1"]);
    let t1 = &list["traces"][2];
    assert_eq!(t1["endpoint"], "GET:/checkout/{id}");
    assert_eq!(t1["services"], serde_json::json!(["frontend", "users"]));
    assert_eq!(
        (
            &t1["start"],
            &t1["duration"],
            &t1["spans"],
            &t1["segments"],
            &t1["errors"]
        ),
        (
            &1_000_000.into(),
            &50.into(),
            &4.into(),
            &2.into(),
            &1.into()
        )
    );

    // The filters: service, errors only, endpoint text (any case) or trace id, min duration.
    let count = |list: &Value| list["traces"].as_array().unwrap().len();
    assert_eq!(count(&get(ui, "/api/traces?service=users").await.1), 2);
    assert_eq!(count(&get(ui, "/api/traces?errors=1").await.1), 2);
    assert_eq!(count(&get(ui, "/api/traces?q=CHECKOUT").await.1), 2);
    assert_eq!(count(&get(ui, "/api/traces?q=t3").await.1), 1);
    assert_eq!(count(&get(ui, "/api/traces?min_ms=10").await.1), 2);
    assert_eq!(
        count(&get(ui, "/api/traces?min_ms=10&errors=1&limit=1").await.1),
        1
    );
    let (_, none) = get(ui, "/api/traces?service=nobody").await;
    assert_eq!((count(&none), none["matched"].as_u64()), (0, Some(0)));

    // One trace: spans in tree order, the users service's segment under the frontend's call.
    let (status, trace) = get(ui, "/api/trace?id=t1").await;
    assert_eq!(status, 200);
    let spans = trace["spans"].as_array().unwrap();
    let rows: Vec<(&str, u64, i64)> = spans
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["depth"].as_u64().unwrap(),
                s["parent"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("GET:/checkout/{id}", 0, -1),
            ("GET:/users/7", 1, 0),
            ("GET:/users/{id}", 2, 1),
            ("SELECT </script>", 3, 2),
        ]
    );
    assert_eq!(trace["services"], serde_json::json!(["frontend", "users"]));
    assert_eq!(
        (&trace["duration"], &trace["errors"]),
        (&50.into(), &1.into())
    );
    let entry = &spans[0];
    assert_eq!(
        (
            &entry["kind"],
            &entry["layer"],
            &entry["component"],
            &entry["component_id"]
        ),
        (&"Entry".into(), &"Http".into(), &"http".into(), &49.into())
    );
    assert_eq!(
        entry["tags"],
        serde_json::json!([["http.method", "GET"], ["url", "/checkout/7"]])
    );
    assert_eq!(spans[1]["peer"], "users:8080");
    let callee = &spans[2];
    assert_eq!(callee["first_of_segment"], true);
    assert_eq!(callee["refs"][0]["type"], "CrossProcess");
    assert_eq!(callee["refs"][0]["linked"], true, "drawn under its parent");
    assert_eq!(callee["refs"][0]["endpoint"], "GET:/checkout/{id}");
    let records = callee["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{callee}");
    assert_eq!(
        (
            &records[0]["level"],
            &records[0]["logger"],
            &records[0]["text"]
        ),
        (
            &"ERROR".into(),
            &"users::db".into(),
            &"GET /users/7 failed: connection reset".into()
        )
    );
    let query = &spans[3];
    assert_eq!(query["error"], true);
    assert_eq!(
        query["logs"][0]["data"],
        serde_json::json!([["event", "error"], ["message", "connection reset"]])
    );
    // A record of the trace whose span never arrived is listed apart; other traces' are not.
    let apart = trace["records"].as_array().unwrap();
    assert_eq!(apart.len(), 1);
    assert_eq!(apart[0]["text"], "written in a segment never received");
    // Nothing an agent sent can close the page's markup: `<` is escaped in the JSON itself.
    let raw =
        tokio::task::spawn_blocking(move || request(ui, "GET", "/api/trace?id=t1", "localhost"))
            .await
            .unwrap();
    assert!(!raw.2.contains("</script>") && raw.2.contains("\\u003c/script\\u003e"));

    let (status, missing) = get(ui, "/api/trace?id=nope").await;
    assert_eq!(status, 404);
    assert!(missing["error"].as_str().unwrap().contains("--keep"));

    // Instances: properties, the last keep-alive, what each sent.
    let (_, instances) = get(ui, "/api/instances").await;
    let list = instances["instances"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{instances}");
    let users = &list[1];
    assert_eq!(
        (&users["service"], &users["instance"]),
        (&"users".into(), &"users-1".into())
    );
    assert_eq!(
        users["properties"],
        serde_json::json!([["language", "rust"], ["hostname", "box"]])
    );
    assert!(users["last_keep_alive"].as_i64().unwrap() > 0);
    assert_eq!(
        (&users["keep_alives"], &users["layer"]),
        (&1.into(), &"GENERAL".into())
    );
    assert_eq!(
        (&users["segments"], &users["logs"], &users["meter_reports"]),
        (&2.into(), &3.into(), &2.into())
    );
    assert_eq!(
        list[0]["last_keep_alive"], 0,
        "the frontend sent no keep-alive"
    );

    // Meters: one series, its points in time order.
    let (_, meters) = get(ui, "/api/meters").await;
    let series = &meters["series"][0];
    assert_eq!(
        (&series["name"], &series["kind"]),
        (&"requests".into(), &"value".into())
    );
    assert_eq!(series["labels"], serde_json::json!([["route", "/users"]]));
    assert_eq!(
        series["points"],
        serde_json::json!([[10_000, 1], [30_000, 3]])
    );

    // Events and log records.
    let (_, events) = get(ui, "/api/events").await;
    let event = &events["events"][0];
    assert_eq!(
        (
            &event["name"],
            &event["service"],
            &event["type"],
            &event["message"]
        ),
        (
            &"Start".into(),
            &"users".into(),
            &"Normal".into(),
            &"Start Rust agent.".into()
        )
    );
    assert_eq!(event["parameters"], serde_json::json!([["OPTS", "x"]]));
    let (_, logs) = get(ui, "/api/logs?q=reset").await;
    assert_eq!(
        (logs["total"].as_u64(), logs["matched"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(logs["logs"][0]["trace"], "t1");
    let (_, overview) = get(ui, "/api/overview").await;
    assert_eq!(
        (
            &overview["traces"],
            &overview["segments"],
            &overview["logs"],
            &overview["events"]
        ),
        (&3.into(), &5.into(), &3.into(), &1.into())
    );

    collector.shutdown().await;
}

/// `ui_keep` bounds what the page can show: older segments and records are dropped and counted.
#[tokio::test]
async fn keeps_the_latest_segments_only() {
    let collector = Collector::builder()
        .ui("127.0.0.1:0".parse().unwrap())
        .ui_keep(3)
        .store(false)
        .start()
        .await
        .unwrap();
    let ui = collector.ui_addr().unwrap();
    let mut traces = TraceSegmentReportServiceClient::new(channel(&collector).await);
    let mut sent = checkout("old", 1_000);
    sent.extend(checkout("new", 2_000));
    traces.collect(tokio_stream::iter(sent)).await.unwrap();
    let (_, overview) = get(ui, "/api/overview").await;
    assert_eq!(
        (
            &overview["segments"],
            &overview["dropped_segments"],
            &overview["keep"]
        ),
        (&3.into(), &1.into(), &3.into())
    );
    // "old" lost its first segment (the users service's) and is drawn from the one left.
    let (_, old) = get(ui, "/api/trace?id=old").await;
    assert_eq!(old["spans"].as_array().unwrap().len(), 2, "{old}");
    assert_eq!(old["services"], serde_json::json!(["frontend"]));
    traces
        .collect(tokio_stream::iter(checkout("newest", 3_000)))
        .await
        .unwrap();
    let (status, _) = get(ui, "/api/trace?id=old").await;
    assert_eq!(status, 404, "gone with its last segment");
    let (_, list) = get(ui, "/api/traces").await;
    assert_eq!(list["total"], 2);
    collector.shutdown().await;
}

/// The page and its files come from the binary; the server answers loopback names only, GET
/// only, and a long poll ends when data arrives.
#[tokio::test]
async fn serves_the_page_safely_and_follows_changes() {
    let collector = Collector::builder()
        .ui("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let ui = collector.ui_addr().unwrap();
    let fetch = |method: &'static str, path: &'static str, host: &'static str| async move {
        tokio::task::spawn_blocking(move || request(ui, method, path, host))
            .await
            .unwrap()
    };

    let (status, head, body) = fetch("GET", "/", "localhost:8080").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"));
    assert!(body.contains("<script src=\"app.js\" defer></script>"));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "nothing from elsewhere"
    );
    for (path, kind) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let (status, head, body) = fetch("GET", path, "127.0.0.1").await;
        assert_eq!(status, 200, "{path}");
        assert!(head.contains(kind), "{head}");
        assert!(body.len() > 1_000, "{path}");
        assert!(
            !body.contains("https://"),
            "{path} fetches nothing from elsewhere"
        );
    }
    let (status, _, body) = fetch("HEAD", "/", "[::1]:80").await;
    assert_eq!((status, body.as_str()), (200, ""));

    // DNS rebinding: a page of another site that resolves its name to loopback is refused.
    let (status, _, body) = fetch("GET", "/api/traces", "evil.example:8080").await;
    assert_eq!(status, 421);
    assert!(body.contains("loopback"));
    assert_eq!(fetch("POST", "/api/traces", "localhost").await.0, 405);
    assert_eq!(fetch("GET", "/nothing", "localhost").await.0, 404);

    // A long poll waits for the next change, and ends with it.
    let (_, now) = get(ui, "/api/changes").await;
    let version = now["version"].as_u64().unwrap();
    let poll = tokio::spawn(async move { get(ui, &format!("/api/changes?after={version}")).await });
    tokio::task::yield_now().await;
    let mut management = ManagementServiceClient::new(channel(&collector).await);
    management
        .keep_alive(InstancePingPkg {
            service: "svc".into(),
            service_instance: "i".into(),
            layer: String::new(),
        })
        .await
        .unwrap();
    let (_, changed) = tokio::time::timeout(WAIT * 3, poll).await.unwrap().unwrap();
    assert!(changed["version"].as_u64().unwrap() > version);

    // Shutting down ends the server, open long polls included.
    let (_, now) = get(ui, "/api/changes").await;
    let version = now["version"].as_u64().unwrap();
    let pending = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(ui).unwrap();
        write!(
            stream,
            "GET /api/changes?after={version} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    collector.shutdown().await;
    tokio::time::timeout(WAIT, pending)
        .await
        .expect("the long poll ended")
        .unwrap();
    assert!(TcpStream::connect(ui).is_err(), "the port is released");
}

/// Without `ui`, nothing is served and nothing is kept for a page.
#[tokio::test]
async fn no_web_view_unless_asked() {
    let collector = Collector::start().await.unwrap();
    assert_eq!((collector.ui_addr(), collector.ui_url()), (None, None));
    collector.shutdown().await;
}

/// The web view's address is taken: `start` says so, naming it.
#[tokio::test]
async fn a_taken_address_is_an_error_naming_it() {
    let first = Collector::builder()
        .ui("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let taken = first.ui_addr().unwrap();
    let err = Collector::builder().ui(taken).start().await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("the web view's address {taken}")),
        "{err}"
    );
    first.shutdown().await;
}
