//! The context alone: no runtime, no network. `.ci/run` runs these under valgrind's memcheck,
//! since they exercise every path of the `unsafe` thread-local code (`current.rs`).

use std::sync::{Arc, Mutex, PoisonError};

use crate::propagation::{Injector, SW8, SW8_X, Sw8Header};
use crate::reporter::Reporter;
use crate::segment::{Segment, SpanKind};
use crate::{Config, LocalSpan, Span, TraceSettings, Tracer};

/// Keeps every segment it is given (the task tests' reporter too).
#[derive(Clone, Default)]
pub(crate) struct Keep(Arc<Mutex<Vec<Segment>>>);

impl Reporter for Keep {
    fn report(&self, segment: Segment) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(segment);
    }
}

impl Keep {
    pub(crate) fn take(&self) -> Vec<Segment> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

pub(crate) fn tracer() -> (Tracer, Keep) {
    let keep = Keep::default();
    let config = Config::builder()
        .service_name("svc")
        .instance_name("svc-1")
        .build()
        .unwrap();
    (Tracer::new(&config, keep.clone()), keep)
}

/// (id, parent, name) of every span, in order.
pub(crate) fn shape(segment: &Segment) -> Vec<(i32, i32, String)> {
    segment
        .spans
        .iter()
        .map(|s| (s.id, s.parent, s.operation.to_string()))
        .collect()
}

fn names(segment: &Segment) -> Vec<String> {
    segment
        .spans
        .iter()
        .map(|s| s.operation.to_string())
        .collect()
}

#[test]
fn local_spans_and_spans_nest_and_reach_the_segment() {
    let (tracer, keep) = tracer();
    {
        let _entry = tracer.entry_span("entry", &()).entered();
        {
            let a = LocalSpan::enter("a");
            a.add_tag("k", "v");
            let _b = LocalSpan::enter("b");
        }
        let c = Span::local("c");
        let _in = c.enter();
        let d = Span::exit("d", "peer:1");
        d.set_component(7);
    }
    let segments = keep.take();
    assert_eq!(segments.len(), 1);
    assert_eq!(
        shape(&segments[0]),
        [
            (0, -1, "entry".into()),
            (1, 0, "a".into()),
            (2, 1, "b".into()),
            (3, 0, "c".into()),
            (4, 3, "d".into()),
        ]
    );
    let spans = &segments[0].spans;
    assert_eq!(spans[1].tags.len(), 1);
    assert_eq!(spans[4].component, 7);
    assert_eq!(spans[4].kind, SpanKind::Exit);
    assert!(spans.iter().all(|s| s.end.is_some()));
    // Nothing is current any more.
    assert!(!Span::local("after").is_recording());
}

#[test]
fn a_span_ended_on_another_thread_keeps_its_changes() {
    let (tracer, keep) = tracer();
    let entry = tracer.entry_span("entry", &());
    {
        let _in = entry.enter();
        let moved = Span::local("moved");
        std::thread::spawn(move || {
            moved.add_tag("where", "elsewhere");
            moved.set_error(true);
        })
        .join()
        .unwrap();
    }
    drop(entry);
    let segments = keep.take();
    let moved = &segments[0].spans[1];
    assert_eq!(&*moved.operation, "moved");
    assert!(moved.is_error);
    assert_eq!(moved.tags.len(), 1);
}

/// An `Injector` that runs arbitrary code.
struct Hostile<F: FnMut(&str, String)>(F);

impl<F: FnMut(&str, String)> Injector for Hostile<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value);
    }
}

#[test]
fn an_injector_that_panics_leaves_the_context_as_it_was() {
    let (tracer, keep) = tracer();
    for _ in 0..2 {
        let entry = tracer.entry_span("entry", &());
        {
            let _in = entry.enter();
            let exit = Span::exit("call", "peer:1");
            let _in = exit.enter();
            let panicked = std::panic::catch_unwind(|| {
                crate::inject(&mut Hostile(|_: &str, _: String| panic!("injector")));
            });
            assert!(panicked.is_err());
            // Still inside the exit span: a sibling of it is its child.
            let child = Span::local("after-panic");
            assert!(child.is_recording());
        }
        drop(entry);
    }
    let segments = keep.take();
    assert_eq!(
        segments.len(),
        2,
        "the next trace on this thread is reported too"
    );
    for segment in &segments {
        assert_eq!(
            shape(segment),
            [
                (0, -1, "entry".into()),
                (1, 0, "call".into()),
                (2, 1, "after-panic".into()),
            ]
        );
    }
}

