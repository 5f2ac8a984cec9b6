//! Where log records for OAP wait for the reporter: the level threshold and one queue per
//! process, bounded in records and bytes (the settings, `SW_AGENT_LOG_REPORTER_*`, are
//! `crate::config`'s).
//!
//! The bridges (`tracing`, `log`) call [`threshold_allows`] before building anything, then
//! [`submit`]; the reporter installs the queue ([`install`]) and drains the [`LogReceiver`] it
//! gets. Submitting never blocks: a full queue, or none installed, drops the record and counts
//! it. This module imports nothing of the crate but `config` and `say`, so that the reporter can
//! depend on it without a cycle.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use skytrace_proto::v3::LogData;
use tokio::sync::mpsc;

pub(crate) use crate::config::log_settings::{BUFFER_SIZE_MAX, MESSAGE_SIZE_MAX};
pub use crate::config::log_settings::{
    DEFAULT_MAX_MESSAGE_SIZE, LogLevel, LogSettings, ParseLogLevelError,
};

/// Most bytes of record text waiting in the queue, whatever the number of records: 10,000
/// records of 1 MiB would otherwise be 10 GB.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// No level passes: no queue is installed.
const OFF: u8 = u8::MAX;

/// The least severe level reported, as `LogLevel as u8`, or [`OFF`].
static THRESHOLD: AtomicU8 = AtomicU8::new(OFF);
/// The bytes of text a record keeps.
static MAX_MESSAGE_SIZE: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_MESSAGE_SIZE);
static QUEUE: RwLock<Option<mpsc::Sender<LogData>>> = RwLock::new(None);
static SUBMITTED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Bytes of the records in the queue (their encoded length), against [`MAX_QUEUED_BYTES`].
static QUEUED_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Whether the installed queue is a reporter's (installed by `init`): a user's `install` then
/// keeps it rather than disconnecting it.
static REPORTER_QUEUE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    /// Set on the reporter's own threads: what their libraries log (h2, tonic, hyper) is not
    /// reported, or a failing backend would feed the queue that waits for it.
    static SUPPRESSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a record at `level` would be reported: one atomic load, read before anything is
/// built.
#[inline]
pub(crate) fn threshold_allows(level: LogLevel) -> bool {
    let threshold = THRESHOLD.load(Ordering::Relaxed);
    threshold != OFF
        && level as u8 >= threshold
        && !SUPPRESSED.try_with(std::cell::Cell::get).unwrap_or(true)
}

/// Stops records made on this thread from being reported: for the reporter's threads (see
/// `SUPPRESSED`).
#[allow(dead_code)] // for the reporter, which the lead wires
pub(crate) fn suppress_on_this_thread() {
    let _ = SUPPRESSED.try_with(|s| s.set(true));
}

/// The bytes of text a record keeps (`SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE`).
#[inline]
pub(crate) fn max_message_size() -> usize {
    MAX_MESSAGE_SIZE.load(Ordering::Relaxed)
}

