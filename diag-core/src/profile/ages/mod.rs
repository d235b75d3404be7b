//! The age of live heap bytes, by site, from one snapshot: is this memory a leak, and since
//! when?
//!
//! Every sampled block carries its allocation time, so a live heap profile from diag splits
//! each stack's in-use values by an [`AGE_LABEL`] bucket ([`AGE_BUCKETS`]) and lists, in the
//! numeric label [`AGE_SECS_LABEL`], the age of each live sampled block of the sample. Bytes
//! that leak at a steady rate since some moment have ages spread evenly from zero back to that
//! moment; a bounded cache's are never older than its eviction window; per-request garbage is
//! seconds old; startup state is as old as the process. [`ages`] reads a profile's ages back
//! by site (the same site rules as [`diff`](super::diff())) and gives each site a [`AgeVerdict`]
//! by the rule in [`rule`](self::rule). The JSON form of [`SiteAges`] is a contract:
//!
//! ```json
//! {"site": "myapp::cache::fill", "short": "myapp::cache::fill", "live_bytes": 25165824,
//!  "median_age_secs": 31.0, "oldest_age_secs": 59.0, "share_older_than_600s": 0.0,
//!  "verdict": "leak-like", "onset_unix_secs": 1796000000.0, "rate_bytes_per_sec": 409600.0,
//!  "samples": 48, ...}
//! ```
//!
//! `onset_unix_secs` and `rate_bytes_per_sec` are null unless the verdict is `leak-like`. More
//! fields may be added.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::Profile;
use super::sites::{SiteRules, UNKNOWN_SITE, short_name};
use crate::error::{Error, Result};

pub use crate::names::{AGE_LABEL, AGE_SECS_LABEL};
pub use rule::{
    AgeVerdict, BOUNDED_FRACTION, KS_CRITICAL, LEAK_SHAPE_TOLERANCE, MIN_AGE_SAMPLES, OLD_FRACTION,
    YOUNG_SECS,
};

pub mod rule;
#[cfg(test)]
mod tests;

/// The age buckets of [`AGE_LABEL`], youngest first: each name with the age (milliseconds)
/// its bucket ends before. Log-spaced, fixed, one spelling: `<1s`, `1-10s`, `10s-1m`,
/// `1-10m`, `10m-1h`, `1-6h`, `6h-1d`, `>1d`.
pub const AGE_BUCKETS: [(&str, u64); 8] = [
    ("<1s", 1_000),
    ("1-10s", 10_000),
    ("10s-1m", 60_000),
    ("1-10m", 600_000),
    ("10m-1h", 3_600_000),
    ("1-6h", 21_600_000),
    ("6h-1d", 86_400_000),
    (">1d", u64::MAX),
];

/// The index in [`AGE_BUCKETS`] of an age in milliseconds.
pub fn age_bucket(age_millis: u64) -> usize {
    AGE_BUCKETS
        .iter()
        .position(|&(_, end)| age_millis < end)
        .unwrap_or(AGE_BUCKETS.len() - 1)
}

/// The comment key of a live heap profile's process uptime at the snapshot, in seconds
/// (`uptime_secs=5400.3`).
pub const UPTIME_COMMENT: &str = "uptime_secs";

/// Options for [`ages`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AgesOptions {
    /// Crates taken as the application's besides those the profile shows or records (see
    /// [`SiteRules`]).
    pub app_crates: Vec<String>,
}

/// The ages of one site's live bytes, and what they say.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SiteAges {
    /// The site's function (see [`sites`](super::sites)).
    pub site: String,
    /// Its name as tables show it.
    pub short: String,
    /// Its live bytes (the `inuse_space` estimate).
    pub live_bytes: i64,
    /// The median age of its live bytes, seconds.
    pub median_age_secs: f64,
    /// The age of its oldest live sampled block, seconds.
    pub oldest_age_secs: f64,
    /// The share (0-1) of its live bytes older than ten minutes.
    pub share_older_than_600s: f64,
    /// The verdict (see [`rule`](self::rule)).
    pub verdict: AgeVerdict,
    /// `leak-like` only: the estimated start of the growth, seconds since the Unix epoch.
    pub onset_unix_secs: Option<f64>,
    /// `leak-like` only: the implied growth rate, live bytes over the time since the onset.
    pub rate_bytes_per_sec: Option<f64>,
    /// Live sampled blocks the ages come from.
    pub samples: usize,
    /// `bounded` only: the estimated window, seconds (nothing lives longer).
    pub window_secs: Option<f64>,
    /// Its live bytes by [`AGE_BUCKETS`] bucket, youngest first.
    pub bucket_bytes: [i64; 8],
}

/// The ages of a profile's live bytes, by site.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Ages {
    /// Sites with live bytes, most live bytes first.
    pub sites: Vec<SiteAges>,
    /// The process uptime at the snapshot, seconds (from the profile's comment; failing it,
    /// the oldest age seen).
    pub uptime_secs: f64,
    /// When the snapshot was taken, seconds since the Unix epoch (0 if unknown).
    pub time_unix_secs: f64,
}

/// One site's live sampled blocks: (age seconds, bytes it stands for).
#[derive(Default)]
struct SiteBlocks {
    live_bytes: i64,
    blocks: Vec<(f64, f64)>,
    bucket_bytes: [i64; 8],
}

