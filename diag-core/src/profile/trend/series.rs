//! The trend classifier on bare series: one value per point, no profiles, no names. What
//! [`trend`](super::trend) runs for each site of a series of snapshots, and what the service's
//! leak alarm runs for each stack of its heap history (by stack id, before anything is named).
//!
//! A history holds up to 1440 points and the exact tests cost `O(n^2)` per series (Theil-Sen's
//! pairs; Mann-Kendall's null distribution is built once per length in `O(n^3)`), so a longer
//! series is first thinned evenly to [`MAX_TREND_SNAPSHOTS`] points ([`thin`]), keeping its
//! first and last: the same limit `diag trend` has.

use super::classify::{classify, min_p_value};
use super::stats::{KendallNull, sign_test};
use super::{MAX_TREND_SNAPSHOTS, MIN_TREND_SNAPSHOTS, Verdict};
use crate::error::{Error, Result};

/// The indices of at most `max` (at least 2) of `n` points, evenly spread, the first and the
/// last included, in order.
pub fn thin(n: usize, max: usize) -> Vec<usize> {
    let max = max.max(2);
    if n <= max {
        return (0..n).collect();
    }
    let mut out: Vec<usize> = (0..max)
        .map(|k| {
            ((k as u128 * (n - 1) as u128 + (max as u128 - 1) / 2) / (max - 1) as u128) as usize
        })
        .collect();
    out.dedup();
    out
}

fn check_times(times: &[f64]) -> Result<()> {
    if times
        .windows(2)
        .any(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater))
    {
        return Err(Error::invalid("the points' times must increase"));
    }
    Ok(())
}

/// What one series says: [`classify`]'s result, public.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SeriesTrend {
    /// The verdict.
    pub verdict: Verdict,
    /// Theil-Sen slope over all points, value per time unit.
    pub slope: f64,
    /// Theil-Sen slope over the later half.
    pub recent_slope: f64,
    /// Mann-Kendall `S`.
    pub kendall_s: i64,
    /// One-sided p-value of a rise (the larger of `p_levels` and `p_steps`).
    pub p_growing: f64,
    /// One-sided p-value of a fall.
    pub p_shrinking: f64,
    /// Mann-Kendall's one-sided p-value of rising levels.
    pub p_levels: f64,
    /// The sign test's one-sided p-value of rising steps.
    pub p_steps: f64,
    /// Whether the later half still rises.
    pub still_rising: bool,
}

/// Classifies many series over one time axis: the null distribution of the rank test is built
/// once, for the axis's length.
pub struct SeriesClassifier {
    times: Vec<f64>,
    null: KendallNull,
    alpha: f64,
}

impl std::fmt::Debug for SeriesClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesClassifier")
            .field("points", &self.times.len())
            .field("alpha", &self.alpha)
            .finish()
    }
}

