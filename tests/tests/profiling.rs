//! Profiling over real gRPC on loopback: the embedded collector serves OAP's profiling tasks,
//! the agent polls for them, samples while they run and reports what OAP receives. Sampling is
//! process-wide: the tests take turns.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use skytrace::Tracer;
use skytrace_collector::skytrace_proto::pprof::{Profile, Sample};
use skytrace_collector::{Collector, PprofTaskSpec, ProfileTaskSpec};
use skytrace_tests::{config_for, grpc_tracer};

/// Long enough for a task's window, its grace period and a loaded machine.
const PROFILE_WAIT: Duration = Duration::from_secs(90);

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This thread's CPU time (10 ms ticks of `/proc/thread-self/stat`).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let ticks: u64 = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().unwrap())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Burns `cpu` of this thread's CPU time (the machine may be busy: CPU, not wall, time).
#[inline(never)]
fn burn_the_cpu_in_a_slow_request(cpu: Duration) -> u64 {
    let until = thread_cpu() + cpu;
    let mut x = 1u64;
    while thread_cpu() < until {
        for _ in 0..200_000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

/// A request of `endpoint` on `tracer` that burns `cpu`.
fn request(tracer: &Tracer, endpoint: &'static str, cpu: Duration) {
    let entry = tracer.entry_span(endpoint, &http::HeaderMap::new());
    let _in = entry.enter();
    burn_the_cpu_in_a_slow_request(cpu);
}

fn label(profile: &Profile, sample: &Sample, key: &str) -> Option<String> {
    let text = |i: i64| profile.string_table[usize::try_from(i).unwrap()].clone();
    sample
        .label
        .iter()
        .find(|l| text(l.key) == key)
        .map(|l| text(l.str))
}

fn functions(profile: &Profile, sample: &Sample) -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_for_an_endpoint_reports_its_slow_requests_samples_and_finishes() {
    let _turn = TURN.lock().await;
    let collector = Collector::builder()
        .profile_task(ProfileTaskSpec::new(
            "GET:/slow",
            Duration::from_secs(4),
            Duration::from_millis(50),
        ))
        .start()
        .await
        .unwrap();
    let tracer = grpc_tracer(
        config_for(collector.addr())
            .service_name("profiled")
            .profile_task_interval(Duration::from_secs(1)),
    );
    // The agent asks at once, and the task's window starts then.
    assert!(
        collector
            .wait_for(PROFILE_WAIT, |r| !r.profile_task_queries.is_empty())
            .await,
        "the agent never asked for profiling tasks"
    );
    let worker = tracer.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            request(&worker, "GET:/slow", Duration::from_millis(200));
            request(&worker, "GET:/slow", Duration::ZERO);
            request(&worker, "GET:/other", Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(
        collector
            .wait_for(PROFILE_WAIT, |r| !r.profile_reports.is_empty()
                && !r.profile_task_finishes.is_empty())
            .await,
        "no profile and task finish within {PROFILE_WAIT:?}"
    );
    let received = collector.received();
    let slow: HashSet<String> = received
        .segments
        .iter()
        .filter(|s| {
            let entry = &s.spans[0];
            entry.operation_name == "GET:/slow" && entry.end_time - entry.start_time >= 50
        })
        .map(|s| s.trace_segment_id.clone())
        .collect();
    assert!(
        !slow.is_empty(),
        "the slow requests' segments were reported"
    );
    let report = &received.profile_reports[0];
    assert_eq!(report.task_id, "profile-task-1");
    assert!(report.chunks.iter().all(|&c| c <= 1024 * 1024));
    let profile = report.profile.as_ref().expect("a gzip'd pprof");
    assert!(!profile.sample.is_empty(), "the profile holds samples");
    let mut burning = 0;
    for sample in &profile.sample {
        let segment = label(profile, sample, "traceSegmentID").expect("every sample labelled");
        assert!(
            slow.contains(&segment),
            "{segment} is not a slow GET:/slow segment"
        );
        assert!(label(profile, sample, "traceID").is_some());
        assert!(label(profile, sample, "spanID").is_some());
        if functions(profile, sample)
            .iter()
            .any(|f| f.contains("burn_the_cpu_in_a_slow_request"))
        {
            burning += sample.value[0];
        }
    }
    assert!(
        burning > 0,
        "the function burning the CPU is in the profile"
    );
    let finish = &received.profile_task_finishes[0];
    assert_eq!(
        (finish.task_id.as_str(), finish.service.as_str()),
        ("profile-task-1", "profiled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_pprof_task_uploads_the_whole_process_profile() {
    let _turn = TURN.lock().await;
    let collector = Collector::builder()
        .pprof_task(PprofTaskSpec::new("cpu", Duration::from_secs(3)))
        .start()
        .await
        .unwrap();
    let tracer = grpc_tracer(
        config_for(collector.addr())
            .service_name("pprofed")
            .profile_task_interval(Duration::from_secs(1)),
    );
    assert!(
        collector
            .wait_for(PROFILE_WAIT, |r| !r.pprof_task_queries.is_empty())
            .await
    );
    let worker = tracer.clone();
    tokio::task::spawn_blocking(move || request(&worker, "GET:/any", Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(
        collector
            .wait_for(PROFILE_WAIT, |r| !r.pprof_reports.is_empty())
            .await,
        "no pprof upload within {PROFILE_WAIT:?}"
    );
    let report = &collector.received().pprof_reports[0];
    assert_eq!(report.metadata.task_id, "pprof-task-1");
    assert_eq!(report.metadata.service, "pprofed");
    assert_eq!(report.error, None);
    assert_eq!(report.metadata.content_size as usize, report.bytes.len());
    let profile = report.profile.as_ref().expect("a gzip'd pprof");
    assert!(profile.sample.iter().all(|s| s.label.is_empty()));
    assert!(profile.sample.iter().any(|s| {
        functions(profile, s)
            .iter()
            .any(|f| f.contains("burn_the_cpu_in_a_slow_request"))
    }));
}

/// `SW_AGENT_PROFILE_ACTIVE=false`: the agent reports as usual but never asks for tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_profiling_off_nothing_is_asked() {
    let _turn = TURN.lock().await;
    let collector = Collector::builder()
        .profile_task(ProfileTaskSpec::new(
            "GET:/slow",
            Duration::from_secs(60),
            Duration::ZERO,
        ))
        .pprof_task(PprofTaskSpec::new("cpu", Duration::from_secs(60)))
        .start()
        .await
        .unwrap();
    let config = skytrace::Config::builder()
        .env(|name| (name == "SW_AGENT_PROFILE_ACTIVE").then(|| "false".to_owned()))
        .unwrap();
    let _tracer = grpc_tracer(
        config
            .service_name("unprofiled")
            .backend_services(collector.addr().to_string())
            .heartbeat_period(Duration::from_secs(1))
            .profile_task_interval(Duration::from_secs(1)),
    );
    // Three keep-alives a second apart: polls, had they been on, would have come each second
    // from the start.
    let started = Instant::now();
    assert!(
        collector
            .wait_for(PROFILE_WAIT, |r| r.pings.len() >= 3)
            .await
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    let received = collector.received();
    assert!(received.profile_task_queries.is_empty());
    assert!(received.pprof_task_queries.is_empty());
}

/// `SW_AGENT_PROCESS_STATUS_HOOK_ENABLE`: Rover's process status file is written at the
/// keep-alive, naming the service and instance, and removed when the reporter stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_status_file_is_written_at_the_keep_alive() {
    let _turn = TURN.lock().await;
    let collector = Collector::start().await.unwrap();
    let file = std::env::temp_dir()
        .join("apache_skywalking/process")
        .join(std::process::id().to_string())
        .join("metadata.properties");
    let _ = std::fs::remove_file(&file);
    let config = config_for(collector.addr())
        .service_name("hooked")
        .instance_name("hooked-1")
        .process_status_hook(true)
        .build()
        .unwrap();
    let reporter = skytrace::GrpcReporter::start(&config).unwrap();
    assert!(
        collector
            .wait_for(PROFILE_WAIT, |r| r.pings.len() >= 2)
            .await
    );
    let text = std::fs::read_to_string(&file).expect("the file is written at the keep-alive");
    assert!(text.contains("service_name=hooked\n"), "{text}");
    assert!(text.contains("instance_name=hooked-1\n"), "{text}");
    assert!(text.contains("language=rust\n"), "{text}");
    tokio::task::spawn_blocking(move || {
        skytrace::Reporter::shutdown(&reporter, Duration::from_secs(5));
    })
    .await
    .unwrap();
    assert!(!file.exists(), "removed when the reporter stops");
}
