//! How long to wait before the next attempt after a failure: exponential, with jitter and a cap.
//!
//! The shape is gRPC's connection back-off (`doc/connection-backoff.md` in grpc/grpc: grow by 1.6
//! on every failed attempt, ±20 % jitter, reset only once a call succeeds), with values for an
//! agent inside someone else's service rather than for a client whose caller waits:
//!
//! | | gRPC | skytrace |
//! |---|---|---|
//! | first delay | 1 s | [`INITIAL`] 0.5 s: a restarted OAP is found again quickly |
//! | multiplier | 1.6 | [`MULTIPLIER`] 1.6 |
//! | jitter | ±20 % | [`JITTER`] ±20 %: agents restarted together do not reconnect in step |
//! | longest delay | 120 s | [`MAX`] 30 s: an outage of OAP stops traces for at most 30 s after it ends |
//!
//! A refused token goes to [`MAX`] at once: retrying sooner cannot help.

use std::time::Duration;

/// The first delay.
pub(crate) const INITIAL: Duration = Duration::from_millis(500);
/// Each failed attempt multiplies the delay by this.
pub(crate) const MULTIPLIER: f64 = 1.6;
/// Each delay is moved by up to this fraction of itself, either way.
pub(crate) const JITTER: f64 = 0.2;
/// The longest delay.
pub(crate) const MAX: Duration = Duration::from_secs(30);

/// The delays of consecutive failed attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The next delay, before jitter.
    next: Duration,
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next: INITIAL,
            rng: crate::id::random_u64() | 1,
        }
    }

    /// The delay after one more failed attempt.
    pub(crate) fn fail(&mut self) -> Duration {
        let base = self.next;
        self.next = base.mul_f64(MULTIPLIER).min(MAX);
        self.jittered(base)
    }

    /// The delay after an attempt that retrying soon cannot fix (a refused token): the longest.
    pub(crate) fn give_up_for_now(&mut self) -> Duration {
        self.next = MAX;
        self.jittered(MAX)
    }

    /// A call succeeded: the next failure starts over from [`INITIAL`].
    pub(crate) fn reset(&mut self) {
        self.next = INITIAL;
    }

    fn jittered(&mut self, base: Duration) -> Duration {
        // xorshift64: a uniform fraction in [-1, 1).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        base.mul_f64(1.0 + JITTER * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(d: Duration, base: Duration) -> bool {
        d >= base.mul_f64(1.0 - JITTER) && d <= base.mul_f64(1.0 + JITTER)
    }

    #[test]
    fn grows_by_the_multiplier_up_to_the_cap() {
        let mut backoff = Backoff::new();
        let mut base = INITIAL;
        for _ in 0..30 {
            let d = backoff.fail();
            assert!(within(d, base), "{d:?} vs {base:?}");
            base = base.mul_f64(MULTIPLIER).min(MAX);
        }
        assert!(within(backoff.fail(), MAX));
    }

    #[test]
    fn resets_to_the_first_delay() {
        let mut backoff = Backoff::new();
        for _ in 0..5 {
            backoff.fail();
        }
        backoff.reset();
        assert!(within(backoff.fail(), INITIAL));
    }

    #[test]
    fn a_refused_token_waits_the_longest_at_once() {
        let mut backoff = Backoff::new();
        assert!(within(backoff.give_up_for_now(), MAX));
        assert!(within(backoff.fail(), MAX));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut backoff = Backoff::new();
        let delays: Vec<_> = (0..20).map(|_| backoff.give_up_for_now()).collect();
        assert!(delays.iter().all(|&d| within(d, MAX)));
        assert!(delays.windows(2).any(|w| w[0] != w[1]));
    }
}
