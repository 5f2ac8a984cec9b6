//! Counters: a total that only goes up, reported as is or as its increase per period.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::id::MeterId;

/// What a [`Counter`] reports each period.
///
/// ```
/// use skytrace::meter::{CounterMode, MeterRegistry};
///
/// let registry = MeterRegistry::new();
/// let bytes = registry.counter("bytes_received").mode(CounterMode::Rate).build().unwrap();
/// bytes.increment(512.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CounterMode {
    /// The total since the counter was registered (OAP rules usually apply `increase(...)`).
    #[default]
    Total,
    /// The increase since the previous period, as the Java toolkit's `Counter.Mode.RATE`.
    Rate,
}

/// A total that only goes up. Cloning is cheap (one `Arc`); every clone updates the same value,
/// from any thread, without a lock.
///
/// ```
/// let registry = skytrace::meter::MeterRegistry::new();
/// let orders = registry.counter("orders_placed").label("region", "eu").build().unwrap();
/// orders.inc();
/// orders.increment(2.0);
/// assert_eq!(orders.get(), 3.0);
/// ```
#[derive(Clone)]
pub struct Counter {
    pub(crate) core: Arc<CounterCore>,
}

pub(crate) struct CounterCore {
    pub(crate) id: MeterId,
    pub(crate) mode: CounterMode,
    /// Whole-number increments: a plain `fetch_add`, exact, and the common case.
    whole: AtomicU64,
    /// Fractional increments, as `f64` bits updated with compare-and-swap.
    fraction: AtomicU64,
    /// `whole` and `fraction` when last reported (rate mode).
    reported_whole: AtomicU64,
    reported_fraction: AtomicU64,
}

/// Below 2^53 every whole `f64` converts to `u64` exactly.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

impl CounterCore {
    pub(crate) fn new(id: MeterId, mode: CounterMode) -> CounterCore {
        CounterCore {
            id,
            mode,
            whole: AtomicU64::new(0),
            fraction: AtomicU64::new(0f64.to_bits()),
            reported_whole: AtomicU64::new(0),
            reported_fraction: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn get(&self) -> f64 {
        self.whole.load(Ordering::Relaxed) as f64
            + f64::from_bits(self.fraction.load(Ordering::Relaxed))
    }

    /// The value to report this period. In rate mode this moves the baseline, so it must be
    /// called once per period (the registry's `collect` does).
    pub(crate) fn take_report(&self) -> f64 {
        match self.mode {
            CounterMode::Total => self.get(),
            CounterMode::Rate => {
                // The baselines only move forward (`fetch_max`), so two overlapping calls
                // cannot report an increase twice or a negative one.
                let whole = self.whole.load(Ordering::Relaxed);
                let prev_whole = self.reported_whole.fetch_max(whole, Ordering::Relaxed);
                let fraction = f64::from_bits(self.fraction.load(Ordering::Relaxed));
                let prev_fraction = self
                    .reported_fraction
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                        (fraction > f64::from_bits(bits)).then_some(fraction.to_bits())
                    })
                    .map_or_else(f64::from_bits, f64::from_bits);
                whole.saturating_sub(prev_whole) as f64 + (fraction - prev_fraction).max(0.0)
            }
        }
    }
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.core.whole.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `by`. A counter only goes up: negative, NaN and infinite amounts are ignored.
    ///
    /// ```
    /// let c = skytrace::meter::MeterRegistry::new().counter("c").build().unwrap();
    /// c.increment(1.5);
    /// c.increment(-4.0); // ignored
    /// assert_eq!(c.get(), 1.5);
    /// ```
    pub fn increment(&self, by: f64) {
        if !(by.is_finite() && by > 0.0) {
            return;
        }
        if by.fract() == 0.0 && by < EXACT_LIMIT {
            self.core.whole.fetch_add(by as u64, Ordering::Relaxed);
            return;
        }
        // `fetch_update` retries the compare-and-swap until no other thread got in between.
        let _ = self
            .core
            .fraction
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + by).to_bits())
            });
    }

    /// The total so far (in both modes).
    pub fn get(&self) -> f64 {
        self.core.get()
    }

    /// The meter's name.
    pub fn name(&self) -> &str {
        &self.core.id.name
    }

    /// How it reports.
    pub fn mode(&self) -> CounterMode {
        self.core.mode
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter")
            .field("name", &self.core.id.name)
            .field("labels", &self.core.id.labels)
            .field("mode", &self.core.mode)
            .field("value", &self.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_threads_sum_right() {
        let counter = Counter {
            core: Arc::new(CounterCore::new(
                MeterId::new("hits", vec![]),
                CounterMode::Total,
            )),
        };
        std::thread::scope(|s| {
            for _ in 0..8 {
                let c = counter.clone();
                s.spawn(move || {
                    for _ in 0..10_000 {
                        c.inc();
                        c.increment(0.5);
                    }
                });
            }
        });
        assert_eq!(counter.get(), 8.0 * 10_000.0 * 1.5);
    }

    #[test]
    fn rate_mode_reports_the_increase() {
        let core = CounterCore::new(MeterId::new("r", vec![]), CounterMode::Rate);
        let c = Counter {
            core: Arc::new(core),
        };
        c.increment(3.0);
        assert_eq!(c.core.take_report(), 3.0);
        assert_eq!(c.core.take_report(), 0.0);
        c.increment(2.25);
        c.inc();
        assert_eq!(c.core.take_report(), 3.25);
        assert_eq!(c.get(), 6.25);
    }

    #[test]
    fn rate_reports_add_up_to_the_total_under_concurrency() {
        let c = Counter {
            core: Arc::new(CounterCore::new(
                MeterId::new("r", vec![]),
                CounterMode::Rate,
            )),
        };
        let reported = std::sync::Mutex::new(0.0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        c.inc();
                    }
                });
            }
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        let r = c.core.take_report();
                        assert!(r >= 0.0);
                        *reported.lock().unwrap() += r;
                    }
                });
            }
        });
        let total = *reported.lock().unwrap() + c.core.take_report();
        assert_eq!(total, 80_000.0);
    }

    #[test]
    fn total_mode_reports_the_total() {
        let c = Counter {
            core: Arc::new(CounterCore::new(
                MeterId::new("t", vec![]),
                CounterMode::Total,
            )),
        };
        c.increment(4.0);
        assert_eq!(c.core.take_report(), 4.0);
        assert_eq!(c.core.take_report(), 4.0);
    }

    #[test]
    fn bad_amounts_are_ignored() {
        let c = Counter {
            core: Arc::new(CounterCore::new(
                MeterId::new("t", vec![]),
                CounterMode::Total,
            )),
        };
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0] {
            c.increment(bad);
        }
        assert_eq!(c.get(), 0.0);
        c.increment(1e300);
        assert_eq!(c.get(), 1e300);
    }
}
