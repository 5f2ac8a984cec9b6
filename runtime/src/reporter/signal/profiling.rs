//! Profiling: OAP's trace-profiling tasks (`ProfileTask`) and on-demand profiles (`PprofTask`),
//! polled every `SW_AGENT_COLLECTOR_GET_PROFILE_TASK_INTERVAL` (20 s) and run by
//! `crate::profile::runner`. While a task samples, this task wakes every 100 ms to drain the
//! sampler; the finished segments it needs to know are shown to it by the segments' signal
//! (`Shared::observe_segments`). Each service has its own health: an OAP without one of the
//! receivers (`UNIMPLEMENTED`) quiets that one alone. A poll due while its signal backs off is
//! skipped (not waited for), so that a running task keeps being drained.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use skytrace_proto::v3::Commands;
use skytrace_proto::v10::PprofProfilingStatus;

use crate::profile::runner::{Instance, PprofTasks, PprofUpload, TraceReport, TraceTasks};
use crate::reporter::health::{Health, Signal};
use crate::reporter::transport::{CallError, Transport};
use crate::reporter::worker::Shared;

/// How often a running task is drained (the sampler holds 512 samples: 5 s at 100 Hz).
const TICK: Duration = Duration::from_millis(100);

/// Uploads waiting to be sent, at most (answers to refused tasks included).
const MAX_UPLOADS: usize = 16;

/// Attempts at sending one report before it is given up.
const ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub(crate) struct Profiling {
    instance: Instance,
    interval: Duration,
}

impl Profiling {
    pub(crate) fn new(service: String, instance: String, interval: Duration) -> Profiling {
        Profiling {
            instance: Instance { service, instance },
            interval: interval.max(Duration::from_secs(1)),
        }
    }

    /// Polls, runs and reports tasks until the shutdown.
    pub(crate) async fn run<T: Transport>(self, shared: Rc<Shared<T>>) {
        *shared.profiling.borrow_mut() = Some(TraceTasks::new(self.instance.clone()));
        let mut pprof = PprofTasks::new(self.instance.clone());
        let mut trace_health = Health::new(Signal::Profiling, shared.keep_tracing);
        let mut pprof_health = Health::new(Signal::Pprof, shared.keep_tracing);
        let mut next_poll = Instant::now();
        let mut trace_report: Option<(TraceReport, u32)> = None;
        let mut uploads: Vec<(PprofUpload, u32)> = Vec::new();
        while shared.deadline().is_none() {
            let busy = pprof.is_running()
                || shared
                    .profiling
                    .borrow()
                    .as_ref()
                    .is_some_and(TraceTasks::is_busy)
                || trace_report.is_some()
                || !uploads.is_empty();
            let wake = if busy {
                (Instant::now() + TICK).min(next_poll)
            } else {
                next_poll
            };
            if shared
                .within_stop(tokio::time::sleep_until(wake.into()), None)
                .await
                .is_none()
            {
                break;
            }
            let now = SystemTime::now();
            if Instant::now() >= next_poll {
                next_poll = Instant::now() + self.interval;
                if may_call(&shared, &trace_health) {
                    let query = shared.profiling.borrow().as_ref().map(TraceTasks::query);
                    if let Some(query) = query {
                        let call = shared
                            .transport
                            .profile_task_commands(query, shared.call_timeout());
                        if let Some(result) = shared.within_deadline(call).await
                            && let Ok(commands) = shared.book(&mut trace_health, result)
                        {
                            self.receive_trace(&shared, &commands, now);
                        }
                    }
                }
                if may_call(&shared, &pprof_health) {
                    let call = shared
                        .transport
                        .pprof_task_commands(pprof.query(), shared.call_timeout());
                    if let Some(result) = shared.within_deadline(call).await
                        && let Ok(commands) = shared.book(&mut pprof_health, result)
                    {
                        uploads.extend(pprof.receive(&commands, now).into_iter().map(|u| (u, 0)));
                    }
                }
            }
            let finished = shared
                .profiling
                .borrow_mut()
                .as_mut()
                .and_then(|tasks| tasks.tick(SystemTime::now()));
            match finished {
                Some(Ok(build)) => {
                    if let Some(report) = off_thread(&shared, build).await {
                        trace_report = Some((report, 0));
                    }
                }
                Some(Err((report, problem))) => {
                    crate::say::say(&format!("skytrace: {problem}"));
                    trace_report = Some((report, 0));
                }
                None => {}
            }
            if let Some(build) = pprof.tick(SystemTime::now())
                && let Some(upload) = off_thread(&shared, build).await
            {
                uploads.push((upload, 0));
            }
            // Bounded: an OAP sending task after task gets answers for the last few.
            if uploads.len() > MAX_UPLOADS {
                uploads.drain(..uploads.len() - MAX_UPLOADS);
            }
            // Sent when both the connection and the service may be called: a report is kept
            // (not dropped) while they back off.
            if trace_report.is_some()
                && may_call(&shared, &trace_health)
                && let Some((report, attempts)) = trace_report.take()
                && !send_trace_report(&shared, &mut trace_health, &report).await
                && attempts + 1 < ATTEMPTS
            {
                trace_report = Some((report, attempts + 1));
            }
            if !uploads.is_empty()
                && may_call(&shared, &pprof_health)
                && let Some((upload, attempts)) = uploads.pop()
                && !send_upload(&shared, &mut pprof_health, &upload).await
                && attempts + 1 < ATTEMPTS
            {
                uploads.push((upload, attempts + 1));
            }
        }
        // Sampling stops with the reporter: the handler is gone before the thread ends.
        shared.profiling.borrow_mut().take();
    }

