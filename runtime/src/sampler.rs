//! Head sampling: at most N new traces per 3-second window, as the Java agent's
//! `agent.sample_n_per_3_secs`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::time::now_millis;

pub(crate) struct Sampler {
    /// Traces per window; 0 or less samples everything.
    limit: u32,
    window: AtomicU64,
    taken: AtomicU32,
}

impl Sampler {
    pub(crate) fn new(per_3_secs: i32) -> Self {
        Sampler {
            limit: u32::try_from(per_3_secs).unwrap_or(0),
            window: AtomicU64::new(0),
            taken: AtomicU32::new(0),
        }
    }

    /// Whether a new trace may be sampled now.
    pub(crate) fn try_sample(&self) -> bool {
        if self.limit == 0 {
            return true;
        }
        let window = now_millis().unsigned_abs() / 3_000;
        let seen = self.window.load(Ordering::Relaxed);
        if seen != window
            && self
                .window
                .compare_exchange(seen, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // The thread that moved the window resets the count; a race can let a few
            // extra traces through at the boundary, never fewer.
            self.taken.store(0, Ordering::Relaxed);
        }
        self.taken.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_traces_per_window() {
        let s = Sampler::new(5);
        let taken = (0..100).filter(|_| s.try_sample()).count();
        // The count may span a window boundary; it never exceeds two windows' worth.
        assert!((5..=10).contains(&taken), "{taken}");
    }

    #[test]
    fn non_positive_samples_all() {
        assert!((0..1000).all(|_| Sampler::new(-1).try_sample()));
        assert!((0..1000).all(|_| Sampler::new(0).try_sample()));
    }
}
