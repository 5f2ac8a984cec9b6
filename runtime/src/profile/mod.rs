//! Profiling for OAP: trace profiling (OAP's `ProfileTask`: the code that ran during an
//! endpoint's slow requests) and on-demand CPU profiles (`PprofTask`), the Go agent's way.
//!
//! Thread dumps, the Java agent's way, do not fit async Rust: a request's task hops between
//! worker threads and sits parked while it awaits. Instead, while a task runs, the process is
//! sampled at 100 Hz of CPU time (`skytrace-sampler`: `SIGPROF`, stacks from `.eh_frame`),
//! and each sample carries the trace segment and span its thread was running at that instant
//! (`context/signal_tag.rs`, reading the context's thread-local from the signal handler). When the task ends,
//! the samples of the segments that qualify (`qualify.rs`: the task's endpoint, at least its
//! threshold) become a pprof labelled per segment (`pprof.rs`), sent gzip'd in 1 MiB chunks.
//! Nothing is armed, installed or running, and nothing is added to any span path, while no
//! task runs.
//!
//! - `task.rs`: the commands, read and checked; `runner.rs`: the tasks run, apart from how
//!   they travel (what to ask OAP next, when to sample, what to send);
//! - `recording.rs`: one sampling session and its samples (counted in `aggregate.rs`).

pub(crate) mod aggregate;
pub(crate) mod pprof;
pub(crate) mod qualify;
pub(crate) mod recording;
pub(crate) mod runner;
pub(crate) mod task;

#[cfg(test)]
mod tests;
