//! The reporter's one thread: a single-threaded tokio runtime on which every signal runs as a
//! task of its own, so the reporter neither needs nor disturbs the service's runtime, and no
//! signal waits for another.
//!
//! Each signal (`super::signal::*`) owns its queue or schedule and its [`Health`]; they share
//! the transport (one connection, calls side by side) and this module's [`Shared`]: the status
//! the service's threads read, the connection's voice, OAP's commands, and the shutdown's
//! deadline. The coordinator ([`Worker::run`]) starts the tasks, waits for a shutdown (or for
//! the reporter to be dropped), hands the deadline to every task, and waits for them to
//! deliver what they hold within it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skytrace_proto::v3::Commands;
use tokio::sync::{Notify, watch};

use super::commands::CommandHandler;
use super::health::Health;
use super::message::{self, Failure, Trouble};
use super::signal::configuration::Configuration;
use super::signal::events::Events;
use super::signal::logs::Logs;
use super::signal::management::Management;
use super::signal::meters::Meters;
use super::signal::segments::Segments;
use super::status::{SLOW_CALL, State, Status};
use super::transport::{CallError, Transport, Way};

/// Longest a call may take before it counts as unanswered.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the worker goes on delivering what is queued once its reporter is dropped without
/// a shutdown: as if shut down with this timeout.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);
/// How long past the deadline the coordinator waits for a task to notice it.
const STOP_GRACE: Duration = Duration::from_millis(200);

/// `timeout` from now; a timeout too long for the clock (`Duration::MAX`) is a year.
pub(crate) fn deadline_in(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// What the worker is started with.
pub(crate) struct Worker<T> {
    pub(crate) transport: T,
    pub(crate) segments: Segments,
    pub(crate) management: Management,
    pub(crate) configuration: Configuration,
    pub(crate) meters: Meters,
    pub(crate) logs: Logs,
    pub(crate) events: Events,
    pub(crate) status: Arc<Status>,
    pub(crate) commands: CommandHandler,
    /// The shutdown's deadline, once requested; closed when the reporter is dropped.
    pub(crate) shutdown: watch::Receiver<Option<Instant>>,
    pub(crate) keep_tracing: bool,
    /// Profiling's signal, unless `SW_AGENT_PROFILE_ACTIVE` is off.
    #[cfg(feature = "profiling")]
    pub(crate) profiling: Option<super::signal::profiling::Profiling>,
}

impl<T> Worker<T> {
    /// The same signals over another transport.
    pub(crate) fn with_transport<U>(self, transport: U) -> Worker<U> {
        Worker {
            transport,
            segments: self.segments,
            management: self.management,
            configuration: self.configuration,
            meters: self.meters,
            logs: self.logs,
            events: self.events,
            status: self.status,
            commands: self.commands,
            shutdown: self.shutdown,
            keep_tracing: self.keep_tracing,
            #[cfg(feature = "profiling")]
            profiling: self.profiling,
        }
    }
}

/// What the signals' tasks share, on the reporter's thread.
pub(crate) struct Shared<T> {
    pub(crate) transport: T,
    pub(crate) status: Arc<Status>,
    pub(crate) keep_tracing: bool,
    voice: RefCell<Voice>,
    commands: CommandHandler,
    /// The shutdown's deadline, once the coordinator has it.
    stop: watch::Receiver<Option<Instant>>,
    /// Notified when new traces stop (the segments then probe for the backend's return).
    pub(crate) status_changed: Notify,
    /// Notified when a call succeeds on a new connection (the properties go out again).
    pub(crate) new_session: Notify,
    last_session: Cell<Option<u64>>,
    /// Notified at the first call that succeeds (the `Start` event waits for it).
    pub(crate) reached: Notify,
    /// The trace-profiling tasks, when profiling runs: its signal drives them, the segments'
    /// signal shows them the segments it sends.
    #[cfg(feature = "profiling")]
    pub(crate) profiling: RefCell<Option<crate::profile::runner::TraceTasks>>,
}

impl<T: Transport + 'static> Worker<T> {
    pub(crate) async fn run(self) {
        let local = tokio::task::LocalSet::new();
        local.run_until(self.coordinate()).await;
    }

    async fn coordinate(self) {
        let Worker {
            transport,
            segments,
            management,
            configuration,
            meters,
            logs,
            events,
            status,
            commands,
            mut shutdown,
            keep_tracing,
            #[cfg(feature = "profiling")]
            profiling,
        } = self;
        let (stop_tx, stop) = watch::channel(None);
        let shared = Rc::new(Shared {
            transport,
            status: Arc::clone(&status),
            keep_tracing,
            voice: RefCell::new(Voice::default()),
            commands,
            stop,
            status_changed: Notify::new(),
            new_session: Notify::new(),
            last_session: Cell::new(None),
            reached: Notify::new(),
            #[cfg(feature = "profiling")]
            profiling: RefCell::new(None),
        });
        #[allow(unused_mut)] // one more with profiling
        let mut tasks = vec![
            tokio::task::spawn_local(segments.run(Rc::clone(&shared))),
            tokio::task::spawn_local(logs.run(Rc::clone(&shared))),
            tokio::task::spawn_local(meters.run(Rc::clone(&shared))),
            tokio::task::spawn_local(management.run(Rc::clone(&shared))),
            tokio::task::spawn_local(configuration.run(Rc::clone(&shared))),
            tokio::task::spawn_local(events.run(Rc::clone(&shared))),
        ];
        #[cfg(feature = "profiling")]
        if let Some(profiling) = profiling {
            tasks.push(tokio::task::spawn_local(profiling.run(Rc::clone(&shared))));
        }
        let deadline = loop {
            match shutdown.changed().await {
                Ok(()) => {
                    if let Some(deadline) = *shutdown.borrow() {
                        break deadline;
                    }
                }
                // The reporter is gone without a shutdown.
                Err(_) => break deadline_in(ORPHAN_GRACE),
            }
        };
        let _ = stop_tx.send(Some(deadline));
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        // Every task stops by the deadline; one that has not is dropped with the `LocalSet`
        // (each signal counts what it still holds when it is dropped).
        let _ = tokio::time::timeout_at((deadline + STOP_GRACE).into(), all).await;
        status.stop();
    }
}

