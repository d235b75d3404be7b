//! Benchmarks.

pub mod floor;
pub mod workers;
pub mod workloads;

/// The environment variable `name` as a number, or `default` if unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (the upper one for an even count). `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The median of `v` with a distribution-free 95 % confidence interval: `(low, median, high)`,
/// the interval's ends being order statistics of `v` (the binomial bound, normal
/// approximation). `v` must not be empty.
pub fn median_ci(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let half = 1.96 * (n as f64).sqrt() / 2.0;
    let lo = ((n as f64) / 2.0 - half).floor().max(0.0) as usize;
    let hi = (((n as f64) / 2.0 + half).ceil() as usize).min(n - 1);
    (s[lo], s[n / 2], s[hi])
}

/// `0..N` in a random order (Fisher-Yates on a xorshift state `rng`), for arms that should
/// not always follow the same one: a phase can leave the heap, the caches or the kernel in a
/// state that speeds up or slows down the next.
pub fn shuffled<const N: usize>(rng: &mut u64) -> [usize; N] {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    for i in (1..N).rev() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        order.swap(i, (*rng % (i as u64 + 1)) as usize);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_ci_brackets_the_median() {
        let v: Vec<f64> = (0..101).map(f64::from).collect();
        let (lo, m, hi) = median_ci(&v);
        assert_eq!(m, 50.0);
        assert!(lo < m && m < hi, "{lo} {m} {hi}");
        assert!((hi - lo) < 30.0, "{lo} {hi}");
        assert_eq!(median_ci(&[3.0]), (3.0, 3.0, 3.0));
    }

    #[test]
    fn shuffled_is_a_permutation_that_varies() {
        let mut rng = 1;
        let a: [usize; 5] = shuffled(&mut rng);
        let mut sorted = a;
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3, 4]);
        let orders: std::collections::HashSet<[usize; 5]> =
            (0..50).map(|_| shuffled(&mut rng)).collect();
        assert!(orders.len() > 10, "{} distinct orders", orders.len());
    }
}
