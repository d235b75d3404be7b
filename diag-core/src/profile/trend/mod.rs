//! Leak trends: how each allocation site's in-use memory moves over a series of snapshots.
//!
//! A diff of two snapshots cannot tell a leak from a cache that is still warming up, a burst
//! of traffic or sampling noise: each grows between two points. A leak keeps growing. So for
//! every site this module takes its series over three or more snapshots and asks two
//! questions, with exact rank tests that need no model of the noise of a sampled estimate:
//!
//! - **Does it rise, and keep rising?** The Mann-Kendall test of the levels (`S`, rising minus
//!   falling pairs, with its exact one-sided p-value from the distribution of inversions of a
//!   random permutation; ties count zero, which makes it conservative) and the sign test of
//!   the steps between snapshots must both say so: a sampled estimate's noise can be
//!   independent from snapshot to snapshot or a random walk, and each test is fooled by one
//!   of them (see [`classify`](self::classify)).
//! - **How fast, and is it still going?** The Theil-Sen slope: the median of the slopes of
//!   all pairs of points, robust to outliers, over the whole series and over its later half.
//!   A rise whose later half no longer rises consistently (Kendall's tau of the later half
//!   under 0.5) is a plateau (a cache that filled, a pool that reached its size), not a leak.
//!
//! Snapshots are put in time order by their timestamps and slopes are per second; when a
//! profile has no timestamp (dhat JSON) the given order is used and slopes are per snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::diff::{DEFAULT_DIFF_SAMPLE_TYPE, SiteAgg, aggregate, columns, heaviest_stack};
use super::load::sample_type_names;
use super::model::Profile;
use crate::error::{Error, Result};

pub use series::{SeriesClassifier, SeriesTrend, thin};

mod classify;
mod series;
mod stats;

/// The fewest snapshots a trend is computed from.
pub const MIN_TREND_SNAPSHOTS: usize = 3;
/// The most snapshots a trend is computed from (Theil-Sen is quadratic in their number).
pub const MAX_TREND_SNAPSHOTS: usize = 200;
/// The default one-sided significance level of the trend tests.
pub const DEFAULT_TREND_ALPHA: f64 = 0.05;
/// Options for [`trend`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrendOptions {
    /// The bytes column to follow; `inuse_space` when `None`.
    pub sample_type: Option<String>,
    /// One-sided significance level of the trend test, in (0, 1).
    pub alpha: f64,
    /// Crates taken as the application's besides those the snapshots show or record (see
    /// [`SiteRules`](super::sites::SiteRules)).
    pub app_crates: Vec<String>,
}

impl Default for TrendOptions {
    fn default() -> Self {
        Self {
            sample_type: None,
            alpha: DEFAULT_TREND_ALPHA,
            app_crates: Vec::new(),
        }
    }
}

/// What a site's series says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A significant upward trend that is still rising: the leak candidates.
    Growing,
    /// A significant rise that levelled off in the later half (a cache that filled).
    Plateaued,
    /// No significant trend either way.
    Steady,
    /// A significant downward trend.
    Shrinking,
}

impl Verdict {
    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Growing => "growing",
            Verdict::Plateaued => "plateaued",
            Verdict::Steady => "steady",
            Verdict::Shrinking => "shrinking",
        }
    }
}

/// The time axis of the slopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlopeUnit {
    /// Bytes per second: every snapshot had a timestamp.
    Second,
    /// Bytes per snapshot: some snapshot had none, so the given order and even spacing are
    /// assumed.
    Snapshot,
}

/// How heap use moved over a series of snapshots, by site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeapTrend {
    /// Sites whose value changed at least once: growing first, then plateaued, steady and
    /// shrinking; within each, the highest slope first.
    pub sites: Vec<SiteTrend>,
    /// The snapshots in time order.
    pub snapshots: Vec<SnapshotPoint>,
    /// The followed column (`inuse_space`).
    pub sample_type: String,
    /// What the slopes are per.
    pub slope_per: SlopeUnit,
    /// The significance level used.
    pub alpha: f64,
    /// The smallest p-value this many snapshots can give: at or above `alpha`, no site can
    /// be called growing or shrinking (take more snapshots).
    pub min_p_value: f64,
}

/// One snapshot of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotPoint {
    /// Its position in the input.
    pub input: usize,
    /// When it was taken, nanoseconds since the Unix epoch (0 = unknown).
    pub time_nanos: i64,
    /// The followed column summed over all sites.
    pub total_bytes: i64,
}

