//! The trend test's numbers for people: p-values as they are read (`= 0.042`, `< 0.001`),
//! how many snapshots a significance level needs, and the sites the levels test calls rising
//! that the steps do not bear out yet. `diag trend`, `diag report` and `diag demo` use them.

use diag_core::profile::{self, SiteTrend};

/// A p-value as people read it: `= 0.042`, or `< 0.001` when smaller.
pub(crate) fn p_value(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".to_owned()
    } else {
        format!("= {p:.3}")
    }
}

/// A site the levels test calls rising, still rising in the later half, that the steps do
/// not bear out (yet): `steady`, but worth more snapshots.
pub(crate) fn rising_undecided(s: &SiteTrend, alpha: f64) -> bool {
    s.p_levels < alpha && s.slope_bytes > 0.0 && s.still_rising && s.p_steps >= alpha
}

/// The fewest snapshots whose smallest possible p-value (`2^-(n-1)`) is under `alpha`.
pub(crate) fn snapshots_needed(alpha: f64) -> usize {
    // The sign test of n - 1 steps can reach 2^-(n-1) at best (Mann-Kendall's 1/n! is lower).
    let mut n = profile::MIN_TREND_SNAPSHOTS;
    while 0.5f64.powi(n as i32 - 1) >= alpha && n < profile::MAX_TREND_SNAPSHOTS {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_and_snapshot_counts() {
        // 1/3! = 0.167, 1/4! = 0.042.
        assert_eq!(snapshots_needed(0.05), 6);
        assert_eq!(snapshots_needed(0.2), 4);
        assert_eq!(snapshots_needed(0.001), 11);
        assert_eq!(p_value(0.0421), "= 0.042");
        assert_eq!(p_value(0.0002), "< 0.001");
    }
}
