//! The reporter's one thread: a single-threaded tokio runtime that drains every signal's queue
//! through a [`Transport`], so the reporter neither needs nor disturbs the service's runtime.
//!
//! The loop, in order: stop when shut down (once what is queued is delivered, or at the
//! deadline, and the `Shutdown` event sent); wait while the transport backs off; introduce the
//! instance on a new connection; report its `Start` event once; then whichever comes first of a
//! queued segment, a heartbeat and a meter period. Every call's outcome goes to
//! [`Status`] (what the service's threads read) and, once per change, to standard error; its
//! commands go to the [`CommandHandler`].

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skytrace_proto::v3::{
    Commands, ConfigurationSyncRequest, Event, InstancePingPkg, InstanceProperties, LogData,
    MeterDataCollection,
};
use tokio::sync::watch;

use super::commands::CommandHandler;
use super::message::{self, Failure, Trouble};
use super::queue::Counts;
use super::signal::configuration::Configuration;
use super::signal::events::Events;
use super::signal::logs::Logs;
use super::signal::management::{Beat, Management};
use super::signal::meters::Meters;
use super::signal::segments::{BATCH, LINGER, Segments};
use super::status::{SLOW_CALL, State, Status};
use super::transport::Transport;
use super::wire::{Outgoing, Queued};

/// Longest a call may take before the backend counts as stalled.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the worker goes on delivering what is queued once its reporter is dropped without
/// a shutdown: as if shut down with this timeout.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// `timeout` from now; a timeout too long for the clock (`Duration::MAX`) is a year.
pub(crate) fn deadline_in(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

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
    /// The shutdown's deadline, once requested.
    pub(crate) shutdown: watch::Receiver<Option<Instant>>,
    pub(crate) voice: Voice,
    /// Set once the reporter is gone without a shutdown: the deadline it gets instead.
    pub(crate) orphaned: Cell<Option<Instant>>,
}

/// One call of the transport.
enum Call {
    Segments(Vec<Outgoing>),
    Meters(Vec<MeterDataCollection>),
    Logs(Vec<LogData>),
    Properties(InstanceProperties),
    Ping(InstancePingPkg),
    Configuration(ConfigurationSyncRequest),
    Events(Vec<Event>),
}