#[test]
fn an_injector_that_starts_its_own_trace_leaves_the_outer_one_whole() {
    let (tracer, keep) = tracer();
    let (inner_tracer, inner_keep) = self::tracer();
    let mut written = Vec::new();
    let entry = tracer.entry_span("outer", &());
    {
        let _in = entry.enter();
        let exit = Span::exit("call", "peer:1");
        let _in = exit.enter();
        assert!(crate::inject(&mut Hostile(|key: &str, value: String| {
            // A trace of its own, entered and left inside the callback: the entry is a child of
            // the current span only if this thread's context is the outer one; it must not be
            // taken out from under the callback.
            let own = inner_tracer.entry_span("inner", &());
            let _in = own.enter();
            let _step = LocalSpan::enter("inner-step");
            written.push((key.to_owned(), value));
        })));
        let _after = LocalSpan::enter("after");
    }
    drop(entry);
    let outer = keep.take();
    assert_eq!(outer.len(), 1);
    let names = names(&outer[0]);
    assert_eq!(names[..3], ["outer", "call", "inner"]);
    assert!(names.contains(&"after".to_string()));
    assert!(
        inner_keep.take().is_empty(),
        "the callback's entry joined the current trace"
    );
    let sw8 = &written.iter().find(|(k, _)| k == SW8).unwrap().1;
    let header = Sw8Header::decode(sw8).unwrap();
    assert_eq!(header.parent_span_id, 1);
    // Span ids stayed unique.
    let mut ids: Vec<i32> = outer[0].spans.iter().map(|s| s.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), outer[0].spans.len());
}

