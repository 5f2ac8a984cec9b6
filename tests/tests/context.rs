//! The tracing context through the public API: async nesting across worker threads, concurrent
//! children, panics, cancellation, limits, sampling and propagation; reported over real gRPC.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use skytrace::{Instrument, LocalSpan, Span, Sw8Header};
use skytrace_collector::Collector;
use skytrace_proto::v3::SpanType;
use skytrace_tests::{WAIT, config_for, grpc_tracer, parent_name, span};

async fn hop() {
    // Give the scheduler a chance to move the task to the other worker.
    for _ in 0..3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn child(name: &'static str, grandchild: &'static str) {
    async move {
        hop().await;
        async { hop().await }.in_span(Span::local(grandchild)).await;
        hop().await;
    }
    .in_span(Span::local(name))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_survives_thread_hops_and_join() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/fan-out", &());
    let task = tokio::spawn(
        async move {
            child("first", "first-inner").await;
            tokio::join!(child("a", "a-inner"), child("b", "b-inner"));
        }
        .in_span(entry),
    );
    task.await.unwrap();

    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(seg.spans.len(), 7);
    assert_eq!(parent_name(seg, "first"), "GET:/fan-out");
    assert_eq!(parent_name(seg, "first-inner"), "first");
    assert_eq!(parent_name(seg, "a"), "GET:/fan-out");
    assert_eq!(parent_name(seg, "b"), "GET:/fan-out");
    assert_eq!(parent_name(seg, "a-inner"), "a");
    assert_eq!(parent_name(seg, "b-inner"), "b");
    for s in &seg.spans {
        assert!(s.end_time >= s.start_time);
        assert!(s.tags.iter().all(|t| t.key != "cancelled"));
    }
    // Outside the task nothing is current.
    assert!(skytrace::current_trace_id().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_marks_the_span_as_error_and_closes_it() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("job", &());
    {
        let _in = entry.enter();
        let caught = std::panic::catch_unwind(|| {
            let span = Span::local("explodes");
            let _in = span.enter();
            panic!("boom");
        });
        assert!(caught.is_err());
        // The context was restored by the unwinding guard.
        drop(Span::local("after"));
        let task = tokio::spawn(
            async {
                hop().await;
                panic!("async boom");
            }
            .in_span(Span::local("async-explodes")),
        );
        assert!(task.await.is_err());
    }
    drop(entry);
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let sync = span(seg, "explodes");
    assert!(sync.is_error && sync.end_time >= sync.start_time);
    assert!(sync.logs[0].data.iter().any(|kv| kv.value == "panic"));
    assert_eq!(parent_name(seg, "after"), "job");
    let task = span(seg, "async-explodes");
    assert!(task.is_error);
    assert!(
        task.tags.iter().all(|t| t.key != "cancelled"),
        "a panic is not a cancellation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_future_closes_its_span_tagged_cancelled() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("race", &());
    async {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)).in_span(Span::local("slow")) => {}
            _ = hop().in_span(Span::local("fast")) => {}
        }
    }
    .in_span(entry)
    .await;
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let slow = span(seg, "slow");
    assert!(
        slow.tags
            .iter()
            .any(|t| t.key == "cancelled" && t.value == "true")
    );
    assert!(slow.end_time >= slow.start_time && slow.end_time > 0);
    assert!(span(seg, "fast").tags.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_past_the_limit_are_not_recorded_and_the_segment_says_so() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).span_limit(5));
    let entry = tracer.entry_span("big", &());
    {
        let _in = entry.enter();
        for i in 0..20 {
            let s = Span::local(format!("step-{i}"));
            assert_eq!(s.is_recording(), i < 4);
        }
    }
    drop(entry);
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(seg.spans.len(), 5);
    assert!(seg.is_size_limited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sw8_starts_a_fresh_trace() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    for bad in [
        "",
        "garbage",
        "1-MQ==-NQ==-x-a-b-c-d",
        "1-!!-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2E=-ZTo4",
    ] {
        let mut carrier = HashMap::new();
        carrier.insert("sw8".to_string(), bad.to_string());
        drop(tracer.entry_span("GET:/x", &carrier));
    }
    let segments = collector.wait_for_segments(4, WAIT).await;
    assert_eq!(segments.len(), 4);
    for seg in &segments {
        assert!(seg.spans[0].refs.is_empty());
        assert_ne!(seg.trace_id, "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_spans_inject_a_header_the_callee_continues_from() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).namespace("blue"));
    let entry = tracer.entry_span("GET:/front", &());
    let mut headers = http::HeaderMap::new();
    {
        let _in = entry.enter();
        assert!(skytrace::put_correlation("tenant", "acme"));
        assert_eq!(skytrace::get_correlation("tenant").as_deref(), Some("acme"));
        // No exit span: nothing to inject.
        assert!(!skytrace::inject(&mut headers));
        let exit = Span::exit("GET:/back", "back:8080");
        let _in = exit.enter();
        assert!(skytrace::inject(&mut headers));
    }
    drop(entry);
    // The namespace prefixes every header name.
    assert!(headers.get("sw8").is_none());
    let sw8 = Sw8Header::decode(headers["blue-sw8"].to_str().unwrap()).unwrap();
    let front = &collector.wait_for_segments(1, WAIT).await[0];
    assert!(sw8.sampled);
    assert_eq!(sw8.trace_id, front.trace_id);
    assert_eq!(sw8.parent_segment_id, front.trace_segment_id);
    assert_eq!(sw8.parent_span_id, span(front, "GET:/back").span_id);
    assert_eq!(sw8.parent_service, "svc|blue"); // name|namespace
    assert_eq!(sw8.parent_service_instance, "svc-1");
    assert_eq!(sw8.parent_endpoint, "GET:/front");
    assert_eq!(sw8.target_address, "back:8080");
    let correlation = headers["blue-sw8-correlation"].to_str().unwrap();
    assert_eq!(
        correlation,
        format!("{}:{}", STANDARD.encode("tenant"), STANDARD.encode("acme"))
    );

    // The callee (same namespace) continues it, baggage included.
    let callee = grpc_tracer(
        config_for(collector.addr())
            .namespace("blue")
            .service_name("back"),
    );
    let entry = callee.entry_span("GET:/back", &headers);
    {
        let _in = entry.enter();
        assert_eq!(skytrace::get_correlation("tenant").as_deref(), Some("acme"));
    }
    drop(entry);
    let segments = collector.wait_for_segments(2, WAIT).await;
    let back = skytrace_tests::segment(&segments, "GET:/back");
    assert_eq!(back.trace_id, front.trace_id);
    assert_eq!(
        back.spans[0].refs[0].parent_trace_segment_id,
        front.trace_segment_id
    );
    assert_eq!(
        back.spans[0].refs[0].network_address_used_at_peer,
        "back:8080"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_traces_record_nothing_but_still_propagate() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).sample_per_3_secs(1));
    let mut recorded = 0;
    let mut propagated = None;
    for _ in 0..5 {
        let entry = tracer.entry_span("GET:/sampled-or-not", &());
        let _in = entry.enter();
        if entry.is_recording() {
            recorded += 1;
            continue;
        }
        assert!(!Span::local("inner").is_recording());
        let exit = Span::exit("call", "peer:1");
        assert!(!exit.is_recording());
        let _in = exit.enter();
        let mut headers = HashMap::new();
        assert!(skytrace::inject(&mut headers));
        propagated = Some(Sw8Header::decode(&headers["sw8"]).unwrap());
    }
    // One trace per 3 s window; a window boundary may let one more through.
    assert!((1..=2).contains(&recorded), "{recorded}");
    let header = propagated.expect("an unsampled trace injected a header");
    assert!(!header.sampled, "sample flag 0");
    assert_eq!(header.target_address, "peer:1");
    assert_eq!(header.parent_endpoint, "GET:/sampled-or-not");

    // An upstream sample flag of 1 forces sampling even when the local budget is spent.
    let mut forced = HashMap::new();
    forced.insert(
        "sw8".to_string(),
        Sw8Header {
            sampled: true,
            ..header
        }
        .encode(),
    );
    for _ in 0..3 {
        assert!(tracer.entry_span("GET:/forced", &forced).is_recording());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_suffixes_start_no_trace() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    assert!(
        !tracer
            .entry_span("GET:/static/logo.png", &())
            .is_recording()
    );
    assert!(tracer.entry_span("GET:/api/logo", &()).is_recording());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sw8_x_skip_analysis_applies_to_the_whole_trace_and_travels_on() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let mut incoming = HashMap::new();
    incoming.insert(
        "sw8".to_string(),
        "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA=="
            .to_string(),
    );
    incoming.insert("sw8-x".to_string(), "1-".to_string());
    let entry = tracer.entry_span("GET:/quiet", &incoming);
    let mut outgoing = HashMap::new();
    {
        let _in = entry.enter();
        let exit = Span::exit("call", "next:80");
        let _in = exit.enter();
        assert!(skytrace::inject(&mut outgoing));
    }
    drop(entry);
    assert_eq!(outgoing.get("sw8-x").map(String::as_str), Some("1-"));
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert!(seg.spans.iter().all(|s| s.skip_analysis));
}

/// Holding a guard across an `.await` is a misuse (async code should use `in_span`), but it
/// must cost at most the guard's own span: the request's segment still arrives, complete.
#[tokio::test(flavor = "current_thread")]
async fn a_guard_held_across_an_await_costs_at_most_its_own_span() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/held", &());
    async {
        let owned = Span::local("held-owned").entered();
        hop().await;
        drop(owned);
        let borrowed = Span::local("held-borrowed");
        let entered = borrowed.enter();
        hop().await;
        drop(entered);
        drop(borrowed);
        drop(Span::local("after"));
    }
    .in_span(entry)
    .await;
    assert!(
        skytrace::current_trace_id().is_none(),
        "nothing left current"
    );
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let root = span(seg, "GET:/held");
    assert!(root.end_time >= root.start_time);
    assert_eq!(parent_name(seg, "after"), "GET:/held");
    assert_eq!(parent_name(seg, "held-borrowed"), "GET:/held");
}

/// `LocalSpan`s are recorded on their thread and reach the segment when the enclosing span
/// stops being current, here while one of them is still open (a `Span` entered inside it):
/// its end, a tag set afterwards and the parents of everything around it must still be right,
/// and the segment's spans arrive in id order.
#[tokio::test(flavor = "current_thread")]
async fn local_spans_nest_with_spans_and_keep_their_ids_in_order() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/mixed", &());
    {
        let _in = entry.enter();
        let a = LocalSpan::enter("a");
        {
            // Entering a span moves `a` (still open) from this thread to the segment.
            let b = Span::local("b");
            let _in_b = b.enter();
            drop(LocalSpan::enter("c"));
        }
        a.add_tag("after.flush", "yes");
        let d = LocalSpan::enter("d");
        d.record_error(&"no rows");
        drop(d);
        drop(a);
        drop(LocalSpan::enter("e"));
    }
    drop(entry);
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let ids: Vec<i32> = seg.spans.iter().map(|s| s.span_id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5], "{:#?}", seg.spans);
    assert_eq!(parent_name(seg, "a"), "GET:/mixed");
    assert_eq!(parent_name(seg, "b"), "a");
    assert_eq!(parent_name(seg, "c"), "b");
    assert_eq!(parent_name(seg, "d"), "a");
    assert_eq!(parent_name(seg, "e"), "GET:/mixed");
    let a = span(seg, "a");
    assert!(a.tags.iter().any(|t| t.key == "after.flush"));
    assert!(a.end_time >= span(seg, "d").end_time);
    let d = span(seg, "d");
    assert!(d.is_error);
    assert!(d.logs[0].data.iter().any(|kv| kv.value == "no rows"));
    for s in &seg.spans {
        assert!(s.end_time >= s.start_time && s.start_time > 0);
        let kind = if s.span_id == 0 {
            SpanType::Entry
        } else {
            SpanType::Local
        };
        assert_eq!(s.span_type, kind as i32);
    }
}