    fn receive_trace<T: Transport>(
        &self,
        shared: &Shared<T>,
        commands: &Commands,
        now: SystemTime,
    ) {
        let problems = shared
            .profiling
            .borrow_mut()
            .as_mut()
            .map(|tasks| tasks.receive(commands, now))
            .unwrap_or_default();
        for problem in problems {
            crate::say::say(&format!("skytrace: {problem}"));
        }
    }
}

/// Runs `build` (symbols read, a profile built: tens to hundreds of milliseconds) on a thread
/// of its own, so that no other signal waits for it; `None` if the thread cannot start or a
/// shutdown comes first.
async fn off_thread<T: Transport, R: Send + 'static>(
    shared: &Shared<T>,
    build: crate::profile::runner::Build<R>,
) -> Option<R> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("skytrace-profile".into())
        .spawn(move || {
            let _ = tx.send(build());
        });
    if let Err(e) = started {
        crate::say::say(&format!(
            "skytrace: cannot start a thread to build a profile: {e}; the task's profile is lost"
        ));
        return None;
    }
    shared.within_stop(rx, None).await?.ok()
}

/// Whether the connection and the signal may call now (a poll is skipped, not waited for).
fn may_call<T: Transport>(shared: &Shared<T>, health: &Health) -> bool {
    let now = Instant::now();
    shared.transport.ready_at().is_none_or(|at| at <= now)
        && health.ready_at().is_none_or(|at| at <= now)
}

/// The profile, then the task's finish; `false` if either failed (sent again later).
async fn send_trace_report<T: Transport>(
    shared: &Shared<T>,
    health: &mut Health,
    report: &TraceReport,
) -> bool {
    let call = shared
        .transport
        .report_profile(report.chunks.clone(), shared.call_timeout());
    let Some(result) = shared.within_deadline(call).await else {
        return false;
    };
    if shared.book(health, result).is_err() {
        return false;
    }
    let call = shared
        .transport
        .report_task_finish(report.finish.clone(), shared.call_timeout());
    matches!(
        shared
            .within_deadline(call)
            .await
            .map(|r| shared.book(health, r)),
        Some(Ok(_))
    )
}

/// The metadata, then the content if OAP takes it; `false` if the call failed.
async fn send_upload<T: Transport>(
    shared: &Shared<T>,
    health: &mut Health,
    upload: &PprofUpload,
) -> bool {
    let call = shared.transport.upload_pprof(
        upload.metadata.clone(),
        upload.content.clone(),
        shared.call_timeout(),
    );
    let Some(result) = shared.within_deadline(call).await else {
        return false;
    };
    let status = result.as_ref().ok().copied();
    let booked = shared.book(health, result.map(|_| Commands::default()));
    if status == Some(PprofProfilingStatus::PprofTerminatedByOversize) {
        crate::say::say(
            "skytrace: OAP refused a CPU profile as too large for it (its receiver-pprof \
             pprofMaxSize); the profile is dropped",
        );
    }
    !matches!(booked, Err(CallError::Link(_) | CallError::Timeout(_)))
}
