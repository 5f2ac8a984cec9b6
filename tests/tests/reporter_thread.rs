//! The gRPC reporter's thread ends when its tracer is gone. Alone in its own test binary: it
//! counts the process's reporter threads and their CPU time, which other tests would disturb.

use std::time::Duration;

use skytrace_tests::{config_for, grpc_tracer, unused_addr};

/// Threads of this process whose name starts with `prefix`, and their CPU time (Linux).
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> (usize, Duration) {
    let mut count = 0;
    let mut cpu = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            count += 1;
            let schedstat =
                std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let ns = schedstat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok());
            cpu += Duration::from_nanos(ns.unwrap_or(0));
        }
    }
    (count, cpu)
}

#[cfg(target_os = "linux")]
#[test]
fn a_tracer_dropped_while_its_backend_is_down_lets_its_reporter_thread_go() {
    let before = threads_named("skytrace-report").0;
    let tracer = grpc_tracer(config_for(unused_addr()));
    drop(tracer.entry_span("never-delivered", &()));
    // The thread names itself once it runs.
    let started = std::time::Instant::now();
    while threads_named("skytrace-report").0 == before {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no reporter thread"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(tracer);
    // It keeps trying to deliver what is queued for a few seconds, sleeping between tries (it
    // spun, connecting without pause, once its owner was gone), then ends.
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (_, cpu) = threads_named("skytrace-report");
    assert!(
        cpu < Duration::from_millis(300),
        "the orphaned reporter used {cpu:?} of CPU in 1 s"
    );
    while threads_named("skytrace-report").0 > before {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the reporter thread never ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
