//! Running OAP's profiling tasks, apart from how they travel: what to ask OAP next
//! (`lastCommandTime`), which commands to accept, when to start and stop sampling, and the
//! messages to send when a task is over. The reporter's profiling signals call these on their
//! schedule and send what they return; nothing here touches the network.
//!
//! - A trace-profiling task samples from its `StartTime` to `StartTime + Duration` (received
//!   late, for what is left of it), keeps learning which finished segments qualify for a grace
//!   period after (a slow request still running at the end finishes then), and ends with the
//!   gzip'd pprof in `GoProfileData` chunks of at most 1 MiB (the last with `isLast`) and a
//!   `ProfileTaskFinishReport`.
//! - A pprof task of `cpu` samples until `CreateTime + Duration` (the end OAP gives it) and ends
//!   with a `PprofMetaData` then the profile's `content` chunks; any other kind is answered at
//!   once with `PPROF_EXECUTION_TASK_ERROR` and a message saying so.
//!
//! One sampler serves the process: a task that finds it busy (the other kind running, another
//! profiler in the process) is answered with an error, not queued behind it.

use std::time::{Duration, SystemTime};

use skytrace_proto::v3::{
    Commands, GoProfileData, ProfileTaskCommandQuery, ProfileTaskFinishReport,
};
use skytrace_proto::v10::{
    PprofData, PprofMetaData, PprofProfilingStatus, PprofTaskCommandQuery, pprof_data,
};

use super::pprof::{self, Keep};
use super::qualify::Qualifier;
use super::recording::Recording;
use super::task::{self, PprofTask, TraceTask};

/// After a trace task's window, how long finished segments are still looked at.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// Tasks waiting for their start, at most.
const MAX_PENDING: usize = 16;

/// Who this instance is, as the requests say it.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    pub(crate) service: String,
    pub(crate) instance: String,
}

/// Trace-profiling tasks: received, waiting, running.
pub(crate) struct TraceTasks {
    instance: Instance,
    last_command_time: i64,
    pending: Vec<TraceTask>,
    running: Option<RunningTrace>,
}

struct RunningTrace {
    task: TraceTask,
    /// `None` once sampling stopped (the window is over), during the grace period.
    recording: Option<Recording>,
    stopped: Option<super::recording::Stopped>,
    qualifier: Qualifier,
    ends: SystemTime,
}

/// Work to do off the reporter's thread: reading the binary's symbols and building a profile
/// take tens to hundreds of milliseconds, which no other signal may wait for.
pub(crate) type Build<R> = Box<dyn FnOnce() -> R + Send>;

/// What to send when a trace task is over.
#[derive(Debug)]
pub(crate) struct TraceReport {
    pub(crate) chunks: Vec<GoProfileData>,
    pub(crate) finish: ProfileTaskFinishReport,
    /// Segments whose samples the profile keeps.
    pub(crate) kept_segments: usize,
}

impl TraceTasks {
    pub(crate) fn new(instance: Instance) -> Self {
        TraceTasks {
            instance,
            last_command_time: 0,
            pending: Vec::new(),
            running: None,
        }
    }

    /// The next `getProfileTaskCommands` request.
    pub(crate) fn query(&self) -> ProfileTaskCommandQuery {
        ProfileTaskCommandQuery {
            service: self.instance.service.clone(),
            service_instance: self.instance.instance.clone(),
            last_command_time: self.last_command_time,
        }
    }

    /// Takes OAP's answer: each `ProfileTaskQuery` command is read, and `lastCommandTime`
    /// becomes the largest `CreateTime` seen. Returns what could not be accepted, in words.
    pub(crate) fn receive(&mut self, commands: &Commands, now: SystemTime) -> Vec<String> {
        let mut problems = Vec::new();
        for command in commands
            .commands
            .iter()
            .filter(|c| c.command == task::PROFILE_TASK_QUERY)
        {
            let task = match task::trace_task(command) {
                Ok(task) => task,
                Err(err) => {
                    problems.push(format!("a profiling task OAP sent cannot run: {err}"));
                    continue;
                }
            };
            self.last_command_time = self.last_command_time.max(task.create_ms);
            let (start, end) = task.window();
            let overlaps = self
                .pending
                .iter()
                .chain(self.running.as_ref().map(|r| &r.task))
                .any(|other| {
                    let (s, e) = other.window();
                    start < e && s < end
                });
            if end <= now {
                problems.push(format!(
                    "profiling task {} ended before it arrived",
                    task.id
                ));
            } else if overlaps {
                problems.push(format!(
                    "profiling task {} overlaps one already received",
                    task.id
                ));
            } else if self.pending.len() >= MAX_PENDING {
                problems.push(format!(
                    "profiling task {}: too many tasks waiting",
                    task.id
                ));
            } else {
                self.pending.push(task);
            }
        }
        problems
    }

