//! Histograms: counts of observed values per bucket, in the form OAP's meter analyzer reads.
//!
//! What OAP expects (read from OAP's `MeterProcessor` and `SampleFamily.histogram`, and the Java
//! and Go agents' histograms): each bucket is named by its **lower** bound (the Java agent's
//! "steps"); each count is that bucket's own count, **not cumulative** (OAP builds agent samples
//! with `HistogramType.ORDINARY`, which skips the subtraction it does for Prometheus'
//! cumulative buckets); and counts run **since start**, never reset (both official agents do
//! so; a MAL rule takes `increase('PT1M')` before `histogram()` for recent percentiles). OAP
//! turns each bound into the `le` label truncated to a whole number, so bounds must be whole
//! numbers: pick the unit accordingly (milliseconds, OAP's default for agent histograms).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::MeterError;
use super::id::MeterId;

/// Counts of observed values per bucket. Cloning is cheap; any thread observes without a lock.
///
/// Buckets are given by their lower bounds: `[10, 50, 100]` means `[0, 10)`, `[10, 50)`,
/// `[50, 100)` and `[100, ∞)`. A 0 bucket is added when every bound is above 0 (as the Java and
/// Go agents do), so no positive value is lost; values below the lowest bound, and NaN, are not
/// counted.
///
/// ```
/// let registry = skytrace::meter::MeterRegistry::new();
/// let latency = registry.histogram("checkout_latency_ms", &[10.0, 50.0, 100.0]).build().unwrap();
/// latency.observe(42.0);
/// latency.observe(7.0);
/// assert_eq!(latency.buckets(), vec![(0.0, 1), (10.0, 1), (50.0, 0), (100.0, 0)]);
/// ```
#[derive(Clone)]
pub struct Histogram {
    pub(crate) core: Arc<HistogramCore>,
}

pub(crate) struct HistogramCore {
    pub(crate) id: MeterId,
    pub(crate) bounds: Box<[f64]>,
    counts: Box<[AtomicU64]>,
}

impl HistogramCore {
    pub(crate) fn new(id: MeterId, bounds: Box<[f64]>) -> HistogramCore {
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        HistogramCore { id, bounds, counts }
    }

    pub(crate) fn snapshot(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .zip(self.counts.iter())
            .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
            .collect()
    }
}

impl Histogram {
    /// Counts one value.
    pub fn observe(&self, value: f64) {
        self.observe_n(value, 1);
    }

    /// Counts `n` values equal to `value`.
    pub fn observe_n(&self, value: f64, n: u64) {
        // The number of bounds at or below `value`; NaN compares false and lands at 0.
        let above = self.core.bounds.partition_point(|b| *b <= value);
        if let Some(count) = above.checked_sub(1).and_then(|i| self.core.counts.get(i)) {
            count.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Each bucket's lower bound and count since start.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.core.snapshot()
    }

    /// The meter's name.
    pub fn name(&self) -> &str {
        &self.core.id.name
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("name", &self.core.id.name)
            .field("labels", &self.core.id.labels)
            .field("buckets", &self.buckets())
            .finish()
    }
}

/// Sorted, deduplicated lower bounds with 0 in front when all are positive.
pub(crate) fn bucket_bounds(name: &str, bounds: &[f64]) -> Result<Box<[f64]>, MeterError> {
    let invalid = |reason: String| MeterError::InvalidBuckets {
        name: name.into(),
        reason,
    };
    if bounds.is_empty() {
        return Err(invalid("no bucket bounds given".into()));
    }
    if let Some(b) = bounds.iter().find(|b| !b.is_finite()) {
        return Err(invalid(format!("bucket bound {b} is not a finite number")));
    }
    if let Some(b) = bounds.iter().find(|b| b.fract() != 0.0) {
        return Err(invalid(format!(
            "bucket bound {b} is not a whole number (OAP truncates bounds to integers; \
             use a finer unit, e.g. milliseconds or microseconds)"
        )));
    }
    let mut sorted = bounds.to_vec();
    sorted.sort_by(f64::total_cmp);
    // -0.0 and 0.0 are one bound.
    sorted.dedup_by(|a, b| a == b);
    if sorted[0] > 0.0 {
        sorted.insert(0, 0.0);
    }
    Ok(sorted.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(bounds: &[f64]) -> Histogram {
        let bounds = bucket_bounds("h", bounds).unwrap();
        Histogram {
            core: Arc::new(HistogramCore::new(MeterId::new("h", vec![]), bounds)),
        }
    }

    #[test]
    fn values_land_in_the_bucket_of_their_lower_bound() {
        let h = histogram(&[100.0, 10.0, 50.0, 10.0]);
        for v in [0.0, 9.9, 10.0, 49.0, 50.0, 99.0, 100.0, 1e9] {
            h.observe(v);
        }
        h.observe_n(12.0, 5);
        // Below the lowest bound and NaN: not counted.
        h.observe(-1.0);
        h.observe(f64::NAN);
        assert_eq!(
            h.buckets(),
            vec![(0.0, 2), (10.0, 7), (50.0, 2), (100.0, 2)]
        );
    }

    #[test]
    fn counts_are_per_bucket_and_since_start() {
        let h = histogram(&[0.0, 5.0]);
        h.observe(1.0);
        assert_eq!(h.core.snapshot(), vec![(0.0, 1), (5.0, 0)]);
        h.observe(6.0);
        // Not cumulative (bucket 5 does not include bucket 0), not reset by a snapshot.
        assert_eq!(h.core.snapshot(), vec![(0.0, 1), (5.0, 1)]);
    }

    #[test]
    fn negative_bounds_are_kept() {
        let h = histogram(&[-10.0, 0.0, 10.0]);
        h.observe(-5.0);
        h.observe(-11.0);
        assert_eq!(h.buckets(), vec![(-10.0, 1), (0.0, 0), (10.0, 0)]);
    }

    #[test]
    fn bad_bounds_are_refused() {
        for (bounds, words) in [
            (&[][..], "no bucket bounds"),
            (&[1.0, f64::NAN][..], "not a finite number"),
            (&[f64::INFINITY][..], "not a finite number"),
            (&[0.5][..], "not a whole number"),
        ] {
            let err = bucket_bounds("h", bounds).unwrap_err();
            assert!(err.to_string().contains(words), "{err}");
        }
    }
}
