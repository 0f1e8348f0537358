//! A token bucket and a rate meter, both driven by the `now` their caller passes: no clock
//! and no I/O, so tests step time by hand.

use std::time::{Duration, Instant};

/// Tokens are kept in billionths, so that refilling by the nanosecond loses nothing.
const SCALE: i128 = 1_000_000_000;

/// A bucket of `rate` tokens per second holding at most one window's worth (its burst).
///
/// A take may leave the bucket in debt (below zero): a packet larger than the burst, when
/// allowed, and traffic that is charged rather than checked. Debt is paid back by the refill
/// before anything else passes, so what passes stays within `burst + rate × elapsed`. It
/// never exceeds the larger of one burst and the take that made it, so charged traffic
/// cannot pile up a debt that stalls senders for longer than one packet's worth.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens × [`SCALE`].
    level: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens per second whose burst is `rate × window` (at least 1).
    pub fn new(rate: u64, window: Duration, now: Instant) -> Self {
        let burst = (i128::from(rate) * window.as_nanos() as i128 / SCALE).max(1);
        let burst = u64::try_from(burst).unwrap_or(u64::MAX);
        TokenBucket {
            rate: rate.max(1),
            burst,
            level: i128::from(burst) * SCALE,
            last: now,
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The most the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos() as i128;
        self.last = self.last.max(now);
        let full = i128::from(self.burst) * SCALE;
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(i128::from(self.rate)))
            .min(full);
    }

    /// Whole tokens held at `now` (negative while in debt).
    pub fn tokens(&mut self, now: Instant) -> i64 {
        self.refill(now);
        i64::try_from(self.level.div_euclid(SCALE)).unwrap_or(i64::MIN)
    }

    /// Whether the bucket is full at `now`: nothing has been taken for a window.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level >= i128::from(self.burst) * SCALE
    }

    /// How long until `n` tokens may be taken: zero if now. A take larger than the burst
    /// waits for a full bucket.
    pub fn wait_for(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        let need = i128::from(n.min(self.burst)) * SCALE;
        if self.level >= need {
            return Duration::ZERO;
        }
        let deficit = need.saturating_sub(self.level);
        let rate = i128::from(self.rate);
        let nanos = deficit.saturating_add(rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes `n` tokens whether or not they are there, never below minus the larger of the
    /// burst and `n`.
    pub fn take(&mut self, n: u64, now: Instant) {
        self.refill(now);
        // The floor only limits this take: a debt already deeper stays as it is.
        let floor = (-i128::from(self.burst.max(n)) * SCALE).min(self.level);
        self.level = self
            .level
            .saturating_sub(i128::from(n).saturating_mul(SCALE))
            .max(floor);
    }
}

/// What passed in the last complete period, as a rate: the "current rate" of a limiter.
#[derive(Debug, Clone)]
pub struct RateMeter {
    period: Duration,
    start: Instant,
    current: u64,
    previous: u64,
    total: u64,
}

impl RateMeter {
    /// A meter over periods of `period` (at least 1 ms), starting at `now`.
    pub fn new(period: Duration, now: Instant) -> Self {
        RateMeter {
            period: period.max(Duration::from_millis(1)),
            start: now,
            current: 0,
            previous: 0,
            total: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.start);
        if since < self.period {
            return;
        }
        // A period with nothing in it between the last add and now counts as zero.
        self.previous = if since < self.period.saturating_mul(2) {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.start = now;
    }

    /// Counts `n` units at `now`.
    pub fn add(&mut self, n: u64, now: Instant) {
        self.roll(now);
        self.current = self.current.saturating_add(n);
        self.total = self.total.saturating_add(n);
    }

    /// Units per second over the last complete period.
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.roll(now);
        let per_sec = u128::from(self.previous) * 1_000_000_000 / self.period.as_nanos().max(1);
        u64::try_from(per_sec).unwrap_or(u64::MAX)
    }

    /// Units counted since the meter started.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_new_bucket_holds_one_window_and_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, Duration::from_millis(500), t0);
        assert_eq!(b.burst(), 500);
        assert_eq!(b.wait_for(500, t0), Duration::ZERO);
        b.take(500, t0);
        assert_eq!(b.tokens(t0), 0);
        // 1000 per second: 100 tokens take 100 ms.
        assert_eq!(b.wait_for(100, t0), 100 * MS);
        assert_eq!(b.tokens(t0 + 100 * MS), 100);
        // Never more than the burst, however long it rests.
        assert_eq!(b.tokens(t0 + Duration::from_secs(60)), 500);
    }

    #[test]
    fn what_passes_never_exceeds_burst_plus_rate_times_elapsed() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10_000, Duration::from_millis(100), t0);
        let (mut now, mut passed) = (t0, 0u64);
        // A sender that always waits exactly as long as the bucket says, 10 s of it.
        while now < t0 + Duration::from_secs(10) {
            now += b.wait_for(300, now);
            b.take(300, now);
            passed += 300;
            let elapsed = now.duration_since(t0).as_secs_f64();
            assert!(passed as f64 <= 1000.0 + 10_000.0 * elapsed + 1.0);
        }
        // And it gets what the rate allows: within one packet of it.
        let expected = 1000.0 + 10_000.0 * now.duration_since(t0).as_secs_f64();
        assert!(
            (passed as f64 - expected).abs() <= 300.0,
            "{passed} vs {expected}"
        );
    }

    #[test]
    fn a_take_larger_than_the_burst_waits_for_a_full_bucket_then_leaves_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, Duration::from_millis(100), t0);
        b.take(50, t0);
        assert_eq!(b.wait_for(250, t0), 50 * MS);
        let t1 = t0 + 50 * MS;
        b.take(250, t1);
        assert_eq!(b.tokens(t1), -150);
        // The debt is paid back before even one token passes.
        assert_eq!(b.wait_for(1, t1), 151 * MS);
    }

    #[test]
    fn debt_never_exceeds_the_largest_single_take() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, Duration::from_millis(100), t0);
        b.take(300, t0);
        assert_eq!(b.tokens(t0), -200);
        b.take(300, t0);
        assert_eq!(b.tokens(t0), -300);
        b.take(10, t0);
        assert_eq!(b.tokens(t0), -300);
        assert!(!b.is_full(t0));
        assert!(b.is_full(t0 + 400 * MS));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(1000, Duration::from_secs(1), t0);
        b.take(1000, t0);
        assert_eq!(b.tokens(t0 - Duration::from_millis(500)), 0);
        assert_eq!(b.tokens(t0 + 10 * MS), 10);
    }

    #[test]
    fn the_meter_reports_the_last_complete_period() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_millis(500), t0);
        m.add(100, t0);
        m.add(150, t0 + 400 * MS);
        assert_eq!(m.rate(t0 + 400 * MS), 0);
        assert_eq!(m.rate(t0 + 600 * MS), 500);
        // A silent period reads as zero.
        assert_eq!(m.rate(t0 + Duration::from_secs(3)), 0);
        assert_eq!(m.total(), 250);
    }
}