#[test]
fn a_correlation_conversion_that_records_does_not_deadlock() {
    struct Loud(&'static str);
    impl From<Loud> for String {
        fn from(loud: Loud) -> String {
            // Records on the current segment while `put_correlation` runs.
            Span::local("conversion").add_tag("k", loud.0);
            loud.0.to_owned()
        }
    }
    let (tracer, keep) = tracer();
    {
        let _entry = tracer.entry_span("entry", &()).entered();
        assert!(crate::put_correlation(Loud("key"), Loud("value")));
        assert_eq!(crate::get_correlation("key").as_deref(), Some("value"));
    }
    assert_eq!(keep.take()[0].spans.len(), 3);
}

#[test]
fn a_finished_segment_adopts_no_span() {
    let (tracer, keep) = tracer();
    let entry = tracer.entry_span("entry", &());
    let late = {
        let _in = entry.enter();
        Span::local("outlives")
    };
    drop(entry);
    assert_eq!(keep.take().len(), 1);
    // `late`'s segment is gone to the reporter: spans under it record nothing.
    let _in = late.enter();
    assert!(!Span::local("child").is_recording());
    assert!(!LocalSpan::enter("local child").is_recording());
}

#[test]
fn leaked_local_spans_and_guards_cost_at_most_themselves() {
    let (tracer, keep) = tracer();
    {
        let _entry = tracer.entry_span("entry", &()).entered();
        std::mem::forget(LocalSpan::enter("leaked"));
        let _sibling = LocalSpan::enter("sibling");
    }
    let segments = keep.take();
    assert_eq!(segments.len(), 1);
    assert!(
        !Span::local("after").is_recording(),
        "nothing is left current"
    );
    // A leaked guard of a span that is not the thread's first.
    {
        let _entry = tracer.entry_span("entry", &()).entered();
        std::mem::forget(Span::local("leaked").entered());
    }
    assert_eq!(keep.take().len(), 1);
}

#[test]
fn new_settings_apply_to_the_next_trace_on_every_thread() {
    let (tracer, keep) = tracer();
    let mut settings = tracer.settings();
    settings.span_limit = 2;
    settings.ignore_suffix = vec![".txt".into()];
    // Read once on another thread, so that its copy is stale afterwards.
    std::thread::scope(|s| {
        s.spawn(|| drop(tracer.entry_span("before", &())));
    });
    let open = tracer.entry_span("open", &());
    tracer.set_settings(settings.clone()).unwrap();
    assert_eq!(tracer.settings(), settings);
    {
        // The segment keeps the limit it started with.
        let _in = open.enter();
        for _ in 0..3 {
            assert!(Span::local("x").is_recording());
        }
    }
    drop(open);
    std::thread::scope(|s| {
        s.spawn(|| {
            drop(tracer.entry_span("GET:/a.txt", &()));
            let entry = tracer.entry_span("limited", &());
            let _in = entry.enter();
            assert!(Span::local("one").is_recording());
            assert!(!Span::local("two").is_recording());
        });
    });
    let names: Vec<String> = keep.take().iter().map(|s| names(s)[0].clone()).collect();
    assert_eq!(names, ["before", "open", "limited"]);
    let bad = TraceSettings {
        span_limit: 0,
        ..settings
    };
    assert_eq!(tracer.set_settings(bad).unwrap_err().variable, "span_limit");
}

#[test]
fn an_unsampled_trace_propagates_through_an_exit_span() {
    let (tracer, keep) = tracer();
    let mut settings = tracer.settings();
    settings.ignore_suffix = vec!["ignored".into()];
    tracer.set_settings(settings).unwrap();
    let entry = tracer.entry_span("ignored", &());
    assert!(!entry.is_recording());
    let mut headers = http::HeaderMap::new();
    {
        let _in = entry.enter();
        assert!(!Span::local("local").is_recording());
        let exit = Span::exit("call", "peer:1");
        assert!(exit.inject(&mut headers));
    }
    let header = Sw8Header::decode(headers[SW8].to_str().unwrap()).unwrap();
    assert!(!header.sampled);
    assert_eq!(header.target_address, "peer:1");
    drop(entry);
    assert!(keep.take().is_empty());
}

#[test]
fn a_leaked_entry_guard_swallows_a_bounded_number_of_later_entries() {
    let (tracer, keep) = tracer();
    std::thread::spawn(move || {
        std::mem::forget(tracer.entry_span("leaked", &()).entered());
        for _ in 0..40 {
            let entry = tracer.entry_span("later", &());
            assert!(entry.is_recording());
            let _in = entry.enter();
            drop(LocalSpan::enter("work"));
        }
    })
    .join()
    .unwrap();
    let later = keep.take();
    let bound = super::recording::MAX_NESTED_ENTRIES as usize;
    assert_eq!(
        later.len(),
        40 - bound,
        "entries past the bound start traces of their own"
    );
    assert!(later.iter().all(|s| names(s) == ["later", "work"]));
}

/// What a profiler's signal handler reads of the thread (`current::view_for_signal`): the
/// current span's id, and the address of its segment's id, which holds that id's bytes.
#[cfg(feature = "profiling")]
#[test]
fn the_signal_view_points_at_the_current_segment_and_names_the_span() {
    use crate::context::current::view_for_signal;
    use crate::id::Id;

    let (tracer, keep) = tracer();
    assert!(view_for_signal().is_none(), "nothing current");
    let read = |at: usize| {
        let raw = Id::RAW;
        let mut bytes = vec![0u8; raw.size];
        assert_eq!(skytrace_sampler::read_memory(at, &mut bytes), raw.size);
        let len = usize::from(bytes[raw.len]);
        String::from_utf8(bytes[raw.text..raw.text + len].to_vec()).unwrap()
    };
    let (at_entry, at_local, id_in_local) = {
        let entry = tracer.entry_span("GET:/slow", &http::HeaderMap::new());
        let _in = entry.enter();
        let at_entry = view_for_signal().expect("a recording span is current");
        let id = read(at_entry.segment_id_at);
        let local = LocalSpan::enter("step");
        let at_local = view_for_signal().expect("still recording");
        drop(local);
        (at_entry, at_local, id)
    };
    assert!(
        view_for_signal().is_none(),
        "nothing current after the entry span"
    );
    assert_eq!((at_entry.span_id, at_local.span_id), (0, 1));
    assert_eq!(at_entry.segment_id_at, at_local.segment_id_at);
    assert_eq!(id_in_local, keep.take()[0].segment_id());
}

#[test]
fn an_ignored_path_gets_no_span_inside_a_trace_or_outside() {
    let (tracer, keep) = tracer();
    tracer
        .set_settings(TraceSettings {
            ignore_paths: vec!["/health".into()],
            // One trace sampled: an ignored path gets no span at all, where another path gets
            // an unsampled one that still propagates.
            sample_per_3_secs: 1,
            ..tracer.settings()
        })
        .unwrap();
    let request = |path| {
        let name = super::EntryName {
            path: Some(path),
            ..super::EntryName::from(std::borrow::Cow::Borrowed("GET:/r"))
        };
        format!("{:?}", tracer.entry_span_with(name, &(), |_| {}))
    };
    let noop = "Span { state: \"noop\" }";
    assert_eq!(request("/health"), noop);
    let name = super::EntryName::from(std::borrow::Cow::Borrowed("GET:/r"));
    let traced = tracer.entry_span_with(name, &(), |_| {});
    assert!(traced.is_recording());
    assert_eq!(request("/users"), "Span { state: \"unsampled\" }");
    assert_eq!(request("/health"), noop);
    {
        // Nested entries join the trace as local spans; an ignored one does not.
        let _in = traced.enter();
        assert_eq!(request("/health"), noop);
        assert_eq!(request("/users"), "Span { state: \"recording\" }");
    }
    drop(traced);
    let segments = keep.take();
    assert_eq!(segments.len(), 1);
    assert_eq!(names(&segments[0]), ["GET:/r", "GET:/r"]);
}

#[test]
fn a_finished_segment_is_kept_for_the_threads_next_one_without_its_agent() {
    use crate::context::recording;
    std::thread::spawn(|| {
        let (tracer, keep) = tracer();
        let first = tracer.entry_span("GET:/a", &());
        let at = first.segment_address().unwrap();
        {
            let _in = first.enter();
            drop(LocalSpan::enter("work"));
        }
        drop(first);
        assert_eq!(shape(&keep.take()[0]).len(), 2);
        assert_eq!(
            recording::spare(),
            Some((at, true)),
            "kept, pointing at the idle agent"
        );
        // The spare does not keep the agent alive: the tracer is its only holder again.
        assert_eq!(Arc::strong_count(tracer.agent()), 1);
        let second = tracer.entry_span("GET:/b", &());
        assert_eq!(second.segment_address(), Some(at), "the kept allocation");
        assert_eq!(recording::spare(), None, "taken");
        // A segment something else still holds is not kept: a handle outlives its first span.
        let third_span = tracer.entry_span("GET:/c", &());
        let outliving = {
            let _in = third_span.enter();
            Span::local("background")
        };
        drop(second);
        assert!(recording::spare().is_some());
        drop(third_span);
        let kept = recording::spare().map(|(at, _)| at);
        assert_ne!(kept, outliving.segment_address(), "a held segment was kept");
        drop(outliving);
        let segments = keep.take();
        assert_eq!(
            segments.iter().map(names).collect::<Vec<_>>(),
            [
                vec!["GET:/b".to_owned()],
                vec!["GET:/c".to_owned(), "background".to_owned()]
            ]
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_kept_segment_starts_afresh() {
    std::thread::spawn(|| {
        let (tracer, keep) = tracer();
        let mut settings = tracer.settings();
        settings.span_limit = 3;
        tracer.set_settings(settings).unwrap();
        // The first segment continues a caller's trace, carries a correlation, adopts a nested
        // entry and reaches its span limit.
        let mut carrier = http::HeaderMap::new();
        carrier.insert(
            SW8,
            http::HeaderValue::from_static(
                "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA==",
            ),
        );
        // Skipping analysis: every span of the segment does.
        carrier.insert(SW8_X, http::HeaderValue::from_static("1"));
        let first = tracer.entry_span("GET:/a", &carrier);
        let at = first.segment_address();
        let mut sent = http::HeaderMap::new();
        {
            let _in = first.enter();
            assert!(crate::snapshot::put_correlation("k", "v"));
            assert!(Span::exit("call", "peer:1").inject(&mut sent));
            // As many nested entries as a segment adopts (the limit leaves most unrecorded).
            for _ in 0..super::recording::MAX_NESTED_ENTRIES {
                drop(tracer.entry_span("nested", &()));
            }
            assert!(!Span::local("over the limit").is_recording());
        }
        drop(first);
        let first = keep.take().remove(0);
        assert!(first.size_limited && first.refs.len() == 1);
        assert!(first.spans.iter().all(|s| s.skip_analysis));
        assert!(sent.contains_key("sw8-correlation"));
        // The next segments take one span more.
        let mut settings = tracer.settings();
        settings.span_limit = 4;
        tracer.set_settings(settings).unwrap();

        let second = tracer.entry_span("GET:/b", &());
        assert_eq!(second.segment_address(), at, "the kept allocation");
        let mut sent = http::HeaderMap::new();
        {
            let _in = second.enter();
            assert!(Span::exit("call", "peer:1").inject(&mut sent));
            assert!(tracer.entry_span("nested", &()).is_recording());
            assert!(
                Span::local("fourth").is_recording(),
                "the first's span limit"
            );
        }
        drop(second);
        let second = keep.take().remove(0);
        assert!(!second.size_limited, "size-limited as the first");
        assert!(second.refs.is_empty(), "the first's ref");
        assert_ne!(second.trace_id(), first.trace_id(), "the first's trace");
        assert_ne!(second.segment_id(), first.segment_id());
        assert_eq!(
            shape(&second),
            [
                (0, -1, "GET:/b".to_owned()),
                (1, 0, "call".to_owned()),
                (2, 0, "nested".to_owned()),
                (3, 0, "fourth".to_owned())
            ]
        );
        assert!(
            !second.spans.iter().any(|s| s.skip_analysis),
            "the first's sw8-x"
        );
        assert!(
            !sent.contains_key("sw8-correlation"),
            "the first's correlation"
        );

        // The third continues a caller's trace again: its ref is its own.
        drop(tracer.entry_span("GET:/c", &carrier));
        let third = keep.take().remove(0);
        assert_eq!(third.refs.len(), 1, "the caller's ref");
    })
    .join()
    .unwrap();
}