    /// Whether a task is sampling or in its grace period.
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether a task runs or waits for its start: [`TraceTasks::tick`] is due often.
    pub(crate) fn is_busy(&self) -> bool {
        self.running.is_some() || !self.pending.is_empty()
    }

    /// A finished segment's bytes on their way to OAP, while a task runs.
    pub(crate) fn observe_segment(&mut self, encoded: &[u8]) {
        if let Some(running) = &mut self.running {
            running.qualifier.observe_encoded(encoded);
        }
    }

    /// Moves time on: starts a task whose start has come, drains the samples of the running
    /// one, stops its sampling at the window's end, and once the grace period is over returns
    /// what to send. Call it every 100 ms or so while [`TraceTasks::is_running`] or a task
    /// waits. A task that cannot sample (the sampler busy, an unsupported platform) ends at
    /// once with an empty profile, and the problem in the `Err`.
    pub(crate) fn tick(
        &mut self,
        now: SystemTime,
    ) -> Option<Result<Build<TraceReport>, (TraceReport, String)>> {
        if self.running.is_none()
            && let Some(i) = self.pending.iter().position(|t| t.window().0 <= now)
        {
            let task = self.pending.remove(i);
            let ends = task.window().1;
            let qualifier = Qualifier::new(task.endpoint.clone(), task.min_duration_ms);
            match Recording::start() {
                Ok(recording) => {
                    self.running = Some(RunningTrace {
                        task,
                        recording: Some(recording),
                        stopped: None,
                        qualifier,
                        ends,
                    });
                }
                Err(err) => {
                    let report =
                        trace_report(&self.instance, &task, pprof::gzip(&Default::default()), 0);
                    return Some(Err((
                        report,
                        format!("profiling task {} cannot sample: {err}", task.id),
                    )));
                }
            }
        }
        let running = self.running.as_mut()?;
        if let Some(recording) = &mut running.recording {
            recording.drain();
            if now >= running.ends
                && let Some(recording) = running.recording.take()
            {
                // Sampling stops; the profile is built once the grace period has let the
                // last slow requests finish and qualify.
                running.stopped = Some(recording.stop());
            }
            return None;
        }
        if now < running.ends + GRACE {
            return None;
        }
        let running = self.running.take()?;
        let mut stopped = running.stopped?;
        let instance = self.instance.clone();
        Some(Ok(Box::new(move || {
            let kept = running.qualifier.kept();
            let profile = stopped.build(Keep::Segments(kept));
            trace_report(&instance, &running.task, pprof::gzip(&profile), kept.len())
        })))
    }
}

fn trace_report(
    instance: &Instance,
    task: &TraceTask,
    bytes: Vec<u8>,
    kept_segments: usize,
) -> TraceReport {
    {
        let parts = pprof::chunks(&bytes);
        let last = parts.len() - 1;
        let chunks = parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| GoProfileData {
                task_id: task.id.clone(),
                payload: part.to_vec(),
                is_last: i == last,
            })
            .collect();
        TraceReport {
            chunks,
            finish: ProfileTaskFinishReport {
                service: instance.service.clone(),
                service_instance: instance.instance.clone(),
                task_id: task.id.clone(),
            },
            kept_segments,
        }
    }
}

/// Pprof tasks: the one running (they come one at a time).
pub(crate) struct PprofTasks {
    instance: Instance,
    last_command_time: i64,
    running: Option<(PprofTask, Recording, SystemTime)>,
}

