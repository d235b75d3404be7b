//! The verdict on one site's series: growing, plateaued, steady or shrinking.
//!
//! A sampled heap estimate has two kinds of noise, and each breaks one test:
//! - a site whose blocks turn over fast gives values scattered independently around its true
//!   size: the Mann-Kendall test of the levels is exact there;
//! - a site whose blocks turn over slowly (a cache replacing a few entries an interval) gives
//!   a random walk: each interval adds and drops a few sampled blocks, and the estimate
//!   wanders. Mann-Kendall on levels calls such a steady cache rising 15-30 % of the time
//!   (measured below); the steps between snapshots, not the levels, are what is independent.
//!
//! So "growing" must pass both: the levels trend up (Mann-Kendall, exact) **and** the steps
//! lean up (the sign test, exact). The larger of the two p-values is valid under either kind
//! of noise (an intersection-union test). A leak's steps are all rises, so it passes both;
//! the price is that a trend needs six snapshots to be significant at 0.05 (five rises in a
//! row: p = 1/32), and a leak sampled less than about once an interval needs more.

use super::stats::{KendallNull, kendall_s, sign_test, theil_sen};
use super::{MIN_TREND_SNAPSHOTS, Verdict};

/// A significant rise is still going if, within the later half, rising pairs outnumber
/// falling ones by at least three to one (Kendall's tau of the later half >= 0.5); else it
/// has levelled off. Rank-based, so a leak that slows with traffic stays `growing` (a slope
/// ratio called a leak whose rate fell by half a plateau), and measured under Poisson
/// sampling noise in `classification_under_sampling_noise`.
const STILL_RISING_TAU: f64 = 0.5;

/// What one site's series says.
pub(super) struct Classified {
    pub(super) verdict: Verdict,
    pub(super) slope: f64,
    pub(super) recent: f64,
    pub(super) s: i64,
    /// One-sided p of a rise: the larger of the two below.
    pub(super) p_growing: f64,
    /// One-sided p of a fall, the same way.
    pub(super) p_shrinking: f64,
    /// Mann-Kendall's one-sided p of a rise of the levels.
    pub(super) p_levels: f64,
    /// The sign test's one-sided p of rising steps.
    pub(super) p_steps: f64,
    /// Whether the later half still rises (Kendall's tau >= [`STILL_RISING_TAU`]).
    pub(super) still_rising: bool,
}

/// The smallest p-value `n` snapshots can give: the sign test's, 2^-(n-1) (Mann-Kendall's,
/// 1/n!, is smaller).
pub(super) fn min_p_value(null: &KendallNull, n: usize) -> f64 {
    let steps = 0.5f64.powi(n.saturating_sub(1) as i32);
    steps.max(null.p_at_least(null.max_s()))
}

/// Classifies one series of `values` at `times` (at least [`MIN_TREND_SNAPSHOTS`] points).
///
/// - `growing`: the levels rise (Mann-Kendall) and the steps lean up (sign test), both at
///   `alpha`; the Theil-Sen slope is positive; the later half still rises.
/// - `plateaued`: the levels rose (Mann-Kendall at `alpha`, positive slope) but the later
///   half no longer does: a cache that filled, a pool that reached its size.
/// - `shrinking`: the mirror image of growing.
/// - `steady`: anything else, including a rise the steps do not bear out yet (too few
///   snapshots to tell a slow leak from a wandering estimate).
pub(super) fn classify(
    times: &[f64],
    values: &[f64],
    null: &KendallNull,
    alpha: f64,
) -> Classified {
    let n = values.len();
    let s = kendall_s(values);
    let (levels_up, levels_down) = (null.p_at_least(s), null.p_at_least(-s));
    let (steps_up, steps_down) = sign_test(values);
    let (p_growing, p_shrinking) = (levels_up.max(steps_up), levels_down.max(steps_down));
    let slope = theil_sen(times, values);
    let half = n - recent_len(n);
    let recent = theil_sen(&times[half..], &values[half..]);
    let m = (n - half) as f64;
    let still_rising =
        kendall_s(&values[half..]) as f64 / (m * (m - 1.0) / 2.0) >= STILL_RISING_TAU;
    let verdict = if p_growing < alpha && slope > 0.0 && still_rising {
        Verdict::Growing
    } else if levels_up < alpha && slope > 0.0 && !still_rising {
        Verdict::Plateaued
    } else if p_shrinking < alpha && slope < 0.0 {
        Verdict::Shrinking
    } else {
        Verdict::Steady
    };
    Classified {
        verdict,
        slope,
        recent,
        s,
        p_growing,
        p_shrinking,
        p_levels: levels_up,
        p_steps: steps_up,
        still_rising,
    }
}

