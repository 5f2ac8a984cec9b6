//! The gRPC reporter against a real tonic collector on loopback.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skytrace::{Instrument, Span, SpanLayer, component};
use skytrace_collector::Collector;
use skytrace_proto::v3::{RefType, SpanLayer as WireLayer, SpanType};
use skytrace_tests::{WAIT, config_for, eventually, grpc_tracer, parent_name, span, unused_addr};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_local_exit_arrive_with_ids_kinds_layers_times_tags_and_logs() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let before = now_ms();

    let entry = tracer.entry_span("GET:/orders/{id}", &http::HeaderMap::new());
    entry.set_layer(SpanLayer::Http);
    entry.set_component(component::HTTP);
    entry.add_tag("http.method", "GET");
    {
        let _in = entry.enter();
        let local = Span::local("load-order");
        let _in = local.enter();
        local.log([("event", "cache-miss"), ("key", "order:7")]);
        let exit = Span::exit("SELECT orders", "db:5432");
        exit.set_layer(SpanLayer::Database);
        exit.set_component(component::POSTGRESQL);
        exit.add_tag("db.statement", "SELECT * FROM orders WHERE id = $1");
        exit.set_error(true);
    }
    drop(entry);
    let after = now_ms();

    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments.len(), 1);
    let seg = &segments[0];
    assert_eq!(seg.service, "svc");
    assert_eq!(seg.service_instance, "svc-1");
    assert!(!seg.trace_id.is_empty() && !seg.trace_segment_id.is_empty());
    assert!(!seg.is_size_limited);
    assert_eq!(seg.spans.len(), 3);

    let entry = span(seg, "GET:/orders/{id}");
    assert_eq!((entry.span_id, entry.parent_span_id), (0, -1));
    assert_eq!(entry.span_type, SpanType::Entry as i32);
    assert_eq!(entry.span_layer, WireLayer::Http as i32);
    assert_eq!(entry.component_id, 49);
    assert_eq!(entry.tags[0].key, "http.method");
    assert_eq!(entry.tags[0].value, "GET");
    assert!(entry.refs.is_empty());

    let local = span(seg, "load-order");
    assert_eq!((local.span_id, local.parent_span_id), (1, 0));
    assert_eq!(local.span_type, SpanType::Local as i32);
    assert_eq!(local.logs.len(), 1);
    assert_eq!(local.logs[0].data[0].key, "event");
    assert_eq!(local.logs[0].data[1].value, "order:7");
    assert!((before..=after).contains(&local.logs[0].time));

    let exit = span(seg, "SELECT orders");
    assert_eq!((exit.span_id, exit.parent_span_id), (2, 1));
    assert_eq!(exit.span_type, SpanType::Exit as i32);
    assert_eq!(exit.span_layer, WireLayer::Database as i32);
    assert_eq!(exit.component_id, 22);
    assert_eq!(exit.peer, "db:5432");
    assert!(exit.is_error);
    assert_eq!(parent_name(seg, "SELECT orders"), "load-order");

    for s in &seg.spans {
        // Milliseconds since the epoch: within the test's own wall-clock window.
        assert!((before..=after).contains(&s.start_time), "{s:?}");
        assert!((s.start_time..=after).contains(&s.end_time), "{s:?}");
    }
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continued_trace_carries_a_cross_process_ref() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let mut headers = http::HeaderMap::new();
    // The protocol's worked example: trace 1, segment 5, span 3, service mesh, instance
    // instance, endpoint /api/v1/health, address example.com:8080.
    headers.insert(
        "sw8",
        "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA=="
            .parse()
            .unwrap(),
    );
    drop(tracer.entry_span("/api/v1/health", &headers));

    let segments = collector.wait_for_segments(1, WAIT).await;
    let seg = &segments[0];
    assert_eq!(seg.trace_id, "1");
    let r = &seg.spans[0].refs[0];
    assert_eq!(seg.spans[0].refs.len(), 1);
    assert_eq!(r.ref_type, RefType::CrossProcess as i32);
    assert_eq!(r.trace_id, "1");
    assert_eq!(r.parent_trace_segment_id, "5");
    assert_eq!(r.parent_span_id, 3);
    assert_eq!(r.parent_service, "mesh");
    assert_eq!(r.parent_service_instance, "instance");
    assert_eq!(r.parent_endpoint, "/api/v1/health");
    assert_eq!(r.network_address_used_at_peer, "example.com:8080");
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_work_yields_a_second_segment_with_a_cross_thread_ref() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("POST:/checkout", &());
    let (task, parent_span) = {
        let _in = entry.enter();
        let local = Span::local("enqueue");
        let _in = local.enter();
        let snapshot = skytrace::snapshot().expect("a trace is active");
        let task = tokio::spawn(async move {
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(Span::local("send-email"));
            }
            .in_span(snapshot.continue_span("email-job"))
            .await;
        });
        (task, 1)
    };
    task.await.unwrap();
    drop(entry);

    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2);
    let main = skytrace_tests::segment(&segments, "POST:/checkout");
    let job = skytrace_tests::segment(&segments, "email-job");
    assert_eq!(main.trace_id, job.trace_id);
    assert_ne!(main.trace_segment_id, job.trace_segment_id);
    let first = &job.spans[0];
    assert_eq!((first.span_id, first.parent_span_id), (0, -1));
    assert_eq!(first.span_type, SpanType::Local as i32);
    let r = &first.refs[0];
    assert_eq!(r.ref_type, RefType::CrossThread as i32);
    assert_eq!(r.parent_trace_segment_id, main.trace_segment_id);
    assert_eq!(r.parent_span_id, parent_span);
    assert_eq!(r.parent_service, "svc");
    assert_eq!(r.parent_service_instance, "svc-1");
    assert_eq!(r.parent_endpoint, "POST:/checkout");
    assert_eq!(parent_name(job, "send-email"), "email-job");
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_segments_arrive_none_lost() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).queue_size(10_000));
    // Wait until connected so the first traces are not taken while connecting.
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    for i in 0..10_000 {
        let entry = tracer.entry_span("job", &());
        let _in = entry.enter();
        Span::local("step").add_tag("i", i.to_string());
    }
    let segments = collector
        .wait_for_segments(10_000, Duration::from_secs(60))
        .await;
    assert_eq!(segments.len(), 10_000);
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!(stats.sent, 10_000);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.failed, 0);
    let mut ids: Vec<_> = segments
        .iter()
        .map(|s| s.trace_segment_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10_000, "segment ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_segments_arrive_alike() {
    // Small segments are encoded on the thread that ends them, large ones (more than 32 spans)
    // on the reporter's: both must arrive as the same protobuf.
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    for spans in [1usize, 32, 33, 150] {
        let entry = tracer.entry_span(format!("job-{spans}"), &());
        let _in = entry.enter();
        for i in 1..spans {
            Span::local("step").add_tag("i", i.to_string());
        }
    }
    let segments = collector.wait_for_segments(4, WAIT).await;
    assert_eq!(segments.len(), 4);
    for spans in [1usize, 32, 33, 150] {
        let segment = skytrace_tests::segment(&segments, &format!("job-{spans}"));
        assert_eq!(segment.spans.len(), spans);
        for (i, span) in segment.spans.iter().enumerate() {
            assert_eq!(span.span_id, i as i32);
            if i > 0 {
                assert_eq!(span.parent_span_id, 0);
                assert_eq!(span.tags[0].value, i.to_string());
            }
        }
    }
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_ending_as_its_thread_exits_is_delivered() {
    // A span kept in a thread-local ends when the thread's thread-locals are destroyed, possibly
    // after skytrace's own: reporting it then must neither panic (an abort, in a destructor) nor
    // lose it.
    use std::cell::RefCell;
    thread_local! {
        static HELD: RefCell<Option<Span>> = const { RefCell::new(None) };
    }
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let worker = tracer.clone();
    std::thread::spawn(move || {
        // Registered first, so destroyed last.
        HELD.with(|held| held.borrow_mut().take());
        // A first segment sets up whatever the reporter keeps per thread.
        drop(worker.entry_span("first", &()));
        HELD.with(|held| *held.borrow_mut() = Some(worker.entry_span("last", &())));
    })
    .join()
    .unwrap();
    let segments = collector.wait_for_segments(2, WAIT).await;
    assert_eq!(segments.len(), 2);
    skytrace_tests::segment(&segments, "last");
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_recording_stays_bounded_and_recovers_when_it_starts() {
    let addr = unused_addr();
    let tracer = grpc_tracer(config_for(addr).queue_size(100));
    // Record at full speed while nothing listens: nothing blocks, nothing grows past the queue.
    for _ in 0..100_000 {
        let entry = tracer.entry_span("job", &());
        let _in = entry.enter();
        drop(Span::local("step"));
        assert!(tracer.stats().queued <= 100);
    }
    let stats = tracer.stats();
    assert!(!stats.connected);
    assert!(stats.queued <= 100);
    // Once the reporter knows the backend is down, new traces are not started at all.
    assert!(eventually(WAIT, || !tracer.reporter().is_available()).await);
    assert!(!tracer.entry_span("while-down", &()).is_recording());

    // The backend comes up on that address: new traces arrive without a restart.
    let collector = Collector::builder().addr(addr).start().await.unwrap();
    let arrived = eventually(Duration::from_secs(30), || {
        drop(tracer.entry_span("after-recovery", &()));
        collector
            .segments()
            .iter()
            .any(|s| s.spans[0].operation_name == "after-recovery")
    })
    .await;
    assert!(arrived, "traces flow again after the backend starts");
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert!(stats.sent >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_fills_the_queue_to_its_bound_and_no_further() {
    let collector = Collector::builder().stall(true).start().await.unwrap();
    let queue = 50;
    let tracer = grpc_tracer(
        config_for(collector.addr())
            .queue_size(queue)
            .keep_tracing(true),
    );
    let big = "x".repeat(16 * 1024);
    for _ in 0..5_000 {
        let entry = tracer.entry_span("job", &());
        entry.add_tag("payload", big.clone());
        drop(entry);
        assert!(tracer.stats().queued <= queue as u64);
    }
    let stats = tracer.stats();
    assert!(stats.queued <= queue as u64);
    // Everything that is neither queued nor in the one batch on the wire was dropped, and counted.
    assert!(stats.dropped >= 5_000 - queue as u64 - 500, "{stats:?}");
    assert_eq!(stats.sent, 0);
    tracer.reporter().shutdown(Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authentication_token_is_sent() {
    let collector = Collector::builder()
        .require_token("s3cret")
        .start()
        .await
        .unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).authentication("s3cret"));
    drop(tracer.entry_span("job", &()));
    assert_eq!(collector.wait_for_segments(1, WAIT).await.len(), 1);
    assert!(collector.tokens().iter().any(|t| t == "s3cret"));
    tracer.reporter().shutdown(Duration::from_secs(5));

    // A wrong token is refused by the collector: nothing is stored, the reporter counts it.
    let wrong = grpc_tracer(
        config_for(collector.addr())
            .authentication("wrong")
            .keep_tracing(true),
    );
    drop(wrong.entry_span("job", &()));
    assert!(
        eventually(WAIT, || wrong.stats().failed >= 1
            || !wrong.reporter().is_available())
        .await
    );
    assert_eq!(collector.segment_count(), 1);
    wrong.reporter().shutdown(Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_properties_and_keep_alives_arrive() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(eventually(WAIT, || collector.pings().len() >= 2).await);
    let props = collector.instance_properties();
    let first = &props[0];
    assert_eq!(first.service, "svc");
    assert_eq!(first.service_instance, "svc-1");
    let get = |key: &str| {
        first
            .properties
            .iter()
            .filter(|p| p.key == key)
            .map(|p| p.value.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("language"), vec!["rust"]);
    assert_eq!(get("Process No."), vec![std::process::id().to_string()]);
    assert_eq!(get("OS Name"), vec![std::env::consts::OS]);
    assert_eq!(get("hostname").len(), 1);
    let ping = &collector.pings()[0];
    assert_eq!(
        (ping.service.as_str(), ping.service_instance.as_str()),
        ("svc", "svc-1")
    );
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_reports_its_start_once_and_its_shutdown() {
    let collector = Collector::start().await.unwrap();
    let before = now_ms();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(eventually(WAIT, || !collector.received().service_events.is_empty()).await);
    // Keep-alives and segments go on; `Start` is not sent again.
    drop(tracer.entry_span("job", &()));
    assert!(
        eventually(WAIT, || collector.pings().len() >= 2
            && collector.segment_count() == 1)
        .await
    );
    let stats = tracer.reporter().shutdown(Duration::from_secs(5));
    assert_eq!(stats.sent, 1);

    let events = collector.received().service_events;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Start", "Shutdown"]);
    let (start, shutdown) = (&events[0], &events[1]);
    for event in &events {
        let source = event.source.as_ref().expect("a source");
        assert_eq!(
            (source.service.as_str(), source.service_instance.as_str()),
            ("svc", "svc-1")
        );
        assert_eq!(event.layer, "GENERAL");
        assert_eq!(event.r#type, 0, "Normal");
        assert_eq!(event.uuid.len(), 36);
    }
    assert_eq!(start.message, "Start Rust Application");
    // From this test process's start to the reporter's.
    assert!(
        start.start_time <= before && before <= start.end_time + 1_000,
        "{start:?}"
    );
    assert_eq!(shutdown.message, "Shutting down Rust Application");
    assert!(shutdown.start_time >= start.end_time);
    assert_ne!(start.uuid, shutdown.uuid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_event_waits_for_the_backend() {
    let addr = unused_addr();
    let tracer = grpc_tracer(config_for(addr));
    assert!(eventually(WAIT, || !tracer.reporter().is_available()).await);
    let collector = Collector::builder().addr(addr).start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || {
            collector.received().service_events.len() == 1
        })
        .await
    );
    assert_eq!(collector.received().service_events[0].name, "Start");
    tracer.reporter().shutdown(Duration::from_secs(5));
    let names: Vec<String> = collector
        .received()
        .service_events
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["Start", "Shutdown"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oap_without_the_event_and_configuration_receivers_is_no_outage() {
    let collector = Collector::builder()
        .without_service("skywalking.v3.EventService")
        .without_service("skywalking.v3.ConfigurationDiscoveryService")
        .start()
        .await
        .unwrap();
    let tracer =
        grpc_tracer(config_for(collector.addr()).dynamic_config_interval(Duration::from_secs(1)));
    // Each receiver it lacks answered UNIMPLEMENTED by now (the `Start` event right after the
    // introduction, a configuration fetch every second), and still: connected, tracing, sending.
    assert!(eventually(WAIT, || collector.pings().len() >= 3).await);
    assert!(tracer.stats().connected);
    assert!(tracer.reporter().is_available());
    drop(tracer.entry_span("job", &()));
    assert!(eventually(WAIT, || collector.segment_count() == 1).await);
    let received = collector.received();
    assert!(received.service_events.is_empty() && received.configuration_requests.is_empty());
    assert_eq!(
        collector.connections(),
        1,
        "no reconnection after an UNIMPLEMENTED answer"
    );
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_event_receiver_does_not_hold_the_segments_back() {
    let collector = Collector::builder()
        .fail_service("skywalking.v3.EventService", tonic::Code::Internal)
        .start()
        .await
        .unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let arrived = eventually(Duration::from_secs(30), || {
        drop(tracer.entry_span("job", &()));
        collector.segment_count() > 0
    })
    .await;
    assert!(arrived, "segments flow although every event call fails");
    // The `Start` event was tried a few times (each failure backs off), then given up.
    assert!(eventually(WAIT, || collector.pings().len() >= 3).await);
    let failed = collector.received().failed_calls;
    assert!((1..=3).contains(&failed), "{failed} event calls");
    assert!(tracer.stats().connected);
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_is_queued() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    for _ in 0..200 {
        drop(tracer.entry_span("job", &()));
    }
    let stats = tracer.reporter().shutdown(Duration::from_secs(10));
    assert_eq!(stats.sent, 200, "{stats:?}");
    assert_eq!(collector.segment_count(), 200);
    // After shutdown, reporting is dropped and counted, never blocking.
    drop(tracer.entry_span("late", &()));
    assert!(tracer.stats().dropped >= 1 || !tracer.entry_span("late", &()).is_recording());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_backend() {
    let dead = unused_addr();
    let collector = Collector::start().await.unwrap();
    let tracer =
        grpc_tracer(config_for(dead).backend_services(format!("{dead},{}", collector.addr())));
    assert!(eventually(WAIT, || tracer.stats().connected).await);
    drop(tracer.entry_span("job", &()));
    assert_eq!(collector.wait_for_segments(1, WAIT).await.len(), 1);
    tracer.reporter().shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_backend_gets_properties_again_and_new_segments() {
    let collector = Collector::start().await.unwrap();
    let addr = collector.addr();
    let tracer = grpc_tracer(config_for(addr));
    drop(tracer.entry_span("before", &()));
    assert_eq!(collector.wait_for_segments(1, WAIT).await.len(), 1);
    collector.shutdown().await;

    let restarted = Collector::builder().addr(addr).start().await.unwrap();
    let arrived = eventually(Duration::from_secs(30), || {
        drop(tracer.entry_span("after", &()));
        restarted
            .segments()
            .iter()
            .any(|s| s.spans[0].operation_name == "after")
    })
    .await;
    assert!(arrived, "segments flow to the restarted backend");
    assert!(
        eventually(WAIT, || !restarted.instance_properties().is_empty()).await,
        "instance properties are reported again after the reconnect"
    );
    tracer.reporter().shutdown(Duration::from_secs(5));
}

/// Segments finished one after another, each delivered before the next is made (so each its own
/// batch), travel in one `collect` call: the call stays open for a second and carries the
/// batches made meanwhile, instead of a call (an HTTP/2 stream, headers, an answer) per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_made_within_a_second_share_one_collect_call() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    // The reporter's first call, an empty probe, has come.
    assert!(eventually(WAIT, || collector.received().segment_calls >= 1).await);
    let before = collector.received().segment_calls;
    for n in 1..=3 {
        drop(tracer.entry_span(format!("GET:/{n}"), &http::HeaderMap::new()));
        assert_eq!(collector.wait_for_segments(n, WAIT).await.len(), n);
    }
    // One call for the three (two if this machine took over a second for them); three calls
    // when every batch has its own.
    let calls = collector.received().segment_calls - before;
    assert!(calls < 3, "{calls} calls for 3 batches");
}

/// Under steady traffic (batches of several segments, taken one linger after another without
/// waiting on the queue) the streamed call still ends after its second and is booked: what it
/// carried counts as sent while the traffic goes on, none of it as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_call_ends_and_is_booked_while_traffic_goes_on() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(eventually(WAIT, || collector.received().segment_calls >= 1).await);
    let started = std::time::Instant::now();
    let mut n = 0u64;
    // A few segments every few milliseconds until some are booked as sent (or `WAIT`).
    while tracer.stats().sent == 0 && started.elapsed() < WAIT {
        for _ in 0..4 {
            drop(tracer.entry_span(format!("GET:/{n}"), &()));
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let stats = tracer.stats();
    assert!(
        stats.sent > 0,
        "nothing booked during {n} segments: {stats:?}"
    );
    // Not by the call's own deadline: one kept open past it fails with what it carried.
    assert_eq!((stats.failed, stats.dropped), (0, 0), "{stats:?}");
    tracer.reporter().shutdown(Duration::from_secs(5));
}

/// A segment receiver that refuses every call: each segment counts once, as failed or dropped
/// (none sent), however the batches fell into calls — those a call carried, those made after
/// it ended, those left at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_counts_once_when_the_receiver_refuses_every_call() {
    let collector = Collector::builder()
        .fail_service(
            "skywalking.v3.TraceSegmentReportService",
            tonic::Code::Internal,
        )
        .start()
        .await
        .unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).keep_tracing(true));
    const SEGMENTS: u64 = 300;
    for n in 0..SEGMENTS {
        drop(tracer.entry_span(format!("GET:/{n}"), &()));
        if n % 25 == 0 {
            // Batches of their own, some made while a call is ending.
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    }
    tracer.reporter().shutdown(Duration::from_secs(5));
    let stats = tracer.stats();
    assert_eq!(stats.sent, 0, "{stats:?}");
    assert!(stats.failed >= 1, "{stats:?}");
    assert_eq!(
        stats.failed + stats.dropped + stats.queued,
        SEGMENTS,
        "{stats:?}"
    );
    assert_eq!(collector.segment_count(), 0);
}
