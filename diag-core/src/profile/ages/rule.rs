//! The verdict on one site's ages: the statistical rule.
//!
//! The input is the ages `a_1 <= ... <= a_n` of the site's live sampled blocks at the snapshot
//! and the process uptime `U`. Sampling is Poisson by bytes, so the sampled blocks of bytes
//! allocated at a steady rate since some moment are a Poisson process in time, and their ages
//! are independent and uniform from 0 back to that moment. Bytes that live at most `W` seconds
//! at a steady allocation rate (a time-evicted cache, a FIFO-bounded one, a pool refilled as it
//! drains) have ages uniform on `[0, W]` too: one snapshot cannot tell a leak that began `W`
//! seconds ago from a cache with a `W`-second window. What tells them apart is the uptime: a
//! cache that has run for four of its windows has had three windows' chance to show an older
//! block and showed none. In order, the first that applies:
//!
//! 1. `too few samples`: `n <` [`MIN_AGE_SAMPLES`] (10).
//! 2. `young`: the 90th percentile age is under [`YOUNG_SECS`] (5 s): per-request garbage.
//! 3. `bounded`: the span estimate `S = a_n (n + 1) / n` (the unbiased estimate of the end of
//!    a uniform range from its largest of `n` draws) is at most [`BOUNDED_FRACTION`] (1/4) of
//!    `U`. The window printed is `S`.
//! 4. `old-steady`: the 10th percentile age is at least [`OLD_FRACTION`] (1/2) of `U`: nearly
//!    all of it allocated in the first half of the process's life, and little since (startup
//!    state, a warmed cache that no longer turns over).
//! 5. `leak-like`: the ages spread over `[0, S]` as a steady rate's would: the
//!    Kolmogorov-Smirnov distance `D = max_i max(i/n - a_i/S, a_i/S - (i-1)/n)` to the
//!    uniform is at most the larger of [`KS_CRITICAL`]`/sqrt(n)` (1.63, the 1 % level: under
//!    sampling noise alone a steady leak is called `mixed` about once in a hundred; with `S`
//!    taken from the sample the test is conservative) and [`LEAK_SHAPE_TOLERANCE`] (0.2). The
//!    floor is there because a real leak grows with its traffic, not at a constant rate: the
//!    test alone, whose bound shrinks as `1/sqrt(n)`, called a leak of 357 sampled blocks on a
//!    public file server `mixed` because its load had paused for a fifth of its life. With the
//!    floor, a leak whose rate swings 4:1 between day and night (`D` up to `a/pi` for a rate
//!    `1 + a sin`, `a` up to 0.63) or that paused for up to a fifth of its span stays
//!    `leak-like`, while a site holding a short-lived use beside its growth (over a fifth of
//!    its samples young) or grown in bursts is not. The onset is `S` seconds before the
//!    snapshot, the rate the site's live bytes over `S` (an average over the span).
//! 6. `mixed`: none of these: ages reach far back but unevenly (growth in bursts, or a
//!    leak and a short-lived use at one site).
//!
//! Consequences worth knowing: a leak whose onset is less than `U/4` ago is `bounded` until it
//! has run longer; a cache whose window is over `U/4` is `leak-like` until the process has run
//! four windows. A cache that keeps entries by use (LRU with hits) keeps its hot entries past
//! any window: its ages are not uniform and it is `mixed`, or `old-steady` once warm.

use serde::Serialize;

/// The fewest live sampled blocks a verdict is drawn from.
pub const MIN_AGE_SAMPLES: usize = 10;
/// `young`: the 90th percentile age is under this many seconds.
pub const YOUNG_SECS: f64 = 5.0;
/// `bounded`: the span estimate is at most this share of the uptime.
pub const BOUNDED_FRACTION: f64 = 0.25;
/// `old-steady`: the 10th percentile age is at least this share of the uptime.
pub const OLD_FRACTION: f64 = 0.5;
/// `leak-like`: the Kolmogorov-Smirnov distance to the uniform is at most this over `sqrt(n)`
/// (the 1 % critical value of the asymptotic distribution).
pub const KS_CRITICAL: f64 = 1.63;
/// `leak-like`: a Kolmogorov-Smirnov distance to the uniform up to this is accepted however
/// many samples there are (a leak's rate follows its traffic; see the module docs).
pub const LEAK_SHAPE_TOLERANCE: f64 = 0.2;

