//! Profiling in this process: a slow request's samples labelled with its segment, the pprof's
//! ids dense from 1, only the task's endpoint and threshold kept.

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Read as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message as _;
use skytrace_proto::pprof::Profile;
use skytrace_sampler::Symbolizer;

use super::aggregate::{Aggregate, Key};
use super::pprof::{self, Keep, SEGMENT_LABEL, SPAN_LABEL, TRACE_LABEL};
use super::qualify::{Kept, Qualifier};
use super::recording::Recording;
use crate::reporter::Reporter;
use crate::segment::Segment;
use crate::{Config, Tracer};

/// Sampling sessions are process-wide: these tests take turns.
static TURN: Mutex<()> = Mutex::new(());

#[derive(Clone, Default)]
struct Keep_(Arc<Mutex<Vec<Segment>>>);

impl Reporter for Keep_ {
    fn report(&self, segment: Segment) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(segment);
    }
}

/// This thread's CPU time, from `/proc/thread-self/stat` (10 ms ticks).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let rest = &stat[stat.rfind(')').expect("a command") + 2..];
    let ticks: u64 = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().unwrap())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Burns `cpu` of this thread's CPU time (not wall time: the machine may be busy).
#[inline(never)]
fn burn_the_cpu(cpu: Duration) -> u64 {
    let until = thread_cpu() + cpu;
    let mut x = 1u64;
    while thread_cpu() < until {
        for _ in 0..200_000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

fn unzip(bytes: &[u8]) -> Profile {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .expect("gzip");
    Profile::decode(&plain[..]).expect("a pprof Profile")
}

fn labels(profile: &Profile, sample: &skytrace_proto::pprof::Sample) -> HashMap<String, String> {
    let text = |i: i64| profile.string_table[usize::try_from(i).unwrap()].clone();
    sample
        .label
        .iter()
        .map(|l| (text(l.key), text(l.str)))
        .collect()
}

/// The function names of a sample, innermost first, resolved as OAP does: location id N is
/// entry N-1, function id F is entry F-1.
fn stack(profile: &Profile, sample: &skytrace_proto::pprof::Sample) -> Vec<String> {
    sample
        .location_id
        .iter()
        .map(|&id| {
            let location = &profile.location[usize::try_from(id - 1).unwrap()];
            let function =
                &profile.function[usize::try_from(location.line[0].function_id - 1).unwrap()];
            profile.string_table[usize::try_from(function.name).unwrap()].clone()
        })
        .collect()
}

fn assert_dense(profile: &Profile) {
    for (i, location) in profile.location.iter().enumerate() {
        assert_eq!(location.id, i as u64 + 1, "location ids run 1, 2, 3, ...");
        assert_eq!(location.line.len(), 1, "each location names its function");
    }
    for (i, function) in profile.function.iter().enumerate() {
        assert_eq!(function.id, i as u64 + 1, "function ids run 1, 2, 3, ...");
    }
    assert_eq!(profile.string_table[0], "");
}

#[test]
fn a_slow_requests_samples_carry_its_segment_and_the_burning_function() {
    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let keep = Keep_::default();
    let config = Config::builder().service_name("svc").build().unwrap();
    let tracer = Tracer::new(&config, keep.clone());
    let mut recording = Recording::start().expect("sampling starts");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for (endpoint, cpu) in [("GET:/slow", 400), ("GET:/other", 300), ("GET:/slow", 0)] {
                let entry = tracer.entry_span(endpoint, &http::HeaderMap::new());
                let _in = entry.enter();
                burn_the_cpu(Duration::from_millis(cpu));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            recording.drain();
        }
    });
    let segments = keep.0.lock().unwrap().drain(..).collect::<Vec<_>>();
    assert_eq!(segments.len(), 3);
    // The slow request of the endpoint qualifies; the other endpoint's and the fast one don't.
    let mut qualifier = Qualifier::new("GET:/slow", 100);
    for segment in &segments {
        qualifier.observe(segment);
    }
    let slow = &segments[0];
    assert_eq!(
        qualifier.kept().keys().collect::<Vec<_>>(),
        [slow.segment_id()]
    );
    let mut stopped = recording.stop();
    let (taken, _) = stopped.counts();
    let profile = unzip(&pprof::gzip(
        &stopped.build(Keep::Segments(qualifier.kept())),
    ));
    assert_dense(&profile);
    assert!(
        !profile.sample.is_empty(),
        "no sample kept ({taken} taken, {:?})",
        stopped.stats
    );
    let mut burning = 0;
    for sample in &profile.sample {
        let labels = labels(&profile, sample);
        assert_eq!(labels[SEGMENT_LABEL], slow.segment_id());
        assert_eq!(labels[TRACE_LABEL], slow.trace_id());
        assert_eq!(labels[SPAN_LABEL], "0");
        if stack(&profile, sample)
            .iter()
            .any(|f| f.contains("burn_the_cpu"))
        {
            burning += sample.value[0];
        }
    }
    // ~40 samples for 400 ms of CPU at 100 Hz; most in the burner.
    assert!(
        burning >= 10,
        "{burning} samples in burn_the_cpu of {taken} ({:?})",
        stopped.stats
    );
}

