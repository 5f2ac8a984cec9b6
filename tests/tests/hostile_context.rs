//! User code that misuses or attacks the context (issue 12, items 2, 3 and 8), through the
//! public API, reported over real gRPC: whatever it does, other traces stay whole.

use skytrace::{Injector, LocalSpan, Span, Sw8Header};
use skytrace_collector::Collector;
use skytrace_proto::v3::SpanType;
use skytrace_tests::{WAIT, config_for, grpc_tracer, segment};

/// An `Injector` running arbitrary code.
struct Callback<F: FnMut(&str, String)>(F);

impl<F: FnMut(&str, String)> Injector for Callback<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_injector_corrupts_neither_this_trace_nor_the_next() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    for request in ["first", "second"] {
        let entry = tracer.entry_span(request, &());
        {
            let _in = entry.enter();
            let exit = Span::exit("call", "peer:1");
            let _in = exit.enter();
            let result = std::panic::catch_unwind(|| {
                skytrace::inject(&mut Callback(|_: &str, _: String| panic!("injector bug")))
            });
            assert!(result.is_err());
            let _after = LocalSpan::enter("after");
        }
    }
    let segments = collector.wait_for_segments(2, WAIT).await;
    for request in ["first", "second"] {
        let seg = segment(&segments, request);
        let names: Vec<&str> = seg.spans.iter().map(|s| &*s.operation_name).collect();
        assert_eq!(names, [request, "call", "after"]);
        assert_eq!(seg.spans[2].parent_span_id, 1);
        assert!(seg.spans[0].refs.is_empty());
    }
    assert_ne!(segments[0].trace_id, segments[1].trace_id);
}

#[tokio::test(flavor = "current_thread")]
async fn an_injector_starting_its_own_trace_loses_nothing() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let other = grpc_tracer(config_for(collector.addr()).service_name("other"));
    let mut sw8 = None;
    let entry = tracer.entry_span("outer", &());
    {
        let _in = entry.enter();
        let exit = Span::exit("call", "peer:1");
        let _in = exit.enter();
        assert!(skytrace::inject(&mut Callback(
            |key: &str, value: String| {
                let own = other.entry_span("from-the-injector", &());
                let _in = own.enter();
                drop(LocalSpan::enter("inside"));
                if key == "sw8" {
                    sw8 = Some(value);
                }
            }
        )));
        drop(LocalSpan::enter("after"));
    }
    drop(entry);
    let segments = collector.wait_for_segments(1, WAIT).await;
    let outer = segment(&segments, "outer");
    let mut ids: Vec<i32> = outer.spans.iter().map(|s| s.span_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), outer.spans.len(), "span ids are unique");
    // Every span's parent is a span of the segment.
    for span in &outer.spans[1..] {
        assert!(ids.contains(&span.parent_span_id), "{span:?}");
    }
    let header = Sw8Header::decode(&sw8.unwrap()).unwrap();
    assert_eq!(header.parent_segment_id, outer.trace_segment_id);
    assert_eq!(
        skytrace_tests::span(outer, "call").span_id,
        header.parent_span_id
    );
    assert!(outer.spans.iter().any(|s| s.operation_name == "after"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_correlation_conversion_that_tags_the_segment_does_not_deadlock() {
    struct Tagging;
    impl From<Tagging> for String {
        fn from(_: Tagging) -> String {
            Span::local("in-conversion").add_tag("k", "v");
            "value".to_owned()
        }
    }
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let entry = tracer.entry_span("entry", &());
    {
        let _in = entry.enter();
        assert!(skytrace::put_correlation("key", Tagging));
    }
    drop(entry);
    let segments = collector.wait_for_segments(1, WAIT).await;
    assert_eq!(segments[0].spans.len(), 2);
}

/// actix-web's model: every request a task on one thread's `LocalSet`.
#[test]
fn a_guard_held_across_an_await_on_a_local_set_does_not_adopt_other_requests() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let collector = Collector::start().await.unwrap();
        let tracer = grpc_tracer(config_for(collector.addr()));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let holder_tracer = tracer.clone();
                let holder = tokio::task::spawn_local(async move {
                    // The misuse: a guard kept while the task waits.
                    let _guard = holder_tracer.entry_span("holder", &()).entered();
                    let _ = held_tx.send(());
                    let _ = done_rx.await;
                });
                held_rx.await.unwrap();
                let request_tracer = tracer.clone();
                tokio::task::spawn_local(async move {
                    let entry = request_tracer.entry_span("request", &());
                    assert!(entry.is_recording());
                    let _in = entry.enter();
                    drop(LocalSpan::enter("work"));
                })
                .await
                .unwrap();
                let _ = done_tx.send(());
                holder.await.unwrap();
            })
            .await;
        let segments = collector.wait_for_segments(2, WAIT).await;
        let request = segment(&segments, "request");
        let holder = segment(&segments, "holder");
        assert_eq!(request.spans[0].span_type, SpanType::Entry as i32);
        assert_ne!(request.trace_id, holder.trace_id);
        assert_eq!(holder.spans.len(), 1, "the holder adopted nothing");
        assert_eq!(request.spans.len(), 2);
    });
}