/// A `LocalSpan` that is leaked (never dropped) loses at most itself: the guard of the span it
/// was opened in still takes its span back, and the segment is reported.
#[tokio::test(flavor = "current_thread")]
async fn a_leaked_local_span_costs_at_most_itself() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let guard = tracer.entry_span("GET:/leak", &()).entered();
    std::mem::forget(LocalSpan::enter("leaked"));
    drop(guard);
    assert!(skytrace::current_trace_id().is_none());
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(seg.spans[0].operation_name, "GET:/leak");
    let leaked = span(seg, "leaked");
    assert!(
        leaked.end_time >= leaked.start_time,
        "closed with the segment"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn local_spans_respect_the_span_limit_and_panics() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).span_limit(5));
    let entry = tracer.entry_span("limited", &());
    {
        let _in = entry.enter();
        let caught = std::panic::catch_unwind(|| {
            let _span = LocalSpan::enter("explodes");
            panic!("boom");
        });
        assert!(caught.is_err());
        for i in 0..20 {
            assert_eq!(LocalSpan::enter("step").is_recording(), i < 3, "span {i}");
        }
    }
    drop(entry);
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(seg.spans.len(), 5);
    assert!(seg.is_size_limited);
    let exploded = span(seg, "explodes");
    assert!(exploded.is_error);
    assert!(exploded.logs[0].data.iter().any(|kv| kv.value == "panic"));
    // Outside any trace a local span records nothing.
    assert!(!LocalSpan::enter("outside").is_recording());
}

