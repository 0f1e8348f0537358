//! When the soak restarts which node: every `every`, the next node of `nodes` in turn, and
//! never so close to the end that the restarted node could not rejoin and settle before the
//! last sample (`settle`, half an interval at most).

use std::time::Duration;

/// One planned restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// Time since the start of the run.
    pub at: Duration,
    /// Index of the node to restart.
    pub node: usize,
}

/// How long before the end no restart starts: half an interval, at most a minute.
pub fn settle(every: Duration) -> Duration {
    (every / 2).min(Duration::from_secs(60))
}

/// The restarts of a run of `duration`: at `every`, `2 * every`, ... cycling through `nodes`;
/// none when `every` is zero or `nodes` is empty.
pub fn plan(duration: Duration, every: Duration, nodes: &[usize]) -> Vec<Restart> {
    if every.is_zero() || nodes.is_empty() {
        return Vec::new();
    }
    let last = duration.saturating_sub(settle(every));
    (1u32..)
        .map_while(|k| every.checked_mul(k).filter(|at| *at <= last))
        .zip(nodes.iter().cycle())
        .map(|(at, &node)| Restart { at, node })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn restarts_cycle_through_the_nodes_at_each_interval() {
        let p = plan(10 * MIN, 3 * MIN, &[3, 4]);
        assert_eq!(
            p,
            vec![
                Restart {
                    at: 3 * MIN,
                    node: 3
                },
                Restart {
                    at: 6 * MIN,
                    node: 4
                },
                Restart {
                    at: 9 * MIN,
                    node: 3
                },
            ]
        );
    }

    #[test]
    fn no_restart_starts_in_the_last_half_interval() {
        // 30 minutes every 3: the one at 30:00 would leave no time to rejoin.
        let p = plan(30 * MIN, 3 * MIN, &[4]);
        assert_eq!(p.len(), 9);
        assert_eq!(p.last().map(|r| r.at), Some(27 * MIN));
        // At most a minute is kept back, however long the interval.
        assert_eq!(settle(10 * MIN), MIN);
        assert_eq!(plan(21 * MIN, 10 * MIN, &[4]).len(), 2);
    }

    #[test]
    fn no_interval_or_no_node_means_no_restart() {
        assert!(plan(30 * MIN, Duration::ZERO, &[4]).is_empty());
        assert!(plan(30 * MIN, 3 * MIN, &[]).is_empty());
        assert!(plan(2 * MIN, 3 * MIN, &[4]).is_empty());
    }
}
