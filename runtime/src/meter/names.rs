//! The names of skytrace's built-in meters, as sent to OAP and as used by
//! `oap/meter-analyzer-config/rust-runtime.yaml` (OAP stores each as `meter_<name>`).
//!
//! ```
//! use skytrace::meter::names;
//!
//! assert!(names::ALL.contains(&names::PROCESS_THREADS));
//! assert!(names::ALL.iter().all(|n| n.starts_with("instance_rust_")));
//! ```

/// CPU time the process used since the previous period, as a percentage of one CPU (as
/// `top` and Python's `instance_pvm_process_cpu_utilization`; above 100 on several cores).
pub const PROCESS_CPU_UTILIZATION: &str = "instance_rust_process_cpu_utilization";
/// Resident set size, bytes.
pub const PROCESS_RESIDENT_MEMORY: &str = "instance_rust_process_resident_memory_bytes";
/// Virtual memory size, bytes.
pub const PROCESS_VIRTUAL_MEMORY: &str = "instance_rust_process_virtual_memory_bytes";
/// Threads of the process.
pub const PROCESS_THREADS: &str = "instance_rust_process_threads";
/// Open file descriptors.
pub const PROCESS_OPEN_FDS: &str = "instance_rust_process_open_fds";

/// Worker threads of the observed tokio runtime.
pub const TOKIO_WORKERS: &str = "instance_rust_tokio_workers";
/// Tasks alive in the observed tokio runtime.
pub const TOKIO_ALIVE_TASKS: &str = "instance_rust_tokio_alive_tasks";
/// Tasks waiting in the runtime's global (injection) queue.
pub const TOKIO_GLOBAL_QUEUE_DEPTH: &str = "instance_rust_tokio_global_queue_depth";

/// Segments (traces' per-task parts) started, since start.
pub const AGENT_SEGMENTS_CREATED: &str = "instance_rust_agent_segments_created";
/// Segments finished and handed to the reporter, since start.
pub const AGENT_SEGMENTS_FINISHED: &str = "instance_rust_agent_segments_finished";
/// Segments delivered and acknowledged by the collector, since start.
pub const AGENT_SEGMENTS_SENT: &str = "instance_rust_agent_segments_sent";
/// Segments never sent (queue full, reporter stopped), since start.
pub const AGENT_SEGMENTS_DROPPED: &str = "instance_rust_agent_segments_dropped";
/// Segments sent on a stream that failed, since start.
pub const AGENT_SEGMENTS_FAILED: &str = "instance_rust_agent_segments_failed";
/// Segments waiting in the reporter's queue now.
pub const AGENT_SEGMENTS_QUEUED: &str = "instance_rust_agent_segments_queued";
/// Log records never sent, since start.
pub const AGENT_LOG_RECORDS_DROPPED: &str = "instance_rust_agent_log_records_dropped";
/// Meter reports never sent (queue full, backend down), since start.
pub const AGENT_METER_REPORTS_DROPPED: &str = "instance_rust_agent_meter_reports_dropped";

/// The process group.
#[cfg(test)]
pub(crate) const PROCESS: &[&str] = &[
    PROCESS_CPU_UTILIZATION,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_THREADS,
    PROCESS_OPEN_FDS,
];

/// Every built-in meter; user meters may not take these names.
pub const ALL: &[&str] = &[
    PROCESS_CPU_UTILIZATION,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_THREADS,
    PROCESS_OPEN_FDS,
    TOKIO_WORKERS,
    TOKIO_ALIVE_TASKS,
    TOKIO_GLOBAL_QUEUE_DEPTH,
    AGENT_SEGMENTS_CREATED,
    AGENT_SEGMENTS_FINISHED,
    AGENT_SEGMENTS_SENT,
    AGENT_SEGMENTS_DROPPED,
    AGENT_SEGMENTS_FAILED,
    AGENT_SEGMENTS_QUEUED,
    AGENT_LOG_RECORDS_DROPPED,
    AGENT_METER_REPORTS_DROPPED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct() {
        for (i, name) in ALL.iter().enumerate() {
            assert!(crate::meter::error::is_identifier(name), "{name}");
            assert!(!ALL[..i].contains(name), "{name} twice");
        }
        assert!(PROCESS.iter().all(|n| ALL.contains(n)));
    }
}