/// What one site's ages say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AgeVerdict {
    /// Ages spread evenly from now back to an onset well into the process's life: steady
    /// growth since then.
    #[serde(rename = "leak-like")]
    LeakLike,
    /// Nothing older than a window well below the uptime: a cache or a pool.
    #[serde(rename = "bounded")]
    Bounded,
    /// Nearly all of it seconds old: per-request garbage.
    #[serde(rename = "young")]
    Young,
    /// Allocated long ago and little added since: startup state.
    #[serde(rename = "old-steady")]
    OldSteady,
    /// Reaches far back, unevenly: none of the shapes above.
    #[serde(rename = "mixed")]
    Mixed,
    /// Fewer than [`MIN_AGE_SAMPLES`] live sampled blocks.
    #[serde(rename = "too few samples")]
    TooFewSamples,
}

impl AgeVerdict {
    /// The name in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeVerdict::LeakLike => "leak-like",
            AgeVerdict::Bounded => "bounded",
            AgeVerdict::Young => "young",
            AgeVerdict::OldSteady => "old-steady",
            AgeVerdict::Mixed => "mixed",
            AgeVerdict::TooFewSamples => "too few samples",
        }
    }
}

/// A verdict with the span estimate `S` (seconds) it was drawn with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: AgeVerdict,
    /// `a_n (n + 1) / n`, at most the uptime: the onset's age for `leak-like`, the window for
    /// `bounded`.
    pub span_secs: f64,
}

/// The verdict on `ages` (seconds, sorted ascending) of a process up `uptime` seconds, by the
/// rule in the module docs.
pub fn judge(ages: &[f64], uptime: f64) -> Judgement {
    let n = ages.len();
    let oldest = ages.last().copied().unwrap_or(0.0);
    let span = span_estimate(ages).min(uptime.max(oldest));
    let verdict = if n < MIN_AGE_SAMPLES {
        AgeVerdict::TooFewSamples
    } else if quantile(ages, 0.9) < YOUNG_SECS {
        AgeVerdict::Young
    } else if span <= BOUNDED_FRACTION * uptime {
        AgeVerdict::Bounded
    } else if quantile(ages, 0.1) >= OLD_FRACTION * uptime {
        AgeVerdict::OldSteady
    } else if spread_evenly(ages, span) {
        AgeVerdict::LeakLike
    } else {
        AgeVerdict::Mixed
    };
    Judgement {
        verdict,
        span_secs: span,
    }
}

/// Whether `ages` (seconds, sorted ascending) are consistent with a uniform distribution on
/// `[0, span]`, as the ages of bytes added steadily since `span` seconds ago are: the
/// Kolmogorov-Smirnov distance ([`ks_uniform`]) is at most the larger of
/// [`KS_CRITICAL`]`/sqrt(n)` and [`LEAK_SHAPE_TOLERANCE`]. The `leak-like` test of [`judge`];
/// the leak alarm uses it too.
pub fn spread_evenly(ages: &[f64], span: f64) -> bool {
    let bound = (KS_CRITICAL / (ages.len() as f64).sqrt()).max(LEAK_SHAPE_TOLERANCE);
    !ages.is_empty() && ks_uniform(ages, span) <= bound
}

/// The span estimate `a_n (n + 1) / n` of sorted `ages`: the unbiased estimate of the end of
/// a uniform range from its largest of `n` draws (0 for none).
pub fn span_estimate(ages: &[f64]) -> f64 {
    let n = ages.len();
    ages.last()
        .map_or(0.0, |&oldest| oldest * (n as f64 + 1.0) / n as f64)
}

/// The `q` quantile of sorted `xs` (the order statistic at rank `ceil(q n)`).
fn quantile(xs: &[f64], q: f64) -> f64 {
    let n = xs.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
    xs.get(rank - 1).copied().unwrap_or(0.0)
}

/// The Kolmogorov-Smirnov distance of sorted `xs` from the uniform distribution on `[0, span]`.
pub fn ks_uniform(xs: &[f64], span: f64) -> f64 {
    if xs.is_empty() || span <= 0.0 {
        return 1.0;
    }
    let n = xs.len() as f64;
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = (x / span).clamp(0.0, 1.0);
            ((i as f64 + 1.0) / n - f).max(f - i as f64 / n)
        })
        .fold(0.0, f64::max)
}
