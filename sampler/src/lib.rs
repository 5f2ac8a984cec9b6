//! A process-wide CPU sampler for skytrace's profiling (Linux, x86_64 and aarch64).
//!
//! While a [`Session`] runs, the kernel raises `SIGPROF` each time the process has used 10 ms
//! of CPU (`setitimer(ITIMER_PROF)`: about 100 samples per busy core-second), on a thread that
//! is running. The handler walks that thread's stack with the modules' `.eh_frame` (see
//! `unwind.rs` for why not frame pointers, and the limits), asks the [`set_tagger`] function
//! what the thread is running (skytrace: the trace segment and span), and stores the sample in
//! a fixed array of slots that [`Session::drain`] empties. Nothing is armed, installed or
//! running between sessions.
//!
//! The handler may interrupt any code, `malloc` or a lock holder included, so it allocates
//! nothing, takes no lock and uses no libgcc unwinding; every read of memory it cannot vouch
//! for (the stack, anything a tagger points at) goes through the kernel ([`read_memory`]),
//! which fails instead of faulting. When a session stops, the timer is disarmed, handlers
//! still running elsewhere are waited for, a `SIGPROF` still pending is discarded and the
//! previous disposition is put back; a session refuses to start while another `SIGPROF`
//! handler or profiling timer is in place.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let mut session = skytrace_sampler::Session::start(Duration::from_millis(10))?;
//! std::thread::sleep(Duration::from_secs(1)); // ... the service works ...
//! session.stop();
//! let mut symbols = session.symbolizer();
//! session.drain(|sample| {
//!     if let Some(&leaf) = sample.frames().first() {
//!         println!("{}", symbols.function(leaf));
//!     }
//! });
//! # Ok::<(), skytrace_sampler::Error>(())
//! ```

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod os;
mod ring;
mod sample;
mod symbols;
mod unwind;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub use os::read_memory;
pub use ring::{MAX_FRAMES, MAX_TAG, Sample};
pub use symbols::Symbolizer;
pub use unwind::STACK_WINDOW;

/// Samples a session keeps before they are drained; more are dropped (counted).
const RING_SLOTS: usize = 512;

/// The default sampling period: 100 Hz of CPU time.
pub const DEFAULT_PERIOD: Duration = Duration::from_millis(10);

static TAGGER: OnceLock<fn(&mut Tag)> = OnceLock::new();

/// Sets, once per process, the function the signal handler calls to tag each sample with
/// what the interrupted thread runs. It runs inside the handler: it must not allocate, lock,
/// or read memory it cannot vouch for except through [`read_memory`]. Returns `false` if a
/// tagger was set already (it stays).
///
/// ```
/// fn tag(tag: &mut skytrace_sampler::Tag) {
///     tag.set(b"segment-id", 0);
/// }
/// skytrace_sampler::set_tagger(tag);
/// ```
pub fn set_tagger(tagger: fn(&mut Tag)) -> bool {
    TAGGER.set(tagger).is_ok()
}

/// What a sampled thread was running, as its tagger said: a short text (skytrace: the trace
/// segment id) and a number (the span id).
///
/// ```
/// let mut tag = skytrace_sampler::Tag::default();
/// tag.set(b"abc", 2);
/// assert_eq!(tag.text(), b"abc");
/// assert_eq!(tag.span_id(), 2);
/// ```
#[derive(Clone, Copy)]
pub struct Tag {
    text: [u8; MAX_TAG],
    len: u8,
    span_id: i32,
}

impl Default for Tag {
    fn default() -> Self {
        Tag {
            text: [0; MAX_TAG],
            len: 0,
            span_id: 0,
        }
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tag")
            .field("text", &String::from_utf8_lossy(self.text()))
            .field("span_id", &self.span_id)
            .finish()
    }
}

impl Tag {
    /// Sets the tag; text past [`MAX_TAG`] bytes is cut.
    pub fn set(&mut self, text: &[u8], span_id: i32) {
        let len = text.len().min(MAX_TAG);
        self.text[..len].copy_from_slice(&text[..len]);
        self.len = len as u8;
        self.span_id = span_id;
    }

    /// The text; empty when untagged.
    pub fn text(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }

    /// The number set with the text.
    pub fn span_id(&self) -> i32 {
        self.span_id
    }
}

/// Why a session could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Not Linux on x86_64 or aarch64.
    Unsupported,
    /// Another profiler holds `SIGPROF` or the process CPU timer, or a session runs already.
    Busy(&'static str),
    /// A system call failed.
    Os(&'static str, std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported => {
                f.write_str("CPU sampling is supported on Linux (x86_64, aarch64) only")
            }
            Error::Busy(why) => write!(f, "CPU sampling is busy: {why}"),
            Error::Os(call, err) => write!(f, "CPU sampling cannot start: {call} failed: {err}"),
        }
    }
}

impl std::error::Error for Error {}

/// Counts of a session: signals handled and samples dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// `SIGPROF`s handled.
    pub signals: u64,
    /// Samples dropped because every slot was waiting to be drained.
    pub dropped_full: u64,
    /// Samples dropped because handlers on other threads used every workspace.
    pub dropped_busy: u64,
    /// Time spent in the handler, all threads together: the sampler's CPU cost on the
    /// service's threads.
    pub handler_time: Duration,
}

/// A running (or stopped, not yet drained) sampling session; at most one per process.
/// Dropping it stops it.
pub struct Session {
    shared: Arc<sample::Shared>,
    previous: Option<os::Previous>,
    modules: Vec<os::ModuleImage>,
    started: SystemTime,
    period: Duration,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("running", &self.previous.is_some())
            .field("period", &self.period)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Reads the loaded modules' unwind tables, reserves the buffers (a few MiB at most, freed
    /// when the session is dropped), installs the handler and starts the timer: one sample
    /// each `period` of the process's CPU time.
    pub fn start(period: Duration) -> Result<Session, Error> {
        if !os::SUPPORTED {
            return Err(Error::Unsupported);
        }
        let period = period.max(Duration::from_millis(1));
        let modules = os::loaded_modules();
        let workspaces = std::thread::available_parallelism()
            .map_or(2, usize::from)
            .clamp(2, 8);
        let shared = Arc::new(sample::Shared::new(
            ring::Ring::new(RING_SLOTS),
            unwind::unwinder(&modules),
            workspaces,
        ));
        let started = SystemTime::now();
        let previous = os::start(Arc::clone(&shared), period)?;
        Ok(Session {
            shared,
            previous: Some(previous),
            modules,
            started,
            period,
        })
    }

    /// Hands every sample taken since the last drain to `f`; returns how many. Drain often
    /// enough (every 100 ms is plenty) that the slots do not fill up.
    pub fn drain(&self, f: impl FnMut(&Sample)) -> usize {
        self.shared.ring.drain(f)
    }

    /// Stops sampling and puts the previous `SIGPROF` disposition back; samples already taken
    /// can still be drained. Idempotent.
    pub fn stop(&mut self) {
        if let Some(previous) = self.previous.take() {
            os::stop(previous);
        }
    }

    /// Whether the session still samples.
    pub fn is_running(&self) -> bool {
        self.previous.is_some()
    }

    /// Names for the sampled addresses: reads the modules' symbol tables (off the signal path;
    /// tens of milliseconds for a large binary).
    pub fn symbolizer(&self) -> Symbolizer {
        Symbolizer::new(&self.modules)
    }

    /// When the session started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The sampling period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Signals handled and samples dropped so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}