impl SeriesClassifier {
    /// A classifier for series at `times` (increasing; seconds, or any unit the slopes are
    /// then per), at one-sided significance level `alpha`.
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for fewer than
    /// [`MIN_TREND_SNAPSHOTS`] or more than [`MAX_TREND_SNAPSHOTS`] points (thin longer series
    /// with [`thin`]), times that do not increase, or an `alpha` outside (0, 1).
    pub fn new(times: Vec<f64>, alpha: f64) -> Result<Self> {
        let n = times.len();
        if !(MIN_TREND_SNAPSHOTS..=MAX_TREND_SNAPSHOTS).contains(&n) {
            return Err(Error::invalid(format!(
                "a trend needs {MIN_TREND_SNAPSHOTS} to {MAX_TREND_SNAPSHOTS} points, got {n}"
            )));
        }
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::invalid(format!(
                "the significance level must be between 0 and 1, got {alpha}"
            )));
        }
        if times
            .windows(2)
            .any(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater))
        {
            return Err(Error::invalid("the points' times must increase"));
        }
        Ok(Self {
            null: KendallNull::new(n),
            times,
            alpha,
        })
    }

    /// The same classifier over other `times` of the same length (the rank test's null
    /// distribution depends on the length only, and is kept): what a check that runs every
    /// interval over a sliding history uses. Fails as [`new`](Self::new) does, and for another
    /// length.
    pub fn retime(&mut self, times: Vec<f64>) -> Result<()> {
        if times.len() != self.times.len() {
            return Err(Error::invalid(format!(
                "retiming a classifier of {} points with {}",
                self.times.len(),
                times.len()
            )));
        }
        check_times(&times)?;
        self.times = times;
        Ok(())
    }

    /// The significance level.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Points per series.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Always false: a classifier has at least [`MIN_TREND_SNAPSHOTS`] points.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The smallest p-value this many points can give.
    pub fn min_p_value(&self) -> f64 {
        min_p_value(&self.null, self.times.len())
    }

    /// Classifies `values` (one per time; panics if the lengths differ).
    pub fn classify(&self, values: &[f64]) -> SeriesTrend {
        assert_eq!(values.len(), self.times.len(), "one value per point");
        let c = classify(&self.times, values, &self.null, self.alpha);
        SeriesTrend {
            verdict: c.verdict,
            slope: c.slope,
            recent_slope: c.recent,
            kendall_s: c.s,
            p_growing: c.p_growing,
            p_shrinking: c.p_shrinking,
            p_levels: c.p_levels,
            p_steps: c.p_steps,
            still_rising: c.still_rising,
        }
    }

    /// [`classify`](Self::classify) if `values` can be `growing`, else `None` without the
    /// quadratic work: a series whose steps do not lean up (sign test at `alpha`, linear) can
    /// never be. What a leak check over thousands of mostly quiet series runs.
    pub fn growing(&self, values: &[f64]) -> Option<SeriesTrend> {
        let (steps_up, _) = sign_test(values);
        if steps_up >= self.alpha {
            return None;
        }
        let c = self.classify(values);
        (c.verdict == Verdict::Growing).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_spreads_evenly() {
        assert_eq!(thin(5, 200), [0, 1, 2, 3, 4]);
        let t = thin(1440, 200);
        assert_eq!(t.len(), 200);
        assert_eq!((t[0], t[199]), (0, 1439));
        assert!(
            t.windows(2).all(|w| (7..=8).contains(&(w[1] - w[0]))),
            "{t:?}"
        );
        assert_eq!(thin(10, 3), [0, 5, 9]);
        assert_eq!(thin(3, 0), [0, 2]);
    }

    #[test]
    fn the_shortcut_agrees_with_the_full_classification() {
        let times: Vec<f64> = (0..12).map(|k| 60.0 * k as f64).collect();
        let c = SeriesClassifier::new(times, 0.01).unwrap();
        let leak: Vec<f64> = (0..12).map(|k| 1000.0 * k as f64).collect();
        let g = c.growing(&leak).unwrap();
        assert_eq!(g, c.classify(&leak));
        assert!((g.slope - 1000.0 / 60.0).abs() < 1e-9);
        let wander = [5.0, 6.0, 5.0, 7.0, 6.0, 8.0, 7.0, 9.0, 8.0, 10.0, 9.0, 11.0];
        assert_eq!(c.growing(&wander), None);
        assert_ne!(c.classify(&wander).verdict, Verdict::Growing);
        assert!(SeriesClassifier::new(vec![0.0, 1.0], 0.01).is_err());
        assert!(SeriesClassifier::new(vec![0.0, 1.0, 1.0], 0.01).is_err());
        assert!(SeriesClassifier::new(vec![0.0, 1.0, 2.0], 1.0).is_err());
        // Retimed: the same answers as a new classifier over those times.
        let mut r = SeriesClassifier::new((0..12).map(f64::from).collect(), 0.01).unwrap();
        r.retime((0..12).map(|k| 60.0 * k as f64).collect())
            .unwrap();
        assert_eq!(r.classify(&leak), c.classify(&leak));
        assert!(r.retime(vec![0.0, 1.0, 2.0]).is_err());
    }
}