impl<T: Transport> Worker<T> {
    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self.deadline();
            if let Some(deadline) = deadline
                && (Instant::now() >= deadline
                    || (self.segments.queue.is_empty()
                        && self.logs.is_empty()
                        && !self.events.shutdown_due(self.status.is_connected())))
            {
                break;
            }
            if let Some(at) = self.transport.ready_at()
                && at > Instant::now()
            {
                self.wait_until(at, deadline).await;
                continue;
            }
            if self.management.needs_introduction(self.transport.session()) {
                let properties = self.management.properties();
                if self.call(Call::Properties(properties)).await.is_ok() {
                    // The session is the connection the call went out on.
                    let session = self.transport.session();
                    self.management.introduced(session);
                }
                continue;
            }
            if deadline.is_some() {
                // Shutting down: only what is queued counts, then the `Shutdown` event.
                match self.segments.queue.try_recv() {
                    Some(first) => self.send_segments(first).await,
                    None => {
                        let logs = self.logs.try_batch();
                        if !logs.is_empty() {
                            self.send_logs(logs).await;
                        } else if self.events.shutdown_due(self.status.is_connected()) {
                            let shutdown = self.events.take_shutdown();
                            let _ = self.call(Call::Events(vec![shutdown])).await;
                        } else {
                            break;
                        }
                    }
                }
                continue;
            }
            if let Some(start) = self.events.start() {
                // Once per process and reporter, right after the first introduction; a few
                // tries at most (see `Events`).
                match self.call(Call::Events(vec![start])).await {
                    Ok(()) => self.events.started(),
                    Err(()) => self.events.start_failed(),
                }
                continue;
            }
            tokio::select! {
                first = self.segments.queue.recv() => match first {
                    Some(first) => self.send_segments(first).await,
                    // Every sender is gone and nothing is left.
                    None => break,
                },
                beat = self.management.tick() => {
                    let call = match beat {
                        Beat::Ping(ping) => Call::Ping(ping),
                        Beat::Properties(properties) => Call::Properties(properties),
                    };
                    let _ = self.call(call).await;
                }
                request = self.configuration.tick() => {
                    let _ = self.call(Call::Configuration(request)).await;
                }
                () = self.meters.tick() => {
                    self.meters.collect();
                    self.send_meters().await;
                }
                logs = self.logs.next_batch() => self.send_logs(logs).await,
                _ = self.shutdown.changed() => {}
            }
        }
        // What could not be delivered is lost; count it rather than losing it silently.
        self.segments.queue.close_and_count();
        self.meters.close_and_count();
        self.logs.close_and_count();
        self.status.stop();
    }

    /// Sends `first` and what is queued behind it, in one call.
    async fn send_segments(&mut self, first: Queued) {
        let mut batch = Vec::with_capacity(BATCH.min(self.segments.queue.len() + 1));
        batch.push(first);
        self.segments.fill(&mut batch);
        // Not while shutting down, when only what is queued counts. The linger is a plain sleep,
        // not a wait on the queue: a waiting receiver is woken by every segment sent, and that
        // wake-up (a futex call on the service's thread, a context switch on this one) cost
        // more than encoding and sending the segment.
        if batch.len() < BATCH && self.deadline().is_none() {
            tokio::time::sleep(LINGER).await;
            self.segments.fill(&mut batch);
        }
        let outgoing = self
            .segments
            .outgoing(batch, self.transport.max_message_bytes());
        let count = outgoing.len();
        if count == 0 {
            return;
        }
        match self.call(Call::Segments(outgoing)).await {
            Ok(()) => Counts::add(&self.segments.counts().sent, count),
            Err(()) => Counts::add(&self.segments.counts().failed, count),
        }
    }

    /// Sends every buffered meter report in one call; they go back in the buffer if it fails.
    async fn send_meters(&mut self) {
        let reports = self.meters.take();
        if reports.is_empty() {
            return;
        }
        // A clone (a few kB once per period) so that a failed call loses nothing.
        if self.call(Call::Meters(reports.clone())).await.is_err() {
            self.meters.restore(reports);
        }
    }

    /// Sends `logs` in one call; those of a failed call are counted as lost.
    async fn send_logs(&mut self, logs: Vec<LogData>) {
        let count = logs.len();
        if self.call(Call::Logs(logs)).await.is_err() {
            self.logs.lost(count);
        }
    }

    /// Makes `call`, books its outcome and hands its commands on.
    async fn call(&mut self, call: Call) -> Result<(), ()> {
        let timeout = self.call_timeout();
        let backend = self.transport.backend().to_owned();
        let transport = &mut self.transport;
        let call = async move {
            match call {
                Call::Segments(segments) => transport.collect_segments(segments, timeout).await,
                Call::Meters(reports) => transport.collect_meters(reports, timeout).await,
                Call::Logs(logs) => transport.collect_logs(logs, timeout).await,
                Call::Properties(properties) => {
                    transport.report_properties(properties, timeout).await
                }
                Call::Ping(ping) => transport.keep_alive(ping, timeout).await,
                Call::Configuration(request) => {
                    transport.fetch_configurations(request, timeout).await
                }
                Call::Events(events) => transport.report_events(events, timeout).await,
            }
        };
        let (voice, status) = (&mut self.voice, &*self.status);
        let on_slow = || voice.slow(status, &backend);
        let Some(result) = watched(call, on_slow, &mut self.shutdown).await else {
            // Shut down while the call was waiting: its deadline has passed.
            return Err(());
        };
        match result {
            Ok(commands) => {
                self.voice.connected(&self.status, &backend);
                self.configuration.observe(&commands);
                self.dispatch(&commands);
                Ok(())
            }
            Err(failure) => {
                self.voice.failed(&self.status, &failure);
                self.management.forget();
                Err(())
            }
        }
    }

    fn dispatch(&self, commands: &Commands) {
        self.commands.dispatch(commands);
    }

    /// When to stop: the shutdown's deadline, or, once the reporter was dropped without one,
    /// [`ORPHAN_GRACE`] from when that was noticed.
    fn deadline(&self) -> Option<Instant> {
        if let Some(deadline) = *self.shutdown.borrow() {
            return Some(deadline);
        }
        if let Some(deadline) = self.orphaned.get() {
            return Some(deadline);
        }
        // The sender lives in the reporter; it is gone when the reporter is, and so are the
        // queue's senders (a closed queue with nothing in it has nothing left to deliver).
        if self.shutdown.has_changed().is_err() || self.segments.queue.is_closed() {
            let deadline = deadline_in(ORPHAN_GRACE);
            self.orphaned.set(Some(deadline));
            return Some(deadline);
        }
        None
    }

    /// How long a call may take: [`CALL_TIMEOUT`], cut short by a shutdown's deadline.
    fn call_timeout(&self) -> Duration {
        match self.deadline() {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(CALL_TIMEOUT),
            None => CALL_TIMEOUT,
        }
    }

    /// Waits until `at` (the transport's back-off), or the deadline, or a shutdown request.
    async fn wait_until(&mut self, at: Instant, deadline: Option<Instant>) {
        if let Some(deadline) = deadline {
            tokio::time::sleep_until(deadline.min(at).into()).await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            // Meters are still read every period while the backend is away; they wait in
            // the buffer.
            () = self.meters.tick() => self.meters.collect(),
            _ = self.shutdown.changed() => {}
        }
    }
}

