//! The sampling-noise floor of the leak alarm: is a stack's rise larger than the heap
//! sampler's own noise could make it, with the sites of one check corrected for together?
//!
//! The rank tests of the trend classifier are exact for independent levels and for a random
//! walk, but a sampled estimate can also wander like a random walk that turns back (a cache
//! whose blocks are sampled in and out as it turns over), and a service checks every stack at
//! every point: over a few hundred checks some wander passes them (measured in
//! `leaks/tests.rs`). What bounds that wandering is the sampler itself. A block of `s` bytes
//! is sampled with probability `p = 1 - e^(-s/R)` (`R` the mean bytes between samples) and
//! then counts `s / p`, so an estimate `X` of `B` live bytes has variance
//! `sum s^2 (1 - p) / p <= R * B`, whatever the block sizes (`s / (e^(s/R) - 1) <= R`).
//! Two estimates of a stack whose live bytes did not change, `X1` and `X2`, differ with a
//! variance of at most `R * (B + B)` however many of its blocks were replaced between them
//! (shared blocks only lower it), so
//!
//! `z = (X2 - X1) / sqrt(R * (X1 + X2))`
//!
//! is at most standard normal under "no growth" (for small blocks it is the classic
//! comparison of two Poisson counts, `(N2 - N1) / sqrt(N1 + N2)`). A suspect must pass this
//! test too, at `alpha` divided by the number of stacks the check classified (Bonferroni: one
//! check's chance of any false suspect is at most `alpha`, whatever the stacks' noise). The
//! rank tests keep what the normal approximation cannot promise for a handful of samples.
//!
//! With exact counting (`R` of 1) there is no sampling noise: the floor is the rank tests'.

/// `P(Z >= z)` for a standard normal `Z` (Numerical Recipes' `erfcc`, relative error below
/// 1.2e-7).
pub(crate) fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * (-x * x + poly).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}

/// The one-sided p-value that a stack estimated at `first` and then `last` bytes grew beyond
/// the noise of sampling one block in `sample_bytes` (1 or 0: exact counts, no noise: p is 0
/// for any rise, 1 for none).
pub(crate) fn p_beyond_sampling(first: f64, last: f64, sample_bytes: f64) -> f64 {
    let rise = last - first;
    if rise <= 0.0 {
        return 1.0;
    }
    if sample_bytes <= 1.0 {
        return 0.0;
    }
    normal_upper_tail(rise / (sample_bytes * (first + last)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_tail_matches_known_values() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655_254),
            (1.959_963_985, 0.025),
            (2.326_347_874, 0.01),
            (3.090_232_306, 0.001),
            (4.753_424_309, 1e-6),
            (-1.0, 0.841_344_746),
        ] {
            let got = normal_upper_tail(z);
            assert!((got - p).abs() <= 2e-7 * p, "z = {z}: {got} vs {p}");
        }
    }

    #[test]
    fn a_rise_is_measured_in_sampling_noise() {
        // Small blocks at R = 512 KiB: 0 then 12 sampled blocks is z = 12 / sqrt(12).
        let r = 512.0 * 1024.0;
        let p = p_beyond_sampling(0.0, 12.0 * r, r);
        assert!((p - normal_upper_tail(12f64.sqrt())).abs() < 1e-12, "{p}");
        // The same rise on a stack 100 times larger is noise.
        assert!(p_beyond_sampling(1200.0 * r, 1212.0 * r, r) > 0.3);
        assert_eq!(p_beyond_sampling(5.0, 4.0, r), 1.0);
        assert_eq!(p_beyond_sampling(4.0, 5.0, 1.0), 0.0);
    }
}