impl<T: Transport> Shared<T> {
    /// Shows a running trace-profiling task the segments on their way to OAP (it keeps those
    /// of its endpoint that ran past its threshold). Nothing while no task runs.
    pub(crate) fn observe_segments(&self, segments: &super::batch::Batch) {
        #[cfg(feature = "profiling")]
        if let Some(tasks) = self.profiling.borrow_mut().as_mut()
            && tasks.is_running()
        {
            for segment in segments.messages() {
                tasks.observe_segment(segment);
            }
        }
        #[cfg(not(feature = "profiling"))]
        let _ = segments;
    }

    /// The shutdown's deadline, once there is one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    /// A receiver of the shutdown's deadline, for a task to wait on.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<Option<Instant>> {
        self.stop.clone()
    }

    /// Whether the deadline has passed.
    pub(crate) fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// How long a call may take: [`CALL_TIMEOUT`], cut short by a shutdown's deadline.
    pub(crate) fn call_timeout(&self) -> Duration {
        match self.deadline() {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(CALL_TIMEOUT),
            None => CALL_TIMEOUT,
        }
    }

    /// Waits until both the connection and `health`'s signal may call. Returns `false` when a
    /// shutdown was requested meanwhile (or its deadline passed): the caller looks again.
    /// Once shutting down, only the connection's back-off is waited for: each signal makes
    /// one last attempt with what it holds.
    pub(crate) async fn ready(&self, health: &Health) -> bool {
        let mut stop = self.stop_signal();
        loop {
            let own = health.ready_at().filter(|_| self.deadline().is_none());
            let at = match (self.transport.ready_at(), own) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let Some(at) = at.filter(|&at| at > Instant::now()) else {
                return !self.past_deadline();
            };
            let until = match self.deadline() {
                Some(deadline) if deadline <= at => {
                    tokio::time::sleep_until(deadline.into()).await;
                    return false;
                }
                _ => at,
            };
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                changed = stop.changed(), if self.deadline().is_none() => {
                    if changed.is_err() {
                        // The coordinator is gone; the task is about to be dropped.
                        std::future::pending::<()>().await;
                    }
                    return false;
                }
            }
        }
    }

    /// Waits for a shutdown request (for ever if it never comes).
    pub(crate) async fn stopping(&self) {
        let mut stop = self.stop_signal();
        while self.deadline().is_none() {
            if stop.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Runs `work` until it completes, a shutdown is requested, or `until` passes (`None` in
    /// the last two cases). For waiting on a queue or a timer.
    pub(crate) async fn within_stop<F: Future>(
        &self,
        work: F,
        until: Option<Instant>,
    ) -> Option<F::Output> {
        if self.deadline().is_some() {
            return None;
        }
        let mut stop = self.stop_signal();
        let expiry = async {
            match until {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = work => Some(out),
            changed = stop.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
                None
            }
            () = expiry => None,
        }
    }

    /// Runs `call` to its end, or until the shutdown's deadline passes (`None`).
    pub(crate) async fn within_deadline<F: Future>(&self, call: F) -> Option<F::Output> {
        watched(call, || {}, self.stop_signal()).await
    }

    /// Books the outcome of a call of `health`'s signal: its commands go to the handler (and
    /// are returned), a failure of the connection pauses new traces, a refusal backs off the
    /// signal alone.
    pub(crate) fn book(
        &self,
        health: &mut Health,
        result: Result<Commands, CallError>,
    ) -> Result<Commands, CallError> {
        match &result {
            Ok(commands) => {
                let way = health.signal().way();
                health.succeeded(|| self.transport.who(way));
                if self.status.state() == State::Starting {
                    // The backend answers. (Only the segments' own success ends a pause.)
                    self.segments_delivered();
                }
                let session = self.transport.session();
                if self.last_session.replace(Some(session)) != Some(session) {
                    self.new_session.notify_one();
                    self.reached.notify_one();
                }
                self.commands.dispatch(commands);
            }
            Err(CallError::Link(failure)) => self.link_failed(failure),
            Err(CallError::Refused(refusal)) => {
                health.refused(&self.transport.who(health.signal().way()), refusal);
            }
            Err(CallError::Timeout(cause)) => {
                health.timed_out(&self.transport.who(health.signal().way()), cause);
            }
        }
        result
    }

    /// The connection failed: new traces pause (segments cannot be delivered either) and the
    /// failure is said once.
    fn link_failed(&self, failure: &Failure) {
        self.set_status(State::Down);
        self.voice.borrow_mut().failed(failure, self.keep_tracing);
    }

    /// The segments were delivered: new traces start (again).
    pub(crate) fn segments_delivered(&self) {
        self.set_status(State::Connected);
        self.voice
            .borrow_mut()
            .connected(|| self.transport.who(Way::Topic));
    }

    /// The segments were not delivered: new traces pause.
    pub(crate) fn segments_refused(&self) {
        self.set_status(State::Down);
    }

    /// The segments' call has waited [`SLOW_CALL`] for its answer: new traces pause.
    pub(crate) fn segments_slow(&self) {
        self.set_status(State::Down);
        self.voice
            .borrow_mut()
            .slow(&self.transport.who(Way::Topic), self.keep_tracing);
    }

    fn set_status(&self, state: State) {
        if self.status.set(state) != state {
            self.status_changed.notify_one();
        }
    }
}

/// Runs `call` to its end, or until a shutdown requested meanwhile reaches its deadline
/// (`None`). If the call has not completed within [`SLOW_CALL`], `on_slow` runs once and the
/// call goes on to its own timeout.
pub(crate) async fn watched<F: Future>(
    call: F,
    on_slow: impl FnOnce(),
    mut stop: watch::Receiver<Option<Instant>>,
) -> Option<F::Output> {
    tokio::pin!(call);
    let slow = tokio::time::sleep(SLOW_CALL);
    tokio::pin!(slow);
    let mut on_slow = Some(on_slow);
    // Cleared when the coordinator is gone (the sender dropped): `changed` would then return
    // at once, every time.
    let mut watching = true;
    loop {
        let deadline = *stop.borrow();
        // Never polled without a deadline; a value is needed all the same.
        let stop_at = deadline.unwrap_or_else(|| deadline_in(CALL_TIMEOUT));
        tokio::select! {
            out = &mut call => return Some(out),
            _ = &mut slow, if on_slow.is_some() => {
                if let Some(on_slow) = on_slow.take() {
                    on_slow();
                }
            }
            _ = tokio::time::sleep_until(stop_at.into()), if deadline.is_some() => return None,
            changed = stop.changed(), if watching && deadline.is_none() => {
                watching = changed.is_ok();
            }
        }
    }
}

/// What was said last of the connection: one line per change, never one per attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Said {
    Connected,
    Slow,
    Failed(Trouble),
}

/// Says each change of the connection once.
#[derive(Debug, Default)]
struct Voice {
    last: Option<Said>,
    connected_before: bool,
}

impl Voice {
    /// `who` is made only when the line is said (every successful call comes here).
    fn connected(&mut self, who: impl FnOnce() -> String) {
        if self.last != Some(Said::Connected) {
            crate::say::say(&message::connected_line(&who(), self.connected_before));
            self.last = Some(Said::Connected);
        }
        self.connected_before = true;
    }

    fn slow(&mut self, who: &str, keep_tracing: bool) {
        // Said when OAP stops answering, not again on every slow retry.
        if matches!(self.last, None | Some(Said::Connected)) {
            crate::say::say(&message::slow_line(who, SLOW_CALL, keep_tracing));
            self.last = Some(Said::Slow);
        }
    }

    fn failed(&mut self, failure: &Failure, keep_tracing: bool) {
        let said = Said::Failed(failure.trouble);
        if self.last != Some(said) {
            crate::say::say(&message::failure_line(failure, keep_tracing));
            self.last = Some(said);
        }
    }
}
