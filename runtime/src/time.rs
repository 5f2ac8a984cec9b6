//! Wall-clock time in the unit SkyWalking uses on the wire, cheap enough to read twice per span.
//!
//! `SystemTime::now()` is a `clock_gettime` call (tens of ns on a VM); a span reads the clock at
//! start and end, so that was the largest part of a span's cost. Instead we read the CPU's
//! time-stamp counter through `minstant` (falling back to the OS clock where the TSC is not
//! reliable) and map it to Unix time with an anchor taken once. The TSC drifts slowly against the
//! NTP-disciplined wall clock, so [`resync`] (called by the reporter every heartbeat) measures the
//! difference and every reading adds it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static ANCHOR: OnceLock<minstant::Anchor> = OnceLock::new();
/// Wall clock minus TSC clock, in nanoseconds.
static CORRECTION_NS: AtomicI64 = AtomicI64::new(0);

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

    /// Milliseconds since the Unix epoch.
    pub(crate) fn to_millis(self) -> i64 {
        let nanos = i64::try_from(self.0.as_unix_nanos(anchor())).unwrap_or(i64::MAX);
        nanos.saturating_add(CORRECTION_NS.load(Ordering::Relaxed)) / 1_000_000
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
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
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
}
