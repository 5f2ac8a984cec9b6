//! What the signal handler does with a session: claim a slot, walk the stack, tag the sample,
//! publish it. Everything here runs inside the handler: no allocation, no lock, no panic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::os::TryCell;
use crate::ring::Ring;
use crate::unwind::{NativeUnwinder, Workspace};
use crate::{Stats, Tag};

/// The interrupted thread's registers unwinding starts from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Regs {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) fp: u64,
    /// The link register (aarch64); 0 elsewhere.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub(crate) lr: u64,
}

/// A running session's state, shared by its handle and the handler.
pub(crate) struct Shared {
    pub(crate) ring: Ring,
    pub(crate) unwinder: NativeUnwinder,
    pub(crate) workspaces: Box<[TryCell<Workspace>]>,
    pub(crate) signals: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_busy: AtomicU64,
    /// Nanoseconds spent in the handler (wall time, which is the interrupted thread's CPU).
    pub(crate) handler_nanos: AtomicU64,
}

impl Shared {
    pub(crate) fn new(ring: Ring, unwinder: NativeUnwinder, workspaces: usize) -> Self {
        Shared {
            ring,
            unwinder,
            workspaces: (0..workspaces.max(1))
                .map(|_| TryCell::new(Workspace::new()))
                .collect(),
            signals: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            dropped_busy: AtomicU64::new(0),
            handler_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            signals: self.signals.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_busy: self.dropped_busy.load(Ordering::Relaxed),
            handler_time: Duration::from_nanos(self.handler_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// One SIGPROF on this thread.
pub(crate) fn take(shared: &Shared, regs: Regs) {
    // `Instant::now` is `clock_gettime`, answered by the vDSO: async-signal-safe.
    let started = Instant::now();
    record(shared, regs);
    let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    shared.handler_nanos.fetch_add(spent, Ordering::Relaxed);
}

fn record(shared: &Shared, regs: Regs) {
    shared.signals.fetch_add(1, Ordering::Relaxed);
    let Some(mut writer) = shared.ring.claim() else {
        shared.dropped_full.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let walked = shared
        .workspaces
        .iter()
        .find_map(|cell| cell.try_with(|ws| ws.walk(&shared.unwinder, regs, &mut writer)));
    if walked.is_none() {
        // Every workspace is in use by handlers on other threads: `writer`'s drop frees the
        // slot.
        shared.dropped_busy.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut tag = Tag::default();
    if let Some(tagger) = crate::TAGGER.get() {
        tagger(&mut tag);
    }
    writer.publish(crate::os::thread_id(), &tag);
}
