//! The collector over real gRPC on loopback, driven by the tonic clients of skytrace-proto.

use std::time::Duration;

use skytrace_collector::{Collector, Event};
use skytrace_proto::v3::configuration_discovery_service_client::ConfigurationDiscoveryServiceClient;
use skytrace_proto::v3::log_report_service_client::LogReportServiceClient;
use skytrace_proto::v3::management_service_client::ManagementServiceClient;
use skytrace_proto::v3::meter_report_service_client::MeterReportServiceClient;
use skytrace_proto::v3::trace_segment_report_service_client::TraceSegmentReportServiceClient;
use skytrace_proto::v3::{
    ConfigurationSyncRequest, InstancePingPkg, InstanceProperties, KeyStringValuePair, LogData,
    MeterData, MeterSingleValue, SegmentCollection, SegmentObject, SpanObject, SpanType,
    meter_data::Metric,
};
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(5);

fn segment(trace: &str, id: &str) -> SegmentObject {
    SegmentObject {
        trace_id: trace.into(),
        trace_segment_id: id.into(),
        service: "svc".into(),
        service_instance: "inst".into(),
        spans: vec![SpanObject {
            span_id: 0,
            parent_span_id: -1,
            start_time: 1,
            end_time: 2,
            operation_name: format!("op-{id}"),
            span_type: SpanType::Entry as i32,
            ..Default::default()
        }],
        is_size_limited: false,
    }
}

async fn channel(collector: &Collector) -> Channel {
    Channel::from_shared(collector.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authentication", token.parse().unwrap());
    request
}

#[tokio::test]
async fn collect_stores_streamed_segments() {
    let collector = Collector::start().await.unwrap();
    let mut live = collector.subscribe();
    let mut client = TraceSegmentReportServiceClient::new(channel(&collector).await);

    let sent = vec![segment("t1", "a"), segment("t1", "b"), segment("t2", "c")];
    let reply = client
        .collect(tokio_stream::iter(sent.clone()))
        .await
        .unwrap();
    assert!(reply.into_inner().commands.is_empty());

    // Stored as they arrived, before the reply.
    assert_eq!(collector.segment_count(), 3);
    assert_eq!(collector.segments(), sent);
    for expected in &sent {
        assert_eq!(&live.recv().await.unwrap(), expected);
    }

    // collectInSync too.
    client
        .collect_in_sync(SegmentCollection {
            segments: vec![segment("t3", "d")],
        })
        .await
        .unwrap();
    let all = collector.wait_for_segments(4, WAIT).await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].trace_segment_id, "d");
    assert!(collector.tokens().is_empty());
    collector.shutdown().await;
}