/// A tag value whose conversion opens a span (user code) must not run under the segment's
/// lock: that would deadlock the request.
#[tokio::test(flavor = "current_thread")]
async fn tag_conversions_run_outside_the_segment_lock() {
    struct Traced;
    impl From<Traced> for std::borrow::Cow<'static, str> {
        fn from(_: Traced) -> Self {
            drop(Span::local("inside-into"));
            std::borrow::Cow::Borrowed("converted")
        }
    }
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let entry = tracer.entry_span("GET:/into", &());
        let _in = entry.enter();
        let span = Span::local("outer");
        span.add_tag("key", Traced);
        span.set_operation_name(Traced);
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("a conversion that opens a span deadlocked the segment");
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    assert_eq!(parent_name(seg, "inside-into"), "GET:/into");
    assert!(seg.spans.iter().any(|s| s.operation_name == "converted"));
}

/// A local `Span` is recorded on the thread that starts it and handed to the segment when that
/// thread leaves the scope. Moved to another thread and changed and ended there first, its
/// changes wait in the segment for the record and are applied when it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_ended_on_another_thread_before_its_hand_over_keeps_its_changes() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("GET:/hand-over", &());
    {
        let _in = entry.enter();
        let moved = Span::local("moved");
        std::thread::spawn(move || {
            moved.add_tag("where", "other-thread");
            moved.record_error(&"failed over there");
            std::thread::sleep(Duration::from_millis(5));
            drop(moved);
        })
        .join()
        .unwrap();
        // Still inside the scope: the record has not left this thread yet.
        std::thread::sleep(Duration::from_millis(30));
    }
    drop(entry);
    let seg = &collector.wait_for_segments(1, WAIT).await[0];
    let moved = span(seg, "moved");
    assert_eq!(parent_name(seg, "moved"), "GET:/hand-over");
    assert!(
        moved
            .tags
            .iter()
            .any(|t| t.key == "where" && t.value == "other-thread")
    );
    assert!(moved.is_error);
    assert!(
        moved.logs[0]
            .data
            .iter()
            .any(|kv| kv.value == "failed over there")
    );
    let root = span(seg, "GET:/hand-over");
    assert!(
        moved.end_time >= moved.start_time && moved.end_time + 10 <= root.end_time,
        "ended when dropped, not with the segment: {moved:?} vs root end {}",
        root.end_time
    );
}

/// The global tracer is read per request from a per-thread copy: replacing it must still take
/// effect on the very next entry span, on this thread and on others.
#[test]
fn replacing_the_global_tracer_takes_effect_on_the_next_entry() {
    let config = skytrace::Config::builder()
        .service_name("global")
        .build()
        .unwrap();
    let first = skytrace::Tracer::new(&config, skytrace::DiscardReporter::new());
    let second = skytrace::Tracer::new(&config, skytrace::DiscardReporter::new());
    let entry = || drop(Span::entry_new("job"));

    first.install_global();
    entry();
    let replaced = second.install_global();
    assert!(replaced.is_some());
    entry();
    std::thread::spawn(entry).join().unwrap();
    entry();
    assert_eq!(first.stats().sent, 1);
    assert_eq!(second.stats().sent, 3);
}
