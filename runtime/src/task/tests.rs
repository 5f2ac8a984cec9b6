//! Spawned tasks, on a real tokio runtime with a tracer that keeps what it reports.

use crate::context::tests::{shape, tracer};
use crate::segment::{RefKind, SpanKind};
use crate::{Instrument, Span};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_awaited_inside_the_request_is_a_local_span_of_its_segment() {
    let (tracer, keep) = tracer();
    let entry = tracer.entry_span("GET:/orders", &());
    async {
        let task = crate::spawn(async {
            let _step = Span::local("render").entered();
            7
        });
        assert_eq!(task.await.unwrap(), 7);
    }
    .in_span(entry)
    .await;
    let segments = keep.take();
    assert_eq!(
        segments.len(),
        1,
        "one segment: the task joined the request's"
    );
    assert_eq!(
        shape(&segments[0]),
        [
            (0, -1, "GET:/orders".into()),
            (1, 0, "Task".into()),
            (2, 1, "render".into()),
        ]
    );
    let task = &segments[0].spans[1];
    assert_eq!(task.kind, SpanKind::Local);
    assert!(segments[0].spans.iter().all(|s| s.end.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_outliving_the_request_continues_in_a_segment_of_its_own() {
    let (tracer, keep) = tracer();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let entry = tracer.entry_span("POST:/import", &());
    let task = {
        let _in = entry.enter();
        // `tokio::spawn`: `crate::spawn` would carry the trace a second time, as a second task
        // span around this one.
        tokio::spawn(
            async move {
                // Runs only once the request has answered.
                let _ = wait.await;
                let _step = Span::local("late").entered();
            }
            .in_current_trace()
            .named("import-rest"),
        )
    };
    drop(entry);
    // The request has ended: its segment is reported, the task's span closed with it.
    let first = keep.take();
    assert_eq!(first.len(), 1);
    assert_eq!(
        shape(&first[0]),
        [(0, -1, "POST:/import".into()), (1, 0, "import-rest".into())]
    );
    go.send(()).unwrap();
    task.await.unwrap();
    let second = keep.take();
    assert_eq!(
        second.len(),
        1,
        "the rest of the task is a segment of its own"
    );
    assert_eq!(
        shape(&second[0]),
        [(0, -1, "import-rest".into()), (1, 0, "late".into())]
    );
    assert_eq!(second[0].trace_id(), first[0].trace_id());
    let reference = &second[0].refs[0];
    assert_eq!(reference.kind, RefKind::CrossThread);
    assert_eq!(reference.parent_segment_id, first[0].segment_id.as_str());
    assert_eq!(reference.parent_span_id, 1, "under the task's span");
    assert_eq!(reference.parent_endpoint, "POST:/import");
}

#[tokio::test]
async fn outside_any_trace_a_task_runs_as_spawned() {
    let (_tracer, keep) = tracer();
    let task = crate::spawn(async {
        assert!(!Span::local("nothing").is_recording());
        1
    });
    assert_eq!(task.await.unwrap(), 1);
    assert!(keep.take().is_empty());
}
