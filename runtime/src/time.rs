//! Wall-clock time in the unit SkyWalking uses on the wire, cheap enough to read twice per span.
//!
//! `SystemTime::now()` is a `clock_gettime` call (tens of ns on a VM); a span reads the clock at
//! start and end, so that was the largest part of a span's cost. Instead we read the CPU's
//! time-stamp counter through `minstant` (falling back to the OS clock where the TSC is not
//! reliable) and map it to Unix time with an anchor taken once. The TSC drifts slowly against the
//! NTP-disciplined wall clock (and the wall clock may be stepped), so the difference is measured
//! again ([`resync`]) whenever a conversion notices the last measurement is more than
//! [`RESYNC_EVERY`] old. That is the runtime's job, not a reporter's: the console reporter and
//! custom reporters get the same times as the gRPC one, with no thread of its own. The check is
//! one atomic load and a comparison; the thread that wins the race to re-measure pays for one
//! `clock_gettime` and one `rdtsc` every 10 s.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static ANCHOR: OnceLock<minstant::Anchor> = OnceLock::new();
/// Wall clock minus TSC clock, in nanoseconds.
static CORRECTION_NS: AtomicI64 = AtomicI64::new(0);
/// The TSC time (Unix nanoseconds, uncorrected) from which [`CORRECTION_NS`] counts as stale.
/// Zero at start: the first conversion measures it.
static RESYNC_DUE_NS: AtomicI64 = AtomicI64::new(0);

/// How old the correction may get. NTP slews a clock by at most 500 ppm (0.5 ms a second), and
/// a TSC drifts by a few ppm: after 10 s the error stays under the protocol's millisecond in
/// all but a clock being stepped, which this catches 10 s later at most.
pub(crate) const RESYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn anchor() -> &'static minstant::Anchor {
    ANCHOR.get_or_init(minstant::Anchor::new)
}

fn tsc_unix_nanos() -> i64 {
    i64::try_from(minstant::Instant::now().as_unix_nanos(anchor())).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
#[inline]
pub(crate) fn now_millis() -> i64 {
    Stamp::now().to_millis()
}

/// A moment as the TSC saw it. Spans record these (one `rdtsc`, nothing more); they become
/// milliseconds only when the finished segment is encoded, once per span rather than on every
/// read. Every stamp of a segment is converted with the same correction, so their order
/// survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(minstant::Instant);

impl Stamp {
    #[inline]
    pub(crate) fn now() -> Stamp {
        Stamp(minstant::Instant::now())
    }

    /// Milliseconds since the Unix epoch. To convert several stamps that must keep their order
    /// (a segment's), take one [`Clock`] for all of them instead.
    #[inline]
    pub(crate) fn to_millis(self) -> i64 {
        let nanos = self.tsc_nanos();
        nanos.saturating_add(Clock::checked_at(nanos).correction_ns) / 1_000_000
    }

    #[inline]
    fn tsc_nanos(self) -> i64 {
        i64::try_from(self.0.as_unix_nanos(anchor())).unwrap_or(i64::MAX)
    }
}

/// The correction in force, taken once: every stamp converted with the same `Clock` keeps its
/// order (a re-measurement between a span's start and its end could otherwise turn them round).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    correction_ns: i64,
}

impl Clock {
    /// The clock for stamps taken up to now.
    pub(crate) fn now() -> Clock {
        Clock::at(Stamp::now())
    }

    /// The clock for stamps taken up to `latest`, re-measured first when the correction is
    /// older than [`RESYNC_EVERY`] at `latest`.
    pub(crate) fn at(latest: Stamp) -> Clock {
        Clock::checked_at(latest.tsc_nanos())
    }

    /// [`Clock::at`] for a stamp already in (uncorrected) nanoseconds.
    #[inline]
    fn checked_at(nanos: i64) -> Clock {
        let due = RESYNC_DUE_NS.load(Ordering::Relaxed);
        if nanos >= due {
            resync_due(due, nanos);
        }
        Clock {
            correction_ns: CORRECTION_NS.load(Ordering::Relaxed),
        }
    }

    /// `stamp` in milliseconds since the Unix epoch.
    #[inline]
    pub(crate) fn millis(self, stamp: Stamp) -> i64 {
        stamp.tsc_nanos().saturating_add(self.correction_ns) / 1_000_000
    }
}

/// Re-measures the correction, unless another thread has just claimed it: one thread wins the
/// right, the others go on with the current value. Out of line: once in 10 s.
#[cold]
#[inline(never)]
fn resync_due(due: i64, nanos: i64) {
    let next = nanos.saturating_add(RESYNC_EVERY.as_nanos() as i64);
    if RESYNC_DUE_NS
        .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        resync();
    }
}

/// The wall clock itself, in milliseconds since the Unix epoch; 0 for a clock before 1970.
#[cfg(test)]
fn wall_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Re-aligns [`now_millis`] with the wall clock.
pub(crate) fn resync() {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    CORRECTION_NS.store(wall.saturating_sub(tsc_unix_nanos()), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_wall_clock() {
        resync();
        let (a, b, c) = (wall_millis(), now_millis(), wall_millis());
        assert!(a - 2 <= b && b <= c + 2, "{a} {b} {c}");
    }

    #[test]
    fn a_stale_correction_is_measured_again_by_the_next_conversion() {
        // Other tests' threads convert stamps too: one may claim the re-measurement at the same
        // moment, while this thread goes on with the value in force. Tried until this thread's
        // conversion is the one that claims it (the first time, but for such a race).
        let remeasured = (0..100).any(|_| {
            // A correction that is plainly wrong, and due for a re-measurement.
            CORRECTION_NS.store(3_600 * 1_000_000_000, Ordering::Relaxed);
            RESYNC_DUE_NS.store(0, Ordering::Relaxed);
            let (a, b, c) = (wall_millis(), now_millis(), wall_millis());
            RESYNC_DUE_NS.load(Ordering::Relaxed) > 0 && a - 2 <= b && b <= c + 2
        });
        assert!(remeasured, "a stale correction was used as it was");
    }

    #[test]
    fn one_clock_keeps_the_order_of_its_stamps() {
        let early = Stamp::now();
        let late = Stamp::now();
        let clock = Clock::at(late);
        assert!(clock.millis(early) <= clock.millis(late));
    }
}