/// Queues `log` for the reporter without waiting: dropped (and counted) when the queue is full
/// or none is installed.
pub(crate) fn submit(log: LogData) {
    let len = prost::Message::encoded_len(&log);
    // The queue's bound in bytes first: a full one costs a failed add, not a send.
    let queued = QUEUED_BYTES.fetch_add(len, Ordering::Relaxed);
    let sent = queued.saturating_add(len) <= MAX_QUEUED_BYTES
        && match QUEUE.read() {
            Ok(queue) => queue.as_ref().is_some_and(|tx| tx.try_send(log).is_ok()),
            Err(_) => false,
        };
    if !sent {
        QUEUED_BYTES.fetch_sub(len, Ordering::Relaxed);
    }
    if sent {
        SUBMITTED.fetch_add(1, Ordering::Relaxed);
    } else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts queueing log records with `settings` (its threshold, buffer and message sizes), and
/// returns the receiving end, for a reporter of your own that sends what it drains. `None`,
/// and nothing queued, when `settings.active` is false.
///
/// [`crate::init`] installs the queue its reporter drains, as `SW_AGENT_LOG_REPORTER_*` say:
/// with `init` there is nothing to install. Called while that reporter runs, this keeps its
/// queue (it never disconnects it) and applies `settings`' level and message size to it,
/// returning `None`. Otherwise installing again replaces the queue: the former receiver sees
/// its channel closed once it has drained what was queued.
///
/// ```
/// use skytrace::logs::{self, LogSettings};
///
/// let mut receiver = logs::install(&LogSettings::default()).expect("active by default");
/// assert!(receiver.try_recv().is_none());
/// logs::uninstall();
/// ```
pub fn install(settings: &LogSettings) -> Option<LogReceiver> {
    if !settings.active {
        uninstall();
        return None;
    }
    if REPORTER_QUEUE.load(Ordering::Relaxed) && is_drained() {
        MAX_MESSAGE_SIZE.store(settings.max_message_size.max(1), Ordering::Relaxed);
        THRESHOLD.store(settings.level as u8, Ordering::Relaxed);
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            crate::say::say(
                "skytrace: logs::install: the log queue of the reporter `init` started is kept \
                 (records go on to OAP); the level and message size given were applied to it. \
                 With `init`, there is nothing to install.",
            );
        }
        return None;
    }
    Some(replace(settings, false))
}

/// The queue `init`'s reporter drains: installed whatever was there before.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn install_for_reporter(settings: &LogSettings) -> Option<LogReceiver> {
    if !settings.active {
        uninstall();
        return None;
    }
    Some(replace(settings, true))
}

/// The reporter that drained the queue has stopped: if the queue is still its, records are no
/// longer built at all.
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn reporter_stopped() {
    if REPORTER_QUEUE.load(Ordering::Relaxed) && !is_drained() {
        uninstall();
    }
}

/// Whether the installed queue has a receiver.
fn is_drained() -> bool {
    QUEUE
        .read()
        .ok()
        .is_some_and(|queue| queue.as_ref().is_some_and(|tx| !tx.is_closed()))
}

fn replace(settings: &LogSettings, reporter: bool) -> LogReceiver {
    let (tx, rx) = mpsc::channel(settings.max_buffer_size.clamp(1, BUFFER_SIZE_MAX));
    MAX_MESSAGE_SIZE.store(
        settings.max_message_size.clamp(1, MESSAGE_SIZE_MAX),
        Ordering::Relaxed,
    );
    let old = QUEUE.write().ok().and_then(|mut queue| queue.replace(tx));
    // The new queue starts empty. (A record the old receiver still takes is subtracted
    // saturating: at worst the new queue's bound is loose for a moment.)
    QUEUED_BYTES.store(0, Ordering::Relaxed);
    REPORTER_QUEUE.store(reporter, Ordering::Relaxed);
    THRESHOLD.store(settings.level as u8, Ordering::Relaxed);
    // Dropped outside the lock: closing the channel wakes the old receiver.
    drop(old);
    LogReceiver { rx }
}

/// Stops queueing log records (the reporter's shutdown): later records are not built at all.
pub fn uninstall() {
    THRESHOLD.store(OFF, Ordering::Relaxed);
    REPORTER_QUEUE.store(false, Ordering::Relaxed);
    // Taken out under the lock, dropped after it: closing the channel wakes the receiver.
    let old = QUEUE.write().ok().and_then(|mut queue| queue.take());
    QUEUED_BYTES.store(0, Ordering::Relaxed);
    drop(old);
}

/// What has been queued for the reporter since the process started.
///
/// ```
/// let stats = skytrace::logs::stats();
/// // Nothing was queued: no queue is installed, and nothing was logged.
/// assert_eq!((stats.submitted, stats.dropped), (0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Records handed to the queue.
    pub submitted: u64,
    /// Records dropped: the queue was full, or none was installed.
    pub dropped: u64,
}

