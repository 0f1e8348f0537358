//! Redial delays: capped exponential backoff with jitter, as pure arithmetic.

use std::time::Duration;

/// The redial schedule of one configured peer.
///
/// The n-th consecutive failure waits `min(initial * 2^n, max)` scaled by a jitter factor in
/// `[0.5, 1.0)`: never less than half a step, so a peer coming back is redialed within one
/// step, and never in lock-step with every other node that lost the same peer.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `initial` and never waiting longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// The step before jitter for the current failure count.
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt, given a uniform sample `jitter` in `[0, 1)`; counts
    /// one more failure.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = self.step();
        self.failures = self.failures.saturating_add(1);
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Accounts for a connection that ended `up_for` after its attempt started. Only one that
    /// stayed up for at least the longest step proves the peer healthy and forgets past
    /// failures; one that drops at once keeps backing off instead of hammering the peer.
    pub fn connection_ended(&mut self, up_for: Duration) {
        if up_for >= self.max {
            self.failures = 0;
        }
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_from_initial_up_to_the_cap() {
        let mut b = Backoff::new(ms(100), ms(1000));
        let steps: Vec<_> = (0..7).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(
            steps,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
    }

    #[test]
    fn jitter_stays_within_half_to_one_step() {
        let mut b = Backoff::new(ms(100), ms(10_000));
        for _ in 0..3 {
            b.next_delay(0.3);
        }
        assert_eq!(b.step(), ms(800));
        assert_eq!(b.clone().next_delay(0.0), ms(400));
        assert_eq!(b.clone().next_delay(0.5), ms(600));
        assert!(b.clone().next_delay(0.999_999) <= ms(800));
    }

    #[test]
    fn a_connection_that_stayed_up_for_the_cap_starts_over() {
        let mut b = Backoff::new(ms(100), ms(10_000));
        for _ in 0..5 {
            b.next_delay(0.5);
        }
        b.connection_ended(ms(10_000));
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(1.0), ms(100));
    }

    #[test]
    fn a_connection_that_dropped_early_keeps_backing_off() {
        let mut b = Backoff::new(ms(100), ms(10_000));
        for _ in 0..5 {
            b.next_delay(0.5);
        }
        b.connection_ended(ms(9_999));
        assert_eq!(b.failures(), 5);
        assert_eq!(b.next_delay(1.0), ms(3_200));
    }

    #[test]
    fn never_gives_up_and_never_overflows() {
        let mut b = Backoff::new(ms(100), Duration::from_secs(10));
        for _ in 0..10_000 {
            assert!(b.next_delay(0.9) <= Duration::from_secs(10));
        }
        assert_eq!(b.step(), Duration::from_secs(10));
    }
}
