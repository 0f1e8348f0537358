//! One warning per kind of repeated failure and interval, not one per attempt: a configured
//! peer that keeps refusing this node is redialed for ever, and its refusal must not fill the
//! log.

use std::time::{Duration, Instant};

/// How often the same kind of failure of one dial target is logged at warning level.
pub(super) const REPEAT_WARN_EVERY: Duration = Duration::from_secs(60);

/// Remembers the last warned kind of failure of one target and how many were held back.
#[derive(Debug, Default)]
pub(super) struct RepeatWarning {
    last: Option<(&'static str, Instant)>,
    held_back: u64,
}

impl RepeatWarning {
    /// Whether a failure of `kind` at `now` is to be warned about; if so, how many were held
    /// back since the last warning. A new kind is always warned about.
    pub(super) fn due(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        if let Some((last, at)) = self.last {
            if last == kind && now.saturating_duration_since(at) < REPEAT_WARN_EVERY {
                self.held_back = self.held_back.saturating_add(1);
                return None;
            }
        }
        self.last = Some((kind, now));
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_warned_once_per_interval_with_the_count_held_back() {
        let mut w = RepeatWarning::default();
        let t = Instant::now();
        assert_eq!(w.due("peer-alert", t), Some(0));
        for k in 1..=20 {
            assert_eq!(
                w.due("peer-alert", t + Duration::from_millis(k * 100)),
                None
            );
        }
        assert_eq!(w.due("peer-alert", t + REPEAT_WARN_EVERY), Some(20));
        // Another kind is news: warned at once.
        assert_eq!(w.due("tls-failed", t + REPEAT_WARN_EVERY), Some(0));
    }
}