/// The counters of the log queue.
pub fn stats() -> LogStats {
    LogStats {
        submitted: SUBMITTED.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
    }
}

/// The reporter's end of the log queue ([`install`]).
#[derive(Debug)]
pub struct LogReceiver {
    rx: mpsc::Receiver<LogData>,
}

impl LogReceiver {
    /// The next record; `None` once the queue is replaced or uninstalled and drained.
    pub async fn recv(&mut self) -> Option<LogData> {
        self.rx.recv().await.inspect(taken)
    }

    /// The next record if one is waiting.
    pub fn try_recv(&mut self) -> Option<LogData> {
        self.rx.try_recv().ok().inspect(taken)
    }

    /// Moves up to `max` waiting records into `out` (waiting for the first one); returns how
    /// many, 0 once the queue is closed and drained. For a reporter that sends in batches.
    pub async fn recv_many(&mut self, out: &mut Vec<LogData>, max: usize) -> usize {
        let before = out.len();
        let n = self.rx.recv_many(out, max).await;
        out[before..].iter().for_each(taken);
        n
    }
}

/// A record left the queue: its bytes no longer count against [`MAX_QUEUED_BYTES`].
fn taken(log: &LogData) {
    let len = prost::Message::encoded_len(log);
    // Saturating: a record queued before a replacement is taken from the old queue.
    let _ = QUEUED_BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n.saturating_sub(len))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the queue and the threshold are the process's.
    #[test]
    fn threshold_queue_and_drops() {
        assert!(!threshold_allows(LogLevel::Error), "nothing before install");
        let settings = LogSettings {
            max_buffer_size: 1,
            ..LogSettings::default()
        };
        let mut receiver = install(&settings).unwrap();
        assert!(threshold_allows(LogLevel::Warn));
        assert!(threshold_allows(LogLevel::Error));
        assert!(!threshold_allows(LogLevel::Info));
        let before = stats();
        submit(LogData::default());
        submit(LogData::default());
        let after = stats();
        assert_eq!(after.submitted - before.submitted, 1);
        assert_eq!(after.dropped - before.dropped, 1);
        assert!(receiver.try_recv().is_some());
        assert!(receiver.try_recv().is_none());
        std::thread::spawn(|| {
            suppress_on_this_thread();
            assert!(!threshold_allows(LogLevel::Error), "a reporter thread");
        })
        .join()
        .unwrap();
        assert!(threshold_allows(LogLevel::Error));
        uninstall();
        assert!(!threshold_allows(LogLevel::Error));
        submit(LogData::default());
        assert_eq!(stats().dropped - after.dropped, 1);
        let inactive = LogSettings {
            active: false,
            ..LogSettings::default()
        };
        assert!(install(&inactive).is_none());
        assert!(!threshold_allows(LogLevel::Error));
    }

    #[test]
    fn settings_from_variables() {
        let vars = [
            ("SW_AGENT_LOG_REPORTER_ACTIVE", "false"),
            ("SW_AGENT_LOG_REPORTER_LEVEL", "WARNING"),
            ("SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE", "50"),
            ("SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE", "100"),
        ];
        let lookup = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        let settings = LogSettings::default().env(lookup).unwrap();
        assert_eq!(
            settings,
            LogSettings {
                active: false,
                level: LogLevel::Warn,
                max_buffer_size: 50,
                max_message_size: 100,
            }
        );
        for (name, value) in [
            ("SW_AGENT_LOG_REPORTER_ACTIVE", "maybe"),
            ("SW_AGENT_LOG_REPORTER_LEVEL", "loud"),
            ("SW_AGENT_LOG_REPORTER_MAX_BUFFER_SIZE", "0"),
            ("SW_AGENT_LOG_REPORTER_MAX_MESSAGE_SIZE", "big"),
        ] {
            let err = LogSettings::default()
                .env(|n| (n == name).then(|| value.to_owned()))
                .unwrap_err();
            assert_eq!((err.variable.as_str(), err.value.as_str()), (name, value));
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