#[test]
fn the_pprof_has_dense_ids_labels_per_sample_and_cpu_values() {
    let mut samples = Aggregate::default();
    let here = the_pprof_has_dense_ids_labels_per_sample_and_cpu_values as *const () as u64;
    let there = burn_the_cpu as *const () as u64;
    let tagged = |segment: &str, span| Some((Box::<str>::from(segment), span));
    samples.insert(
        Key {
            frames: vec![there, here].into(),
            tag: tagged("seg-a", 2),
        },
        3,
    );
    samples.insert(
        Key {
            frames: vec![here].into(),
            tag: tagged("seg-b", 0),
        },
        1,
    );
    samples.insert(
        Key {
            frames: vec![there].into(),
            tag: None,
        },
        5,
    );
    let kept = HashMap::from([(
        "seg-a".to_owned(),
        Kept {
            trace_id: "trace-a".into(),
        },
    )]);
    let mut symbols = Symbolizer::for_this_process();
    let period = Duration::from_millis(10);
    let started = std::time::SystemTime::now();
    let labelled = pprof::build(
        &samples,
        &mut symbols,
        Keep::Segments(&kept),
        started,
        Duration::from_secs(1),
        period,
    );
    assert_dense(&labelled);
    assert_eq!(labelled.sample.len(), 1, "only the kept segment's samples");
    let sample = &labelled.sample[0];
    assert_eq!(sample.value, [3, 30_000_000]);
    assert_eq!(
        labels(&labelled, sample),
        HashMap::from([
            (SEGMENT_LABEL.to_owned(), "seg-a".to_owned()),
            (TRACE_LABEL.to_owned(), "trace-a".to_owned()),
            (SPAN_LABEL.to_owned(), "2".to_owned()),
        ])
    );
    let names = stack(&labelled, sample);
    assert!(names[0].ends_with("burn_the_cpu"), "{names:?}");
    assert!(
        names[1].ends_with("the_pprof_has_dense_ids_labels_per_sample_and_cpu_values"),
        "{names:?}"
    );
    let text = |i: i64| labelled.string_table[usize::try_from(i).unwrap()].as_str();
    assert_eq!(
        labelled
            .sample_type
            .iter()
            .map(|t| (text(t.r#type), text(t.unit)))
            .collect::<Vec<_>>(),
        [("samples", "count"), ("cpu", "nanoseconds")]
    );
    assert_eq!(labelled.period, 10_000_000);

    let all = pprof::build(
        &samples,
        &mut symbols,
        Keep::All,
        started,
        Duration::from_secs(1),
        period,
    );
    assert_dense(&all);
    assert_eq!(all.sample.len(), 3);
    assert!(all.sample.iter().all(|s| s.label.is_empty()));
    // Two addresses, two functions, shared across samples.
    assert_eq!((all.location.len(), all.function.len()), (2, 2));
}

#[test]
fn chunks_are_at_most_a_mebibyte_and_there_is_always_a_last_one() {
    let bytes = vec![7u8; pprof::CHUNK * 2 + 10];
    let chunks = pprof::chunks(&bytes);
    assert_eq!(
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
        [pprof::CHUNK, pprof::CHUNK, 10]
    );
    assert_eq!(pprof::chunks(&[]).len(), 1);
}

fn command(name: &str, args: &[(&str, String)]) -> skytrace_proto::v3::Commands {
    skytrace_proto::v3::Commands {
        commands: vec![skytrace_proto::v3::Command {
            command: name.into(),
            args: args
                .iter()
                .map(|(k, v)| skytrace_proto::v3::KeyStringValuePair {
                    key: (*k).into(),
                    value: v.clone(),
                })
                .collect(),
        }],
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn instance() -> super::runner::Instance {
    super::runner::Instance {
        service: "svc".into(),
        instance: "svc-1".into(),
    }
}

/// A trace task as OAP sends it, through the runner: `lastCommandTime` follows the largest
/// `CreateTime`, an overlapping task is refused, sampling runs in the task's window, and the
/// report holds the slow request's samples, in chunks ending with `isLast`, then the finish.
#[test]
fn a_trace_task_runs_in_its_window_and_reports_the_slow_requests_profile() {
    use super::runner::TraceTasks;

    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let keep = Keep_::default();
    let tracer = Tracer::new(
        &Config::builder().service_name("svc").build().unwrap(),
        keep.clone(),
    );
    let mut tasks = TraceTasks::new(instance());
    assert_eq!(tasks.query().last_command_time, 0);
    // A one-minute task that started 58 s ago: two seconds left.
    let args = |id: &str, create: i64| {
        vec![
            ("SerialNumber", "1".to_owned()),
            ("TaskId", id.to_owned()),
            ("EndpointName", "GET:/slow".to_owned()),
            ("Duration", "1".to_owned()),
            ("MinDurationThreshold", "100".to_owned()),
            ("DumpPeriod", "10".to_owned()),
            ("MaxSamplingCount", "5".to_owned()),
            ("StartTime", (now_ms() - 58_000).to_string()),
            ("CreateTime", create.to_string()),
        ]
    };
    let now = std::time::SystemTime::now();
    assert!(
        tasks
            .receive(&command("ProfileTaskQuery", &args("task-1", 1_000)), now)
            .is_empty()
    );
    assert_eq!(tasks.query().last_command_time, 1_000);
    let problems = tasks.receive(&command("ProfileTaskQuery", &args("task-2", 900)), now);
    assert_eq!(
        problems,
        ["profiling task task-2 overlaps one already received"]
    );
    assert_eq!(
        tasks.query().last_command_time,
        1_000,
        "the largest CreateTime seen"
    );

    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            for (endpoint, cpu) in [("GET:/slow", 300), ("GET:/slow", 0)] {
                let entry = tracer.entry_span(endpoint, &http::HeaderMap::new());
                let _in = entry.enter();
                burn_the_cpu(Duration::from_millis(cpu));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(std::time::Instant::now() < deadline, "the task never ended");
            for segment in keep.0.lock().unwrap().drain(..) {
                tasks.observe_segment(&segment.into_proto().encode_to_vec());
            }
            if let Some(report) = tasks.tick(std::time::SystemTime::now()) {
                break report.expect("sampling ran")();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!tasks.is_running());
    assert_eq!(report.kept_segments, 1, "the slow request only");
    let last = report.chunks.len() - 1;
    assert!(
        report
            .chunks
            .iter()
            .enumerate()
            .all(|(i, c)| c.is_last == (i == last) && c.task_id == "task-1")
    );
    assert!(
        report
            .chunks
            .iter()
            .all(|c| c.payload.len() <= pprof::CHUNK)
    );
    let bytes: Vec<u8> = report
        .chunks
        .iter()
        .flat_map(|c| c.payload.clone())
        .collect();
    let profile = unzip(&bytes);
    assert_dense(&profile);
    let segments: std::collections::HashSet<String> = profile
        .sample
        .iter()
        .map(|s| labels(&profile, s)[SEGMENT_LABEL].clone())
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert!(profile.sample.iter().any(|s| {
        stack(&profile, s)
            .iter()
            .any(|f| f.contains("burn_the_cpu"))
    }));
    assert_eq!(
        (
            report.finish.task_id.as_str(),
            report.finish.service.as_str(),
            report.finish.service_instance.as_str()
        ),
        ("task-1", "svc", "svc-1")
    );
}

/// Pprof tasks: a kind other than CPU is answered at once with an error saying so; a CPU task
/// samples until `CreateTime + Duration` and uploads its metadata (size given) then content.
#[test]
fn pprof_tasks_upload_cpu_profiles_and_refuse_other_kinds() {
    use skytrace_proto::v10::{PprofProfilingStatus, pprof_data};

    use super::runner::PprofTasks;

    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let mut tasks = PprofTasks::new(instance());
    let args = |id: &str, events: &str, create: i64| {
        vec![
            ("TaskId", id.to_owned()),
            ("Events", events.to_owned()),
            ("Duration", "1".to_owned()),
            ("CreateTime", create.to_string()),
            ("DumpPeriod", "0".to_owned()),
        ]
    };
    let now = std::time::SystemTime::now();
    let refused = tasks.receive(
        &command("PprofTaskQuery", &args("p-heap", "heap", now_ms() - 60_000)),
        now,
    );
    assert_eq!(refused.len(), 1);
    let meta = refused[0].metadata.metadata.as_ref().unwrap();
    assert_eq!(
        (meta.task_id.as_str(), meta.r#type),
        (
            "p-heap",
            PprofProfilingStatus::PprofExecutionTaskError as i32
        )
    );
    assert!(
        matches!(&refused[0].metadata.result, Some(pprof_data::Result::ErrorMessage(m)) if m.contains("CPU only"))
    );
    // One minute created 59 s ago: a second left.
    let create = now_ms() - 59_000;
    assert!(
        tasks
            .receive(
                &command("PprofTaskQuery", &args("p-cpu", "cpu", create)),
                now
            )
            .is_empty()
    );
    assert_eq!(tasks.query().last_command_time, create);
    assert!(tasks.is_running());
    let upload = loop {
        burn_the_cpu(Duration::from_millis(50));
        if let Some(build) = tasks.tick(std::time::SystemTime::now()) {
            break build();
        }
    };
    let meta = upload.metadata.metadata.as_ref().unwrap();
    assert_eq!(
        meta.r#type,
        PprofProfilingStatus::PprofProfilingSuccess as i32
    );
    let content: Vec<u8> = upload
        .content
        .iter()
        .flat_map(|c| match &c.result {
            Some(pprof_data::Result::Content(bytes)) => bytes.clone(),
            _ => panic!("content chunks only after the metadata"),
        })
        .collect();
    assert_eq!(meta.content_size as usize, content.len());
    let profile = unzip(&content);
    assert_dense(&profile);
    assert!(profile.sample.iter().all(|s| s.label.is_empty()));
    assert!(profile.sample.iter().any(|s| {
        stack(&profile, s)
            .iter()
            .any(|f| f.contains("burn_the_cpu"))
    }));
}

/// Threads entering and leaving spans of ever new segments as fast as they can (the context's
/// current handle replaced all the time, where a signal can land mid-store), sampled at a 1 ms
/// period: nothing crashes, and every tag a sample carries is the id of a segment that was
/// really recorded (a torn read is caught, never labelled with garbage).
#[test]
fn samples_taken_while_the_context_churns_carry_only_real_segment_ids() {
    let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let keep = Keep_::default();
    let tracer = Tracer::new(
        &Config::builder().service_name("svc").build().unwrap(),
        keep.clone(),
    );
    crate::context::signal_tag::install();
    let session =
        skytrace_sampler::Session::start(Duration::from_millis(1)).expect("sampling starts");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut tags = std::collections::HashSet::new();
    let mut samples = 0usize;
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let a = tracer.entry_span("GET:/a", &http::HeaderMap::new());
                    let b = tracer.entry_span("GET:/b", &http::HeaderMap::new());
                    for _ in 0..20 {
                        let _in_a = a.enter();
                        let _local = crate::LocalSpan::enter("step");
                        drop(_local);
                        let _in_b = b.enter();
                        n = black_box(n.wrapping_add(1));
                    }
                }
                n
            });
        }
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            session.drain(|s| {
                samples += 1;
                if let Some((text, _)) = s.tag() {
                    tags.insert(String::from_utf8(text.to_vec()).expect("ASCII ids only"));
                }
            });
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    drop(session);
    let recorded: std::collections::HashSet<String> = keep
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.segment_id().to_owned())
        .collect();
    assert!(
        samples > 0 && !tags.is_empty(),
        "{samples} samples, {} tagged",
        tags.len()
    );
    let strangers: Vec<_> = tags.difference(&recorded).collect();
    assert!(
        strangers.is_empty(),
        "tags naming no recorded segment: {strangers:?}"
    );
}