/// How many of `n` snapshots make the later half: at least three, so it has a slope to speak
/// of, and the middle one when `n` is odd.
fn recent_len(n: usize) -> usize {
    n.div_ceil(2).max(MIN_TREND_SNAPSHOTS).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::DEFAULT_TREND_ALPHA;
    use crate::profile::testutil::Rng;

    /// 64 KiB blocks sampled at the default 512 KiB: each with probability 1 - e^(-1/8),
    /// weighted by its inverse.
    struct Sampling {
        p: f64,
        weight: f64,
    }

    impl Sampling {
        fn new() -> Self {
            let p = 1.0 - (-1.0f64 / 8.0).exp();
            Self {
                p,
                weight: 65536.0 / p,
            }
        }

        fn sampled(&self, rng: &mut Rng) -> bool {
            (rng.next() >> 11) as f64 / (1u64 << 53) as f64 <= self.p
        }
    }

    /// Verdict counts (in `Verdict` order) of 400 series of `n` snapshots a minute apart, and
    /// how many of them a Mann-Kendall test of the levels alone would call growing (rising,
    /// the later half still rising: the rule before the sign test).
    fn tally(
        rng: &mut Rng,
        n: usize,
        series: &mut dyn FnMut(&mut Rng) -> Vec<f64>,
    ) -> ([usize; 4], usize) {
        let times: Vec<f64> = (0..n).map(|k| k as f64 * 60.0).collect();
        let null = KendallNull::new(n);
        let mut counts = [0usize; 4];
        let mut levels_rising = 0;
        for _ in 0..400 {
            let y = series(rng);
            let c = classify(&times, &y, &null, DEFAULT_TREND_ALPHA);
            counts[c.verdict as usize] += 1;
            levels_rising +=
                usize::from(c.p_levels < DEFAULT_TREND_ALPHA && c.slope > 0.0 && c.still_rising);
        }
        (counts, levels_rising)
    }

    /// A leak of `per` blocks an interval in the first half and `later` after.
    fn leak(n: usize, per: usize, later: usize) -> impl FnMut(&mut Rng) -> Vec<f64> {
        let s = Sampling::new();
        move |rng: &mut Rng| {
            let mut total = 0.0;
            (0..n)
                .map(|k| {
                    let blocks = if k <= n / 2 { per } else { later };
                    if k > 0 {
                        total += (0..blocks).filter(|_| s.sampled(rng)).count() as f64 * s.weight;
                    }
                    total
                })
                .collect()
        }
    }

    /// A cache of 512 blocks that fills over `fill` intervals (0: full from the start), then
    /// replaces `turnover` random entries each interval.
    fn cache(n: usize, fill: usize, turnover: usize) -> impl FnMut(&mut Rng) -> Vec<f64> {
        let s = Sampling::new();
        move |rng: &mut Rng| {
            let mut entries: Vec<bool> = Vec::new();
            (0..n)
                .map(|k| {
                    let target = (512 * k.min(fill)).checked_div(fill).unwrap_or(512);
                    while entries.len() < target {
                        entries.push(s.sampled(rng));
                    }
                    if k > fill {
                        for _ in 0..turnover {
                            let i = rng.below(entries.len() as u64) as usize;
                            entries[i] = s.sampled(rng);
                        }
                    }
                    entries.iter().filter(|&&x| x).count() as f64 * s.weight
                })
                .collect()
        }
    }

    /// The verdicts under Poisson sampling noise, by simulation (fixed seed), 400 series each;
    /// in brackets, what the rule before the sign test (levels rising, later half still
    /// rising) called `growing`. Ten snapshots:
    /// - a leak of 30 blocks an interval: `growing` 400; one whose rate falls to 8 blocks in
    ///   the later half: 366 (a slope-ratio rule failed this);
    /// - a cache that fills over three intervals, then turns a third over each: 15 (86);
    /// - a full cache replacing 25 of its 512 entries an interval, its estimate a random walk:
    ///   6 (48), about what `alpha` allows;
    /// - the price: a leak of 5 blocks an interval (sampled 0.6 times an interval): 143 (303).
    ///
    /// Thirty snapshots (half an hour of the default heap history): that leak, 398.
    #[test]
    fn classification_under_sampling_noise() {
        let mut rng = Rng::new(42);
        let growing = Verdict::Growing as usize;
        let (fast, _) = tally(&mut rng, 10, &mut leak(10, 30, 30));
        assert!(fast[growing] >= 388, "{fast:?}");
        let (slowing, _) = tally(&mut rng, 10, &mut leak(10, 30, 8));
        assert!(slowing[growing] >= 340, "{slowing:?}");
        let (filled, before) = tally(&mut rng, 10, &mut cache(10, 3, 512 / 3));
        assert!(filled[growing] <= 30 && before >= 60, "{filled:?} {before}");
        let (wandering, before) = tally(&mut rng, 10, &mut cache(10, 0, 25));
        assert!(
            wandering[growing] <= 20 && before >= 30,
            "{wandering:?} {before}"
        );
        let (sparse, _) = tally(&mut rng, 10, &mut leak(10, 5, 5));
        assert!(sparse[growing] >= 100, "{sparse:?}");
        let (sparse, _) = tally(&mut rng, 30, &mut leak(30, 5, 5));
        assert!(sparse[growing] >= 360, "{sparse:?}");
    }

    #[test]
    fn the_steps_must_rise_too() {
        // Five rises in six points: p = 1/32 both ways; a random walk's lucky climb with one
        // step back has rising levels (Mann-Kendall p < 0.05) but not rising steps.
        let times: Vec<f64> = (0..6).map(f64::from).collect();
        let null = KendallNull::new(6);
        let c = classify(&times, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &null, 0.05);
        assert_eq!(c.verdict, Verdict::Growing);
        assert!((c.p_steps - 1.0 / 32.0).abs() < 1e-15);
        assert!((c.p_growing - 1.0 / 32.0).abs() < 1e-15);
        let c = classify(&times, &[1.0, 4.0, 3.0, 5.0, 6.0, 7.0], &null, 0.05);
        assert!(c.p_levels < 0.05, "{}", c.p_levels);
        assert!((c.p_steps - 6.0 / 32.0).abs() < 1e-15);
        assert_eq!(c.verdict, Verdict::Steady);
        assert!((min_p_value(&null, 6) - 1.0 / 32.0).abs() < 1e-15);
        assert!(min_p_value(&KendallNull::new(5), 5) >= 0.05);
    }
}