/// One site's series and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SiteTrend {
    /// The site: the innermost application function (as in [`diff`](super::diff())).
    pub function: String,
    /// `function` as tables show it ([`short_name`](super::sites::short_name)).
    #[serde(default)]
    pub short: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Theil-Sen slope over all snapshots, bytes per [`HeapTrend::slope_per`].
    pub slope_bytes: f64,
    /// Theil-Sen slope over the later half of the snapshots.
    pub recent_slope_bytes: f64,
    /// Mann-Kendall `S`: rising pairs minus falling pairs.
    pub kendall_s: i64,
    /// One-sided p-value of a rise: the larger of `p_levels` and `p_steps`, valid whether the
    /// estimate's noise is independent from snapshot to snapshot or a random walk.
    pub p_growing: f64,
    /// One-sided p-value of a fall, the same way.
    pub p_shrinking: f64,
    /// Mann-Kendall's one-sided p-value of rising levels (exact, conservative with ties).
    pub p_levels: f64,
    /// The sign test's one-sided p-value of rising steps between consecutive snapshots
    /// (exact; steps of zero left out).
    pub p_steps: f64,
    /// Whether the later half of the series still rises (Kendall's tau of it >= 0.5): what
    /// tells `growing` from `plateaued`.
    pub still_rising: bool,
    /// Consecutive intervals in which the value rose, of `bytes.len() - 1`.
    pub rose_in: usize,
    /// The value at each snapshot, in time order.
    pub bytes: Vec<i64>,
    /// The matching objects column at each snapshot (empty if the profiles have none).
    pub objects: Vec<i64>,
    /// `last - first` of `bytes`.
    pub delta_bytes: i64,
    /// The stack that grew most between the first and last snapshot, from the site outward.
    pub stack: Vec<String>,
    /// The site's source file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The site's source line, when known (0 = unknown).
    #[serde(default)]
    pub line: u32,
}

/// Follows every allocation site over `profiles` (three or more heap snapshots of one
/// service, in any order) and classifies its series.
///
/// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for fewer than
/// [`MIN_TREND_SNAPSHOTS`] or more than [`MAX_TREND_SNAPSHOTS`] profiles, two profiles with
/// the same timestamp, an `alpha` outside (0, 1), or profiles that lack the column or
/// disagree on its unit.
pub fn trend(profiles: &[&Profile], opts: &TrendOptions) -> Result<HeapTrend> {
    let n = profiles.len();
    if !(MIN_TREND_SNAPSHOTS..=MAX_TREND_SNAPSHOTS).contains(&n) {
        return Err(Error::invalid(format!(
            "a trend needs {MIN_TREND_SNAPSHOTS} to {MAX_TREND_SNAPSHOTS} snapshots, got {n}"
        )));
    }
    if !(opts.alpha > 0.0 && opts.alpha < 1.0) {
        return Err(Error::invalid(format!(
            "the significance level must be between 0 and 1, got {}",
            opts.alpha
        )));
    }
    let ty = opts
        .sample_type
        .as_deref()
        .unwrap_or(DEFAULT_DIFF_SAMPLE_TYPE);
    let (order, times, slope_per) = time_axis(profiles)?;

    let rules = super::sites::SiteRules::for_profiles(profiles.iter().copied())
        .with_app_crates(&opts.app_crates);
    let mut per_snapshot: Vec<BTreeMap<String, SiteAgg>> = Vec::with_capacity(n);
    let mut has_objects = true;
    for &i in &order {
        if profiles[i].sample_index(ty).is_none() {
            return Err(Error::invalid(format!(
                "snapshot {} has no `{ty}` column (is it a CPU profile?); it has [{}]",
                i + 1,
                sample_type_names(profiles[i])
            )));
        }
        let (_, cols) = columns(profiles[order[0]], profiles[i], ty).map_err(|e| {
            Error::invalid(format!(
                "snapshot {} cannot be compared with snapshot {}: {e}",
                i + 1,
                order[0] + 1
            ))
        })?;
        has_objects &= cols.objects.is_some();
        per_snapshot.push(aggregate(profiles[i], cols, &rules));
    }

    let classifier = SeriesClassifier::new(times, opts.alpha)?;
    let names: std::collections::BTreeSet<&String> =
        per_snapshot.iter().flat_map(|m| m.keys()).collect();
    let empty = SiteAgg::default();
    let mut sites = Vec::new();
    for name in names {
        let aggs: Vec<&SiteAgg> = per_snapshot
            .iter()
            .map(|m| m.get(name).unwrap_or(&empty))
            .collect();
        let bytes: Vec<i64> = aggs.iter().map(|a| a.values[0]).collect();
        if bytes.iter().all(|&b| b == bytes[0]) {
            continue;
        }
        let objects = if has_objects {
            aggs.iter().map(|a| a.values[1]).collect()
        } else {
            Vec::new()
        };
        let values: Vec<f64> = bytes.iter().map(|&b| b as f64).collect();
        let c = classifier.classify(&values);
        let (stack, file, line) = heaviest_stack(aggs[0], aggs[n - 1]);
        sites.push(SiteTrend {
            function: name.clone(),
            short: super::sites::short_name(name),
            verdict: c.verdict,
            slope_bytes: c.slope,
            recent_slope_bytes: c.recent_slope,
            kendall_s: c.kendall_s,
            p_growing: c.p_growing,
            p_shrinking: c.p_shrinking,
            p_levels: c.p_levels,
            p_steps: c.p_steps,
            still_rising: c.still_rising,
            rose_in: bytes.windows(2).filter(|w| w[1] > w[0]).count(),
            delta_bytes: bytes[n - 1].saturating_sub(bytes[0]),
            bytes,
            objects,
            stack,
            file,
            line,
        });
    }
    sites.sort_by(|a, b| {
        a.verdict
            .cmp(&b.verdict)
            .then(b.slope_bytes.total_cmp(&a.slope_bytes))
            .then(b.delta_bytes.cmp(&a.delta_bytes))
            .then_with(|| a.function.cmp(&b.function))
    });
    let snapshots = order
        .iter()
        .zip(&per_snapshot)
        .map(|(&i, m)| SnapshotPoint {
            input: i,
            time_nanos: profiles[i].time_nanos,
            total_bytes: m.values().map(|a| a.values[0]).fold(0, i64::saturating_add),
        })
        .collect();
    Ok(HeapTrend {
        sites,
        snapshots,
        sample_type: ty.to_owned(),
        slope_per,
        alpha: opts.alpha,
        min_p_value: classifier.min_p_value(),
    })
}

