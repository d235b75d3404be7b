//! The statistics behind [`trend`](super::trend): the Mann-Kendall trend test with its exact
//! null distribution, the sign test of the steps, and the Theil-Sen slope.

/// Mann-Kendall `S`: over all pairs `i < j`, +1 if `y[j] > y[i]`, -1 if lower, 0 if equal.
pub(super) fn kendall_s(y: &[f64]) -> i64 {
    let mut s = 0i64;
    for (i, a) in y.iter().enumerate() {
        for b in &y[i + 1..] {
            s += match b.partial_cmp(a) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    s
}

/// The Theil-Sen slope: the median of `(y[j] - y[i]) / (t[j] - t[i])` over all pairs with
/// `t[j] > t[i]` (0 if there is none).
pub(super) fn theil_sen(t: &[f64], y: &[f64]) -> f64 {
    let mut slopes = Vec::with_capacity(t.len() * t.len().saturating_sub(1) / 2);
    for i in 0..t.len() {
        for j in i + 1..t.len() {
            let dt = t[j] - t[i];
            if dt > 0.0 {
                slopes.push((y[j] - y[i]) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    // The median by selection, not a full sort: linear, and what a leak check over thousands
    // of series spends most of its time on.
    let (len, m) = (slopes.len(), slopes.len() / 2);
    let (below, &mut upper, _) = slopes.select_nth_unstable_by(m, f64::total_cmp);
    if len % 2 == 1 {
        return upper;
    }
    let lower = below
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper);
    (lower + upper) / 2.0
}

/// The exact null distribution of Mann-Kendall's `S` for `n` values in random order and no
/// ties: `S = C(n,2) - 2I`, where the inversion count `I` of a random permutation follows the
/// Mahonian distribution, built here one element at a time (inserting element `m` adds 0 to
/// `m - 1` inversions, uniformly).
pub(super) struct KendallNull {
    pairs: i64,
    /// `cdf[k] = P(I <= k)`.
    cdf: Vec<f64>,
}

impl KendallNull {
    pub(super) fn new(n: usize) -> Self {
        let mut pmf = vec![1.0f64];
        for m in 2..=n {
            let len = pmf.len() + m - 1;
            let mut prefix = Vec::with_capacity(pmf.len() + 1);
            prefix.push(0.0);
            let mut acc = 0.0;
            for p in &pmf {
                acc += p;
                prefix.push(acc);
            }
            let next: Vec<f64> = (0..len)
                .map(|k| {
                    let hi = (k + 1).min(pmf.len());
                    let lo = (k + 1).saturating_sub(m);
                    (prefix[hi] - prefix[lo.min(hi)]) / m as f64
                })
                .collect();
            pmf = next;
        }
        let mut acc = 0.0;
        let cdf = pmf
            .iter()
            .map(|p| {
                acc += p;
                acc.min(1.0)
            })
            .collect();
        Self {
            pairs: (n * n.saturating_sub(1) / 2) as i64,
            cdf,
        }
    }

    /// The largest possible `S`.
    pub(super) fn max_s(&self) -> i64 {
        self.pairs
    }

    /// `P(S' >= s)` for `S'` from the null distribution: `P(I <= floor((C - s) / 2))`.
    pub(super) fn p_at_least(&self, s: i64) -> f64 {
        let k = (self.pairs - s).div_euclid(2);
        if k < 0 {
            return 0.0;
        }
        self.cdf
            .get(k as usize)
            .copied()
            .unwrap_or(1.0)
            .clamp(0.0, 1.0)
    }
}

/// The sign test of the steps between consecutive values: one-sided p-values of "the steps
/// lean up" and "lean down", exact from the binomial distribution, steps of zero left out.
/// Under a random walk (a series whose steps are independent with median zero, as a sampled
/// estimate of a cache that turns over slowly is) the rises among the non-zero steps are
/// `Binomial(m, 1/2)`.
pub(super) fn sign_test(y: &[f64]) -> (f64, f64) {
    let (mut up, mut down) = (0usize, 0usize);
    for w in y.windows(2) {
        match w[1].partial_cmp(&w[0]) {
            Some(std::cmp::Ordering::Greater) => up += 1,
            Some(std::cmp::Ordering::Less) => down += 1,
            _ => {}
        }
    }
    (binomial_tail(up + down, up), binomial_tail(up + down, down))
}

/// `P(X >= k)` for `X ~ Binomial(m, 1/2)` (1 when `m` is 0).
pub(super) fn binomial_tail(m: usize, k: usize) -> f64 {
    // pmf(0) = 2^-m stays a normal f64 for every m a trend allows (<= 199 steps).
    let mut pmf = 0.5f64.powi(m as i32);
    let mut tail = 0.0;
    for j in 0..=m {
        if j >= k {
            tail += pmf;
        }
        pmf *= (m - j) as f64 / (j + 1) as f64;
    }
    tail.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::MAX_TREND_SNAPSHOTS;

    #[test]
    fn mahonian_null_matches_enumeration() {
        // n = 4: the 24 permutations have 1, 3, 5, 6, 5, 3, 1 of 0..=6 inversions.
        let null = KendallNull::new(4);
        let counts = [1.0, 3.0, 5.0, 6.0, 5.0, 3.0, 1.0];
        let mut acc = 0.0;
        for (k, c) in counts.iter().enumerate() {
            acc += c / 24.0;
            assert!((null.cdf[k] - acc).abs() < 1e-12, "k={k}");
        }
        assert!((null.p_at_least(6) - 1.0 / 24.0).abs() < 1e-12);
        assert!((null.p_at_least(4) - 4.0 / 24.0).abs() < 1e-12);
        assert!((null.p_at_least(-6) - 1.0).abs() < 1e-12);
        // A tie makes S odd: P(S' >= 5) = P(S' = 6) without ties.
        assert!((null.p_at_least(5) - 1.0 / 24.0).abs() < 1e-12);
        // n = 7 (Mahonian row 1, 6, 20, 49, 98, 169, ...): P(I <= 3) = 76 / 5040.
        let null = KendallNull::new(7);
        assert!((null.p_at_least(21 - 6) - 76.0 / 5040.0).abs() < 1e-12);
        // The distribution sums to one for the largest n allowed.
        let big = KendallNull::new(MAX_TREND_SNAPSHOTS);
        assert!((big.cdf.last().unwrap() - 1.0).abs() < 1e-9);
        assert!((big.p_at_least(0) - 0.5).abs() < 0.01);
    }

    #[test]
    fn sign_test_is_the_binomial_tail_of_the_steps() {
        assert_eq!(binomial_tail(0, 0), 1.0);
        assert!((binomial_tail(5, 5) - 1.0 / 32.0).abs() < 1e-15);
        assert!((binomial_tail(5, 4) - 6.0 / 32.0).abs() < 1e-15);
        assert!((binomial_tail(10, 8) - 56.0 / 1024.0).abs() < 1e-15);
        assert!((binomial_tail(199, 0) - 1.0).abs() < 1e-12);
        assert!(binomial_tail(199, 199) > 0.0);
        assert!((binomial_tail(199, 100) - 0.5).abs() < 1e-12);
        // Five rises: 1/32 each way round; zero steps are left out.
        let (up, down) = sign_test(&[1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0]);
        assert!((up - 1.0 / 32.0).abs() < 1e-15 && (down - 1.0).abs() < 1e-15);
        let (up, down) = sign_test(&[3.0, 1.0, 2.0, 0.0]);
        assert!((up - 7.0 / 8.0).abs() < 1e-15 && (down - 4.0 / 8.0).abs() < 1e-15);
        assert_eq!(sign_test(&[2.0, 2.0, 2.0]), (1.0, 1.0));
    }

    #[test]
    fn kendall_and_theil_sen() {
        assert_eq!(kendall_s(&[1.0, 2.0, 3.0, 4.0]), 6);
        assert_eq!(kendall_s(&[4.0, 3.0, 2.0, 1.0]), -6);
        assert_eq!(kendall_s(&[1.0, 1.0, 2.0]), 2);
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(theil_sen(&t, &[0.0, 2.0, 4.0, 6.0, 8.0]), 2.0);
        // One wild point does not move the median slope.
        assert_eq!(theil_sen(&t, &[0.0, 2.0, 400.0, 6.0, 8.0]), 2.0);
        assert_eq!(theil_sen(&[0.0, 0.0], &[1.0, 5.0]), 0.0);
    }
}
