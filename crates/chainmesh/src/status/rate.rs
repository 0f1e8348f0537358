//! A token bucket: the status engine's limit on the StatusRequests it answers per requester,
//! and the node's budget of decompressed bytes per peer. Pure: the caller passes the time.

use std::time::Instant;

/// At most `rate` units per second on average, with bursts of up to `capacity` units.
///
/// The bucket starts full. Tokens are kept as a float: a rate limit needs no exact
/// arithmetic, and a float can neither overflow nor panic whatever the clock does.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled with `rate` units per second, holding at most `capacity`.
    pub fn new(rate: f64, capacity: f64, now: Instant) -> TokenBucket {
        let capacity = capacity.max(0.0);
        TokenBucket {
            rate: rate.max(0.0),
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that went back refills nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = self.last.max(now);
    }

    /// Takes `n` units if the bucket holds them; otherwise takes nothing.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Gives back `n` units taken but not used.
    pub fn give_back(&mut self, n: u64) {
        self.tokens = (self.tokens + n as f64).min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| b.try_take(1, t0)));
        assert!(!b.try_take(1, t0));
        // 100 ms at 10/s is one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.try_take(1, t1));
        assert!(!b.try_take(1, t1));
        // A long pause refills only up to the capacity.
        let t2 = t1 + Duration::from_secs(60);
        assert!(!b.try_take(4, t2));
        assert!(b.try_take(3, t2));
    }

    #[test]
    fn what_is_given_back_can_be_taken_again_up_to_the_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, 100.0, t0);
        assert!(b.try_take(100, t0));
        b.give_back(60);
        assert!(b.try_take(60, t0));
        b.give_back(1000);
        assert!(!b.try_take(101, t0));
        assert!(b.try_take(100, t0));
    }

    #[test]
    fn a_clock_going_back_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1000.0, 1.0, t0);
        assert!(b.try_take(1, t0));
        assert!(!b.try_take(1, t0 - Duration::from_secs(5)));
    }
}