/// Runs `call` to its end, or until a shutdown requested meanwhile reaches its deadline
/// (`None`). If the call has not completed within [`SLOW_CALL`], `on_slow` runs once and the
/// call goes on to its own timeout.
async fn watched<F: Future>(
    call: F,
    on_slow: impl FnOnce(),
    shutdown: &mut watch::Receiver<Option<Instant>>,
) -> Option<F::Output> {
    tokio::pin!(call);
    let slow = tokio::time::sleep(SLOW_CALL);
    tokio::pin!(slow);
    let mut on_slow = Some(on_slow);
    // Cleared when the reporter is gone (the sender dropped): `changed` would then return at
    // once, every time.
    let mut watching = true;
    loop {
        let deadline = *shutdown.borrow();
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
            changed = shutdown.changed(), if watching && deadline.is_none() => {
                watching = changed.is_ok();
            }
        }
    }
}

/// What was said last: the reporter prints one line per change, never one per attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Said {
    Connected,
    Slow,
    Failed(Trouble),
}

/// Keeps [`Status`] up to date and says each change once.
#[derive(Debug, Default)]
pub(crate) struct Voice {
    keep_tracing: bool,
    last: Option<Said>,
    connected_before: bool,
}

impl Voice {
    pub(crate) fn new(keep_tracing: bool) -> Voice {
        Voice {
            keep_tracing,
            ..Voice::default()
        }
    }

    fn connected(&mut self, status: &Status, backend: &str) {
        status.set(State::Connected);
        if self.last != Some(Said::Connected) {
            eprintln!(
                "{}",
                message::connected_line(backend, self.connected_before)
            );
            self.last = Some(Said::Connected);
        }
        self.connected_before = true;
    }

    fn slow(&mut self, status: &Status, backend: &str) {
        status.set(State::Down);
        // Said when OAP stops answering, not again on every slow retry.
        if matches!(self.last, None | Some(Said::Connected)) {
            eprintln!(
                "{}",
                message::slow_line(backend, SLOW_CALL, self.keep_tracing)
            );
            self.last = Some(Said::Slow);
        }
    }

    fn failed(&mut self, status: &Status, failure: &Failure) {
        status.set(State::Down);
        let said = Said::Failed(failure.trouble);
        if self.last != Some(said) {
            eprintln!("{}", message::failure_line(failure, self.keep_tracing));
            self.last = Some(said);
        }
    }
}