/// The spans of a task with no span of its own, polled while another task's guard holds its span
/// current on the thread, are not that span's children: they record nothing.
#[test]
fn a_guards_span_held_in_one_task_is_not_seen_by_another_tasks_spans() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let collector = Collector::start().await.unwrap();
        let tracer = grpc_tracer(config_for(collector.addr()));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let holder_tracer = tracer.clone();
                let holder = tokio::task::spawn_local(async move {
                    let _guard = holder_tracer.entry_span("holder", &()).entered();
                    drop(LocalSpan::enter("holder-own"));
                    let _ = held_tx.send(());
                    let _ = done_rx.await;
                });
                held_rx.await.unwrap();
                tokio::task::spawn_local(async move {
                    // No span of its own: nothing here belongs to the holder's trace.
                    let local = Span::local("other-task-local");
                    assert!(!local.is_recording());
                    let exit = Span::exit("other-task-exit", "peer:1");
                    assert!(!exit.is_recording());
                    let fast = LocalSpan::enter("other-task-fast");
                    assert!(!fast.is_recording());
                })
                .await
                .unwrap();
                let _ = done_tx.send(());
                holder.await.unwrap();
            })
            .await;
        let segments = collector.wait_for_segments(1, WAIT).await;
        let holder = segment(&segments, "holder");
        let names: Vec<&str> = holder
            .spans
            .iter()
            .map(|s| s.operation_name.as_str())
            .collect();
        assert_eq!(
            names,
            ["holder", "holder-own"],
            "the holder adopted nothing"
        );
    });
}

/// A guard leaked after its trace ended (`mem::forget(span.enter())`, the span then dropped)
/// costs no later request on its thread: each starts a trace of its own and arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_guard_of_an_ended_trace_costs_no_later_request() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let on_thread = tracer.clone();
    std::thread::spawn(move || {
        let leaked = on_thread.entry_span("ended", &());
        std::mem::forget(leaked.enter());
        drop(leaked);
        for _ in 0..20 {
            let entry = on_thread.entry_span("later", &());
            assert!(entry.is_recording());
            let _in = entry.enter();
            drop(LocalSpan::enter("work"));
        }
        // The released trace no longer takes local spans either.
        assert!(!LocalSpan::enter("outside any trace").is_recording());
    })
    .join()
    .unwrap();
    let segments = collector.wait_for_segments(21, WAIT).await;
    let later: Vec<_> = segments
        .iter()
        .filter(|s| s.spans[0].operation_name == "later")
        .collect();
    assert_eq!(later.len(), 20, "every later request is a trace of its own");
    assert!(later.iter().all(|s| s.spans.len() == 2));
}

#[tokio::test(flavor = "current_thread")]
async fn a_leaked_entry_guard_stops_no_later_trace() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()));
    let leaker = tracer.clone();
    tokio::spawn(async move {
        std::mem::forget(leaker.entry_span("leaked", &()).entered());
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let tracer = tracer.clone();
        tokio::spawn(async move {
            let entry = tracer.entry_span("later", &());
            assert!(entry.is_recording());
            let _in = entry.enter();
            drop(LocalSpan::enter("work"));
        })
        .await
        .unwrap();
    }
    let segments = collector.wait_for_segments(3, WAIT).await;
    assert!(
        segments
            .iter()
            .all(|s| s.spans[0].operation_name == "later")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_nothing_is_recorded_even_with_keep_tracing() {
    let collector = Collector::start().await.unwrap();
    let tracer = grpc_tracer(config_for(collector.addr()).keep_tracing(true));
    drop(tracer.entry_span("before", &()));
    let stopping = tracer.clone();
    let stats = tokio::task::spawn_blocking(move || stopping.shutdown(WAIT))
        .await
        .unwrap();
    assert_eq!(stats.sent, 1);
    assert!(!stats.connected);
    let late = tracer.entry_span("late", &());
    assert!(!late.is_recording());
    drop(late);
    assert_eq!(
        tracer.stats().dropped,
        0,
        "nothing was recorded only to be dropped"
    );
}