/// The ages of `profile`'s live bytes by site, each with its verdict.
///
/// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if the profile has
/// no `inuse_space` column or no [`AGE_SECS_LABEL`] (not a live heap profile from a diag with
/// ages: a Go profile, a delta, a history point recorded without them).
pub fn ages(profile: &Profile, opts: &AgesOptions) -> Result<Ages> {
    let col = profile.sample_index("inuse_space").ok_or_else(|| {
        Error::invalid("no `inuse_space` column: `diag ages` reads a live heap profile")
    })?;
    let has_ages = profile
        .samples
        .iter()
        .any(|s| s.labels.iter().any(|(k, _)| k == AGE_SECS_LABEL));
    if !has_ages {
        return Err(Error::invalid(format!(
            "no `{AGE_SECS_LABEL}` labels: the profile does not record the ages of its live \
             blocks (live heap profiles and heap history points of a diag that stamps \
             allocation times have them; delta profiles and other profilers' profiles do not, \
             nor history points older than the ages the history keeps)"
        )));
    }
    let rules = SiteRules::for_profile(profile).with_app_crates(&opts.app_crates);
    let mut sites: BTreeMap<String, SiteBlocks> = BTreeMap::new();
    let mut oldest_seen = 0.0f64;
    for s in &profile.samples {
        let bytes = s.values.get(col).copied().unwrap_or(0);
        let ages: Vec<f64> = s
            .labels
            .iter()
            .filter(|(k, _)| k == AGE_SECS_LABEL)
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .filter(|a| a.is_finite() && *a >= 0.0)
            .collect();
        if bytes <= 0 && ages.is_empty() {
            continue;
        }
        let name = rules
            .site(&s.stack)
            .map_or_else(|| UNKNOWN_SITE.to_owned(), |site| site.name);
        let site = sites.entry(name).or_default();
        site.live_bytes = site.live_bytes.saturating_add(bytes);
        let per_block = if ages.is_empty() {
            0.0
        } else {
            bytes.max(0) as f64 / ages.len() as f64
        };
        for &a in &ages {
            oldest_seen = oldest_seen.max(a);
            site.blocks.push((a, per_block));
        }
        // The sample's bucket as the service named it (its ages are rounded to seconds).
        let bucket = s
            .labels
            .iter()
            .find(|(k, _)| k == AGE_LABEL)
            .and_then(|(_, v)| AGE_BUCKETS.iter().position(|(name, _)| name == v));
        if let Some(b) = bucket {
            site.bucket_bytes[b] = site.bucket_bytes[b].saturating_add(bytes);
        }
    }
    let uptime_secs = profile
        .comment_value(UPTIME_COMMENT)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|u| u.is_finite() && *u > 0.0)
        .unwrap_or(oldest_seen)
        .max(oldest_seen);
    let time_unix_secs = profile.time_nanos as f64 / 1e9;
    let mut out: Vec<SiteAges> = sites
        .into_iter()
        .filter(|(_, b)| b.live_bytes > 0)
        .map(|(name, b)| site_ages(name, b, uptime_secs, time_unix_secs))
        .collect();
    out.sort_by(|a, b| {
        b.live_bytes
            .cmp(&a.live_bytes)
            .then_with(|| a.site.cmp(&b.site))
    });
    Ok(Ages {
        sites: out,
        uptime_secs,
        time_unix_secs,
    })
}

fn site_ages(name: String, mut b: SiteBlocks, uptime: f64, now_unix: f64) -> SiteAges {
    b.blocks.sort_by(|x, y| x.0.total_cmp(&y.0));
    let ages: Vec<f64> = b.blocks.iter().map(|&(a, _)| a).collect();
    let total: f64 = b.blocks.iter().map(|&(_, w)| w).sum();
    let median = weighted_quantile(&b.blocks, total, 0.5);
    let older: f64 = b
        .blocks
        .iter()
        .filter(|&&(a, _)| a > 600.0)
        .map(|&(_, w)| w)
        .sum();
    let found = rule::judge(&ages, uptime);
    let leak = found.verdict == AgeVerdict::LeakLike;
    SiteAges {
        short: short_name(&name),
        site: name,
        live_bytes: b.live_bytes,
        median_age_secs: median,
        oldest_age_secs: ages.last().copied().unwrap_or(0.0),
        // (Tested on `older`: an empty float sum is -0.0.)
        share_older_than_600s: if total > 0.0 && older > 0.0 {
            older / total
        } else {
            0.0
        },
        verdict: found.verdict,
        onset_unix_secs: (leak && now_unix > 0.0).then_some(now_unix - found.span_secs),
        rate_bytes_per_sec: leak.then(|| b.live_bytes as f64 / found.span_secs.max(1.0)),
        samples: ages.len(),
        window_secs: (found.verdict == AgeVerdict::Bounded).then_some(found.span_secs),
        bucket_bytes: b.bucket_bytes,
    }
}

/// The `q` quantile of `blocks` (sorted by age) weighted by bytes; 0 for none.
fn weighted_quantile(blocks: &[(f64, f64)], total: f64, q: f64) -> f64 {
    if total <= 0.0 {
        // No weights: the unweighted quantile.
        return blocks
            .get(((blocks.len() as f64 * q) as usize).min(blocks.len().saturating_sub(1)))
            .map_or(0.0, |b| b.0);
    }
    let mut seen = 0.0;
    for &(a, w) in blocks {
        seen += w;
        if seen >= total * q {
            return a;
        }
    }
    blocks.last().map_or(0.0, |b| b.0)
}
