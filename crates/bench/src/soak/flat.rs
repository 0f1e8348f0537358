//! When a series counts as "flat after warm-up", the soak's criterion for RSS and descriptors.
//!
//! The samples before `warmup` are ignored (buffers, connection pools and the allocator's
//! arenas fill up then). Of the rest, the *steady* part:
//!
//! - the **baseline** is the highest value in its first quarter;
//! - the series is flat when its **end** (last value) is at most `baseline * (1 + rel) + abs`,
//! - and the **trend** of its second half, the least-squares slope times that half's span
//!   (how much it grew over that time), is at most `baseline * rel + abs`.
//!
//! The first condition catches growth over the whole run, the second a climb hidden under an
//! early peak (the end still below the peak's bound, but rising). A sawtooth (a buffer grown and given back) passes;
//! a steady leak of more than `rel` of the baseline over the run does not.

/// The bounds of [`judge`]: a relative part and an absolute slack, in the series' unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Growth allowed as a fraction of the baseline.
    pub rel: f64,
    /// Growth allowed on top of that, in the series' unit (KiB of RSS, descriptors).
    pub abs: f64,
}

impl Tolerance {
    /// RSS in KiB: 10 % of the baseline and 2 MiB.
    pub const RSS_KB: Tolerance = Tolerance {
        rel: 0.10,
        abs: 2048.0,
    };
    /// Open descriptors: 4 (a link being re-established, an admin connection), no share.
    pub const FDS: Tolerance = Tolerance { rel: 0.0, abs: 4.0 };

    fn bound(&self, baseline: f64) -> f64 {
        baseline * self.rel + self.abs
    }
}

/// What [`judge`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flatness {
    /// The first value after warm-up.
    pub start: f64,
    /// The highest value of the first quarter after warm-up.
    pub baseline: f64,
    /// The last value.
    pub end: f64,
    /// Growth over the second half by its least-squares slope.
    pub trend: f64,
    /// Whether both conditions hold.
    pub flat: bool,
}

/// The fewest samples after warm-up that [`judge`] decides on.
pub const MIN_STEADY_SAMPLES: usize = 4;

/// Judges `points` (time in seconds, value), in time order; `None` with fewer than
/// [`MIN_STEADY_SAMPLES`] after `warmup_s`.
pub fn judge(points: &[(f64, f64)], warmup_s: f64, tol: Tolerance) -> Option<Flatness> {
    let steady: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warmup_s)
        .collect();
    if steady.len() < MIN_STEADY_SAMPLES {
        return None;
    }
    let start = steady.first()?.1;
    let end = steady.last()?.1;
    let quarter = (steady.len() / 4).max(1);
    let baseline = steady[..quarter]
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let half = &steady[steady.len() / 2..];
    let span = half.last()?.0 - half.first()?.0;
    let trend = slope(half).map_or(0.0, |s| s * span);
    let bound = tol.bound(baseline);
    Some(Flatness {
        start,
        baseline,
        end,
        trend,
        flat: end <= baseline + bound && trend <= bound,
    })
}

/// The least-squares slope of `points`; `None` when they all have the same time.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (t, v)| {
        let dt = t - mean_t;
        (num + dt * (v - mean_v), den + dt * dt)
    });
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=120)
            .map(|i| f64::from(i) * 10.0)
            .map(|t| (t, f(t)))
            .collect()
    }

    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        let pts = series(|t| 3.0 + 0.5 * t);
        let s = slope(&pts).expect("a slope");
        assert!((s - 0.5).abs() < 1e-9, "{s}");
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0)]), None);
    }

    #[test]
    fn a_series_that_settles_after_warm_up_is_flat() {
        // Climbs to 50 MiB during the first two minutes, then wobbles by 1 MiB.
        let pts = series(|t| {
            if t < 120.0 {
                20_000.0 + 250.0 * t
            } else {
                50_000.0 + 1000.0 * (t / 30.0).sin()
            }
        });
        let f = judge(&pts, 120.0, Tolerance::RSS_KB).expect("enough samples");
        assert!(f.flat, "{f:?}");
        assert_eq!(f.start, 50_000.0 + 1000.0 * 4f64.sin());
    }

    #[test]
    fn a_steady_leak_is_not_flat() {
        // 30 % over the run: past the 10 % and 2 MiB of the bound.
        let pts = series(|t| 50_000.0 + 15_000.0 * t / 1200.0);
        let f = judge(&pts, 120.0, Tolerance::RSS_KB).expect("enough samples");
        assert!(!f.flat, "{f:?}");
        assert!(f.trend > 4000.0, "{f:?}");
    }

    #[test]
    fn a_leak_under_an_early_peak_is_caught_by_the_trend() {
        // A 70 MiB peak just after warm-up, then 50 MiB climbing back to 70 MiB: the end is
        // within the peak's bound, the climb of the second half is not.
        let pts = series(|t| {
            if t < 200.0 {
                70_000.0
            } else {
                50_000.0 + (t - 200.0) * 20.0
            }
        });
        let f = judge(&pts, 120.0, Tolerance::RSS_KB).expect("enough samples");
        assert!(f.end <= f.baseline * 1.1 + 2048.0, "{f:?}");
        assert!(!f.flat, "{f:?}");
    }

    #[test]
    fn descriptors_may_move_by_a_few_but_not_climb() {
        let wobble = series(|t| if (t as u64 / 10) % 7 == 0 { 31.0 } else { 30.0 });
        assert!(judge(&wobble, 120.0, Tolerance::FDS).expect("samples").flat);
        let climb = series(|t| 30.0 + (t / 100.0).floor());
        assert!(!judge(&climb, 120.0, Tolerance::FDS).expect("samples").flat);
    }

    #[test]
    fn too_few_samples_after_warm_up_are_not_judged() {
        let pts = series(|_| 1.0);
        assert_eq!(judge(&pts, 1180.0, Tolerance::FDS), None);
        assert!(judge(&pts, 1170.0 - 30.0, Tolerance::FDS).is_some());
    }
}