/// The time order of the profiles and their times on the slope axis: seconds since the first
/// if every profile has a timestamp, else the given order at one unit per snapshot.
fn time_axis(profiles: &[&Profile]) -> Result<(Vec<usize>, Vec<f64>, SlopeUnit)> {
    let mut order: Vec<usize> = (0..profiles.len()).collect();
    if profiles.iter().any(|p| p.time_nanos <= 0) {
        let times = order.iter().map(|&i| i as f64).collect();
        return Ok((order, times, SlopeUnit::Snapshot));
    }
    order.sort_by_key(|&i| profiles[i].time_nanos);
    for w in order.windows(2) {
        if profiles[w[0]].time_nanos == profiles[w[1]].time_nanos {
            return Err(Error::invalid(format!(
                "snapshots {} and {} were taken at the same time (the same snapshot twice?)",
                w[0].min(w[1]) + 1,
                w[0].max(w[1]) + 1
            )));
        }
    }
    let t0 = profiles[order[0]].time_nanos;
    let times = order
        .iter()
        .map(|&i| (profiles[i].time_nanos - t0) as f64 / 1e9)
        .collect();
    Ok((order, times, SlopeUnit::Second))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::profile::testutil::heap_profile;

    fn at(mut p: Profile, secs: i64) -> Profile {
        p.time_nanos = 1_700_000_000_000_000_000 + secs * 1_000_000_000;
        p
    }

    /// Snapshots every 60 s of three sites: a steady leak (+1 MiB a snapshot), a cache that
    /// fills in three steps and then stays full, and a buffer that comes and goes.
    fn series(n: usize) -> Vec<Profile> {
        const MIB: i64 = 1 << 20;
        (0..n)
            .map(|k| {
                let k = k as i64;
                let noise = [300_000, -200_000, 100_000, -300_000, 250_000][k as usize % 5];
                at(
                    heap_profile(&[
                        (&["myapp::leak", "myapp::main"], MIB * (k + 1)),
                        (&["myapp::cache::fill", "myapp::main"], MIB * k.min(3) + 1),
                        (&["myapp::buffers", "myapp::main"], 4 * MIB + noise),
                        (&["myapp::startup", "myapp::main"], 777),
                    ]),
                    60 * k,
                )
            })
            .collect()
    }

    fn run(profiles: &[Profile]) -> HeapTrend {
        let refs: Vec<&Profile> = profiles.iter().collect();
        trend(&refs, &TrendOptions::default()).unwrap()
    }

    #[test]
    fn tells_a_leak_from_a_plateau_and_noise() {
        let t = run(&series(8));
        let by_name = |n: &str| t.sites.iter().find(|s| s.function == n).unwrap();
        let leak = by_name("myapp::leak");
        assert_eq!(leak.verdict, Verdict::Growing);
        assert_eq!(t.sites[0].function, "myapp::leak");
        // +1 MiB a minute, per second.
        assert!((leak.slope_bytes - (1 << 20) as f64 / 60.0).abs() < 1e-6);
        assert_eq!(leak.rose_in, 7);
        assert_eq!(leak.delta_bytes, 7 << 20);
        assert_eq!(leak.kendall_s, 28);
        assert_eq!(leak.stack, ["myapp::leak", "myapp::main"]);
        assert_eq!(by_name("myapp::cache::fill").verdict, Verdict::Plateaued);
        assert_eq!(by_name("myapp::buffers").verdict, Verdict::Steady);
        assert!(t.sites.iter().all(|s| s.function != "myapp::startup"));
        assert_eq!(t.slope_per, SlopeUnit::Second);
        assert_eq!(t.snapshots.len(), 8);
        // Seven steps: the sign test's 2^-7 is the floor.
        assert!((t.min_p_value - 1.0 / 128.0).abs() < 1e-15);
    }

    #[test]
    fn a_two_point_diff_would_call_the_cache_a_leak() {
        // The point of a trend: first against last, the cache grew by 3 MiB like a leak.
        let s = series(8);
        let d = crate::profile::diff(&s[0], &s[7], &Default::default()).unwrap();
        let cache = d
            .sites
            .iter()
            .find(|x| x.function == "myapp::cache::fill")
            .unwrap();
        assert_eq!(cache.delta_bytes, 3 << 20);
    }

    #[test]
    fn order_comes_from_timestamps() {
        let mut s = series(6);
        s.reverse();
        let t = run(&s);
        assert_eq!(t.sites[0].function, "myapp::leak");
        assert_eq!(t.sites[0].verdict, Verdict::Growing);
        let inputs: Vec<usize> = t.snapshots.iter().map(|p| p.input).collect();
        assert_eq!(inputs, [5, 4, 3, 2, 1, 0]);
        // Without timestamps, the given order, per snapshot: now it shrinks.
        for p in &mut s {
            p.time_nanos = 0;
        }
        let t = run(&s);
        assert_eq!(t.slope_per, SlopeUnit::Snapshot);
        let leak = t
            .sites
            .iter()
            .find(|x| x.function == "myapp::leak")
            .unwrap();
        assert_eq!(leak.verdict, Verdict::Shrinking);
        assert!((leak.slope_bytes + (1 << 20) as f64).abs() < 1e-6);
        assert_eq!(t.sites.last().unwrap().function, "myapp::leak");
    }

    #[test]
    fn few_snapshots_cannot_be_significant() {
        let t = run(&series(3));
        assert!(t.min_p_value >= DEFAULT_TREND_ALPHA);
        assert!(t.sites.iter().all(|s| s.verdict == Verdict::Steady));
    }

    #[test]
    fn bad_input_is_refused() {
        let s = series(4);
        let two: Vec<&Profile> = s.iter().take(2).collect();
        let e = trend(&two, &TrendOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("got 2"), "{e}");

        let same: Vec<&Profile> = vec![&s[0], &s[1], &s[1]];
        let e = trend(&same, &TrendOptions::default()).unwrap_err();
        assert!(e.to_string().contains("same time"), "{e}");

        let opts = TrendOptions {
            alpha: 1.5,
            ..Default::default()
        };
        let all: Vec<&Profile> = s.iter().collect();
        assert!(trend(&all, &opts).is_err());

        let cpu = crate::profile::testutil::cpu_profile(&[(&["myapp::a"], 10)]);
        let mixed: Vec<&Profile> = vec![&s[0], &s[1], &cpu];
        let e = trend(&mixed, &TrendOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("snapshot 3 has no `inuse_space`"),
            "{e}"
        );
        let cpu_opts = TrendOptions {
            sample_type: Some("cpu".into()),
            ..Default::default()
        };
        let e = trend(&all, &cpu_opts).unwrap_err();
        assert!(
            e.to_string().starts_with("snapshot 1 has no `cpu` column"),
            "{e}"
        );
        // Same column, other unit: named as a comparison.
        let mut odd = s[2].clone();
        odd.sample_types[3].unit = "count".into();
        let e = trend(&[&s[0], &s[1], &odd], &TrendOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("snapshot 3 cannot be compared with snapshot 1"),
            "{e}"
        );
    }

    #[test]
    fn json_shape() {
        let t = run(&series(6));
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["sites"][0]["function"], "myapp::leak");
        assert_eq!(v["sites"][0]["verdict"], "growing");
        assert_eq!(v["slope_per"], "second");
        assert_eq!(v["sites"][0]["bytes"].as_array().unwrap().len(), 6);
        assert_eq!(v["sites"][0]["p_steps"], 1.0 / 32.0);
        assert!(v["sites"][0]["p_levels"].as_f64().unwrap() < 0.01);
        let back: HeapTrend = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }
}