/// What to send for a pprof task: the metadata first, then, if OAP answers success, the
/// content chunks.
#[derive(Debug)]
pub(crate) struct PprofUpload {
    pub(crate) metadata: PprofData,
    pub(crate) content: Vec<PprofData>,
}

impl PprofTasks {
    pub(crate) fn new(instance: Instance) -> Self {
        PprofTasks {
            instance,
            last_command_time: 0,
            running: None,
        }
    }

    /// The next `getPprofTaskCommands` request.
    pub(crate) fn query(&self) -> PprofTaskCommandQuery {
        PprofTaskCommandQuery {
            service: self.instance.service.clone(),
            service_instance: self.instance.instance.clone(),
            last_command_time: self.last_command_time,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Takes OAP's answer; returns the uploads due at once (a task refused, with why).
    pub(crate) fn receive(&mut self, commands: &Commands, now: SystemTime) -> Vec<PprofUpload> {
        let mut out = Vec::new();
        for command in commands
            .commands
            .iter()
            .filter(|c| c.command == task::PPROF_TASK_QUERY)
        {
            let task = match task::pprof_task(command) {
                Ok(task) => task,
                Err(err) => {
                    // Without a task id there is nobody to answer.
                    if let Some(id) = command.args.iter().find(|a| a.key == "TaskId") {
                        out.push(self.error(&id.value, &format!("cannot run: {err}")));
                    }
                    continue;
                }
            };
            if task.create_ms <= self.last_command_time {
                continue;
            }
            self.last_command_time = task.create_ms;
            let ends = task::at_millis(task.create_ms) + task.duration;
            if !task.is_cpu() {
                out.push(self.error(
                    &task.id,
                    &format!("skytrace profiles CPU only, not {:?}", task.events),
                ));
            } else if self.running.is_some() {
                out.push(self.error(&task.id, "a CPU profile is running already"));
            } else if ends <= now {
                out.push(self.error(&task.id, "the task ended before it arrived"));
            } else {
                match Recording::start() {
                    Ok(recording) => self.running = Some((task, recording, ends)),
                    Err(err) => out.push(self.error(&task.id, &err.to_string())),
                }
            }
        }
        out
    }

    /// Drains the running task; at its end, the work that makes the upload.
    pub(crate) fn tick(&mut self, now: SystemTime) -> Option<Build<PprofUpload>> {
        let (_, recording, ends) = self.running.as_mut()?;
        recording.drain();
        if now < *ends {
            return None;
        }
        let (task, recording, _) = self.running.take()?;
        let mut stopped = recording.stop();
        let instance = self.instance.clone();
        Some(Box::new(move || {
            let profile = stopped.build(Keep::All);
            upload(&instance, &task, pprof::gzip(&profile))
        }))
    }
}

/// A pprof task's upload of `bytes`.
fn upload(instance: &Instance, task: &PprofTask, bytes: Vec<u8>) -> PprofUpload {
    {
        let metadata = PprofData {
            metadata: Some(pprof_metadata(
                instance,
                &task.id,
                PprofProfilingStatus::PprofProfilingSuccess,
                bytes.len(),
            )),
            result: None,
        };
        let content = pprof::chunks(&bytes)
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(|c| PprofData {
                metadata: None,
                result: Some(pprof_data::Result::Content(c.to_vec())),
            })
            .collect();
        PprofUpload { metadata, content }
    }
}

fn pprof_metadata(
    instance: &Instance,
    task_id: &str,
    status: PprofProfilingStatus,
    size: usize,
) -> PprofMetaData {
    PprofMetaData {
        service: instance.service.clone(),
        service_instance: instance.instance.clone(),
        task_id: task_id.to_owned(),
        r#type: status as i32,
        content_size: i32::try_from(size).unwrap_or(i32::MAX),
    }
}

impl PprofTasks {
    fn error(&self, task_id: &str, message: &str) -> PprofUpload {
        PprofUpload {
            metadata: PprofData {
                metadata: Some(pprof_metadata(
                    &self.instance,
                    task_id,
                    PprofProfilingStatus::PprofExecutionTaskError,
                    0,
                )),
                result: Some(pprof_data::Result::ErrorMessage(message.to_owned())),
            },
            content: Vec::new(),
        }
    }
}