#[tokio::test]
async fn count_only_counts_segments_without_keeping_them() {
    let collector = Collector::builder()
        .count_only(true)
        .require_token("t0k")
        .start()
        .await
        .unwrap();
    let mut client = TraceSegmentReportServiceClient::new(channel(&collector).await);
    let sent: Vec<_> = (0..50).map(|i| segment("t", &i.to_string())).collect();
    let reply = client
        .collect(with_token(tokio_stream::iter(sent), "t0k"))
        .await
        .unwrap();
    assert!(reply.into_inner().commands.is_empty());
    assert_eq!(collector.segment_count(), 50);
    assert!(collector.segments().is_empty());
    // Still a collector: the token is checked, and other services answer as usual.
    let refused = client
        .collect(tokio_stream::iter([segment("t", "x")]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(collector.segment_count(), 50);
    client
        .collect_in_sync(with_token(
            SegmentCollection {
                segments: vec![segment("t", "y")],
            },
            "t0k",
        ))
        .await
        .unwrap();
    assert_eq!(collector.segments().len(), 1);
    assert_eq!(collector.segment_count(), 51);
    collector.clear();
    assert_eq!(collector.segment_count(), 0);
    collector.shutdown().await;
}

/// `store(false)`, for a long-running collector: nothing is kept, everything is published and
/// segments are counted.
#[tokio::test]
async fn without_storing_publishes_and_counts_only() {
    let collector = Collector::builder().store(false).start().await.unwrap();
    let mut events = collector.subscribe_events();
    let mut client = TraceSegmentReportServiceClient::new(channel(&collector).await);
    let sent: Vec<_> = (0..20).map(|i| segment("t", &i.to_string())).collect();
    client
        .collect(tokio_stream::iter(sent.clone()))
        .await
        .unwrap();
    let mut management = ManagementServiceClient::new(channel(&collector).await);
    management
        .keep_alive(with_token(InstancePingPkg::default(), "any"))
        .await
        .unwrap();

    for expected in &sent {
        match events.recv().await.unwrap() {
            Event::Segment(segment) => assert_eq!(&segment, expected),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(events.recv().await.unwrap(), Event::Ping(_)));
    assert_eq!(collector.segment_count(), 20);
    let received = collector.received();
    assert!(received.segments.is_empty() && received.pings.is_empty());
    assert!(received.tokens.is_empty());
    collector.shutdown().await;
}

/// An agent still reconnecting to an ended collector's address must not reach the next one,
/// even when the system gives it the same port.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn collectors_listen_on_loopback_addresses_of_their_own() {
    let first = Collector::start().await.unwrap();
    let second = Collector::start().await.unwrap();
    assert!(first.addr().ip().is_loopback() && second.addr().ip().is_loopback());
    assert_ne!(first.addr().ip(), second.addr().ip());
    // Reachable like any address.
    let mut client = TraceSegmentReportServiceClient::new(channel(&second).await);
    client
        .collect(tokio_stream::iter([segment("t", "a")]))
        .await
        .unwrap();
    assert_eq!(second.segment_count(), 1);
    assert_eq!(first.segment_count(), 0);
}

#[tokio::test]
async fn wait_for_segments_sent_later() {
    let collector = Collector::start().await.unwrap();
    let mut client = TraceSegmentReportServiceClient::new(channel(&collector).await);
    let sender = tokio::spawn(async move {
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let one = segment("t", &i.to_string());
            client.collect(tokio_stream::iter([one])).await.unwrap();
        }
    });
    let got = collector.wait_for_segments(3, WAIT).await;
    assert_eq!(got.len(), 3);
    sender.await.unwrap();

    // A timeout returns what there is.
    let started = std::time::Instant::now();
    let got = collector
        .wait_for_segments(4, Duration::from_millis(100))
        .await;
    assert_eq!(got.len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(
        !collector
            .wait_for(Duration::from_millis(10), |r| r.segments.len() > 3)
            .await
    );
}

#[tokio::test]
async fn require_token() {
    let collector = Collector::builder()
        .require_token("s3cret")
        .start()
        .await
        .unwrap();
    let channel = channel(&collector).await;
    let mut traces = TraceSegmentReportServiceClient::new(channel.clone());
    let mut management = ManagementServiceClient::new(channel);

    let missing = traces
        .collect(tokio_stream::iter([segment("t", "no-token")]))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let wrong = management
        .keep_alive(with_token(InstancePingPkg::default(), "guess"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(collector.segment_count(), 0);
    assert!(collector.pings().is_empty());
    assert_eq!(collector.received().rejected, 2);

    traces
        .collect(with_token(
            tokio_stream::iter([segment("t", "with-token")]),
            "s3cret",
        ))
        .await
        .unwrap();
    management
        .keep_alive(with_token(InstancePingPkg::default(), "s3cret"))
        .await
        .unwrap();
    assert_eq!(collector.segment_count(), 1);
    assert_eq!(collector.pings().len(), 1);
    assert_eq!(collector.tokens(), ["guess", "s3cret"]);
}

#[tokio::test]
async fn tokens_are_recorded_without_requirement() {
    let collector = Collector::start().await.unwrap();
    let mut management = ManagementServiceClient::new(channel(&collector).await);
    for token in ["one", "two", "one"] {
        management
            .keep_alive(with_token(InstancePingPkg::default(), token))
            .await
            .unwrap();
    }
    assert_eq!(collector.tokens(), ["one", "two"]);
}

#[tokio::test]
async fn management_calls_are_recorded() {
    let collector = Collector::start().await.unwrap();
    let mut events = collector.subscribe_events();
    let mut management = ManagementServiceClient::new(channel(&collector).await);

    let properties = InstanceProperties {
        service: "shop".into(),
        service_instance: "shop-1".into(),
        properties: vec![KeyStringValuePair {
            key: "language".into(),
            value: "rust".into(),
        }],
        layer: String::new(),
    };
    let reply = management
        .report_instance_properties(properties.clone())
        .await
        .unwrap();
    assert!(reply.into_inner().commands.is_empty());
    let ping = InstancePingPkg {
        service: "shop".into(),
        service_instance: "shop-1".into(),
        layer: String::new(),
    };
    management.keep_alive(ping.clone()).await.unwrap();
    management.keep_alive(ping.clone()).await.unwrap();

    assert_eq!(
        collector.instance_properties(),
        std::slice::from_ref(&properties)
    );
    assert_eq!(collector.pings(), [ping.clone(), ping]);
    assert!(
        matches!(events.recv().await.unwrap(), Event::InstanceProperties(p) if p == properties)
    );
    assert!(matches!(events.recv().await.unwrap(), Event::Ping(_)));
}

#[tokio::test]
async fn logs_meters_and_configuration() {
    let collector = Collector::start().await.unwrap();
    let channel = channel(&collector).await;

    let log = LogData {
        service: "shop".into(),
        endpoint: "GET:/".into(),
        ..Default::default()
    };
    LogReportServiceClient::new(channel.clone())
        .collect(tokio_stream::iter([log.clone(), log.clone()]))
        .await
        .unwrap();
    assert_eq!(collector.logs(), [log.clone(), log]);

    let meter = |name: &str| MeterData {
        metric: Some(Metric::SingleValue(MeterSingleValue {
            name: name.into(),
            labels: vec![],
            value: 1.5,
        })),
        ..Default::default()
    };
    let mut meters = MeterReportServiceClient::new(channel.clone());
    meters
        .collect(tokio_stream::iter([meter("a"), meter("b")]))
        .await
        .unwrap();
    assert_eq!(collector.meters(), [meter("a"), meter("b")]);
    meters
        .collect_batch(tokio_stream::iter([
            skytrace_proto::v3::MeterDataCollection {
                meter_data: vec![meter("c")],
            },
        ]))
        .await
        .unwrap();
    assert_eq!(collector.meters().len(), 3);

    let request = ConfigurationSyncRequest {
        service: "shop".into(),
        uuid: String::new(),
    };
    let reply = ConfigurationDiscoveryServiceClient::new(channel)
        .fetch_configurations(request.clone())
        .await
        .unwrap();
    assert!(reply.into_inner().commands.is_empty());
    assert_eq!(collector.configuration_requests(), [request]);
}

#[tokio::test]
async fn meters_of_an_unfinished_stream_do_not_count() {
    let collector = Collector::start().await.unwrap();
    let mut meters = MeterReportServiceClient::new(channel(&collector).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        meters
            .collect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(MeterData::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(collector.meters().is_empty(), "the stream is still open");
    drop(tx);
    call.await.unwrap().unwrap();
    assert_eq!(collector.meters().len(), 1);
}

#[tokio::test]
async fn stalled_collector_backs_up_the_client() {
    let collector = Collector::builder().stall(true).start().await.unwrap();
    let channel = channel(&collector).await;
    let mut client = TraceSegmentReportServiceClient::new(channel.clone());

    // 8 MiB of segments: far more than the HTTP/2 windows and the client's buffers.
    let big = |i: usize| {
        let mut s = segment("t", &i.to_string());
        s.spans[0].operation_name = "x".repeat(64 * 1024);
        s
    };
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = tokio_stream::iter((0..128).map(move |i| {
        let _ = sent_tx.send(i);
        big(i)
    }));
    let call = tokio::spawn(async move { client.collect(stream).await });

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!call.is_finished(), "a stalled collector never answers");
    let mut pulled = 0;
    while sent_rx.try_recv().is_ok() {
        pulled += 1;
    }
    assert!(pulled < 128, "the client could send all {pulled} segments");
    assert_eq!(collector.segment_count(), 0);

    // Unary calls are still answered, on the same connection too.
    let mut management = ManagementServiceClient::new(channel);
    let ping = management.keep_alive(InstancePingPkg::default());
    tokio::time::timeout(WAIT, ping).await.unwrap().unwrap();

    // Shutting down ends the stalled call and doesn't hang.
    tokio::time::timeout(WAIT, collector.shutdown())
        .await
        .unwrap();
    let status = tokio::time::timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_releases_the_port() {
    let first = Collector::start().await.unwrap();
    let addr = first.addr();
    let mut client = TraceSegmentReportServiceClient::new(channel(&first).await);

    // A stream that stays open: shutdown must not wait for it.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        client
            .collect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(segment("t", "kept")).await.unwrap();
    assert_eq!(first.wait_for_segments(1, WAIT).await.len(), 1);
    tokio::time::timeout(WAIT, first.shutdown()).await.unwrap();
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    drop(tx);

    // Same port, new collector, fresh data.
    let second = Collector::builder().addr(addr).start().await.unwrap();
    assert_eq!(second.addr(), addr);
    let mut client = TraceSegmentReportServiceClient::new(channel(&second).await);
    client
        .collect(tokio_stream::iter([segment("t", "after-restart")]))
        .await
        .unwrap();
    let segments = second.segments();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].trace_segment_id, "after-restart");
    second.shutdown().await;
}

#[tokio::test]
async fn dropping_the_collector_stops_it() {
    let collector = Collector::start().await.unwrap();
    let addr = collector.addr();
    drop(collector);
    // The server task notices on its own; the port is free soon after.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Collector::builder().addr(addr).start().await {
            Ok(again) => {
                again.shutdown().await;
                break;
            }
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "{err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test]
async fn events_are_stored_and_announced() {
    use skytrace_proto::v3::event_service_client::EventServiceClient;
    use skytrace_proto::v3::{Event as ServiceEvent, Source};

    let collector = Collector::start().await.unwrap();
    let mut events = collector.subscribe_events();
    let mut client = EventServiceClient::new(channel(&collector).await);
    let start = ServiceEvent {
        uuid: "u-1".into(),
        source: Some(Source {
            service: "svc".into(),
            service_instance: "svc-1".into(),
            endpoint: String::new(),
        }),
        name: "Start".into(),
        layer: "GENERAL".into(),
        ..Default::default()
    };
    client
        .collect(tokio_stream::iter(vec![start.clone()]))
        .await
        .unwrap();
    assert_eq!(
        collector.received().service_events,
        std::slice::from_ref(&start)
    );
    match events.recv().await.unwrap() {
        Event::ServiceEvent(event) => assert_eq!(event, start),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_service_is_unimplemented() {
    // A service OAP has but this collector doesn't: answered with UNIMPLEMENTED, like OAP
    // does for unknown services, rather than a transport error.
    let collector = Collector::start().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel(&collector).await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/skywalking.v3.BrowserPerfService/collectPerfData",
    );
    let status = grpc
        .unary::<_, skytrace_proto::v3::Commands, _>(
            tonic::Request::new(InstancePingPkg::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}
