//! Profiles split by the value of a pprof label (`route`, `task`, `thread`): which endpoint,
//! task or thread holds the memory, grew, or burned the CPU.
//!
//! Each value of the label gets the samples that carry it; samples without the label form one
//! group whose value is `None` (shown as `(none)`). Diffs and trends of the groups use the site
//! rules of the whole profiles, so a site is named the same way in every group.
//!
//! The JSON of [`DiffByLabel`] is a contract:
//!
//! ```json
//! {"by": "route", "groups": [{"value": "/audit", "delta_bytes": 1048576,
//!   "before_bytes": 0, "after_bytes": 1048576, "delta_objects": 16, "sites": [...]}]}
//! ```
//!
//! with `groups` sorted by `delta_bytes`, largest growth first, and `sites` as in
//! [`HeapDiff`](super::HeapDiff). More fields may be added.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::diff::{DiffOptions, SiteDelta, columns, default_column, diff};
use super::model::{Profile, Sample};
use super::sites::SiteRules;
use super::trend::{HeapTrend, SiteTrend, TrendOptions, trend};
use crate::error::{Error, Result};

/// How a missing label value is shown in tables.
pub const NO_LABEL_VALUE: &str = "(none)";

/// The value of label `key` on `sample`, if it carries it.
pub fn label<'a>(sample: &'a Sample, key: &str) -> Option<&'a str> {
    sample
        .labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The label keys that occur in `profiles`, in name order.
pub fn label_keys<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> BTreeSet<String> {
    profiles
        .into_iter()
        .flat_map(|p| p.samples.iter())
        .flat_map(|s| s.labels.iter().map(|(k, _)| k.clone()))
        .collect()
}

/// Fails with a message naming the labels the profiles do carry unless some sample of
/// `profiles` carries `key`.
pub fn require_label<'a>(profiles: impl IntoIterator<Item = &'a Profile>, key: &str) -> Result<()> {
    let keys = label_keys(profiles);
    if keys.contains(key) {
        return Ok(());
    }
    let have = if keys.is_empty() {
        "no labels at all".to_owned()
    } else {
        format!(
            "only {}",
            keys.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    Err(Error::invalid(format!(
        "no sample carries the label `{key}`; the profiles have {have}"
    )))
}

/// `profile` split by the value of label `key`: one profile per value (`None`: the samples
/// without it), each with the samples that carry that value and everything else of `profile`.
pub fn split_by_label(profile: &Profile, key: &str) -> BTreeMap<Option<String>, Profile> {
    let mut out = Groups::new();
    for s in &profile.samples {
        let value = label(s, key).map(str::to_owned);
        out.entry(value)
            .or_insert_with(|| empty_like(profile))
            .samples
            .push(s.clone());
    }
    out
}

/// A copy of `profile` in which every sample's stack ends (outermost) with a frame naming its
/// value of label `key` (`[route /audit]`; `[route (none)]` without it), so folded stacks and
/// flamegraphs have one root per value.
pub fn label_rooted(profile: &Profile, key: &str) -> Profile {
    let mut p = profile.clone();
    for s in &mut p.samples {
        let value = label(s, key).unwrap_or(NO_LABEL_VALUE).to_owned();
        s.stack
            .push(super::model::Frame::named(format!("[{key} {value}]")));
    }
    p
}

/// `profile` without its samples.
fn empty_like(profile: &Profile) -> Profile {
    Profile {
        samples: Vec::new(),
        ..profile.clone()
    }
}

/// One value of the label in a [`DiffByLabel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupDiff {
    /// The label's value; `None` for the samples without the label.
    pub value: Option<String>,
    /// Change of the compared column in this group.
    pub delta_bytes: i64,
    /// The compared column in this group, before.
    pub before_bytes: i64,
    /// ... and after.
    pub after_bytes: i64,
    /// Change of the objects column in this group.
    pub delta_objects: i64,
    /// Objects before.
    pub before_objects: i64,
    /// Objects after.
    pub after_objects: i64,
    /// This group's share of the growth of all groups that grew, in percent.
    pub share: f64,
    /// The group's sites, largest growth first (as in [`HeapDiff::sites`](super::HeapDiff)).
    pub sites: Vec<SiteDelta>,
}

/// Growth between two snapshots by the value of a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DiffByLabel {
    /// The label (`route`).
    pub by: String,
    /// The compared column (`inuse_space`).
    pub sample_type: String,
    /// Its unit.
    pub unit: String,
    /// One group per value seen in either profile, largest `delta_bytes` first.
    pub groups: Vec<GroupDiff>,
}

/// A profile split by a label's values.
type Groups = BTreeMap<Option<String>, Profile>;

/// The groups' values seen in any of `profiles`, each profile split by them.
fn split_all(profiles: &[&Profile], key: &str) -> (Vec<Option<String>>, Vec<Groups>) {
    let split: Vec<_> = profiles.iter().map(|p| split_by_label(p, key)).collect();
    let values: BTreeSet<Option<String>> = split.iter().flat_map(|m| m.keys().cloned()).collect();
    (values.into_iter().collect(), split)
}

/// The application crates the whole profiles give evidence of, so every group names its sites
/// the way the whole profile would.
fn whole_app_crates(profiles: &[&Profile], extra: &[String]) -> Vec<String> {
    SiteRules::for_profiles(profiles.iter().copied())
        .with_app_crates(extra)
        .app_crates()
        .map(str::to_owned)
        .collect()
}

/// Compares two heap profiles per value of label `key`: each group's growth and its sites.
///
/// Fails like [`diff`](super::diff()) does, and with
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if neither profile carries the
/// label.
pub fn diff_by_label(
    before: &Profile,
    after: &Profile,
    key: &str,
    opts: &DiffOptions,
) -> Result<DiffByLabel> {
    require_label([before, after], key)?;
    // The column, checked on the whole profiles (as `diff` would), whatever the groups hold.
    let ty = match &opts.sample_type {
        Some(ty) => ty.clone(),
        None => default_column(before, after).to_owned(),
    };
    let (columns, _) = columns(before, after, &ty)?;
    let unit = before.sample_types[columns.bytes].unit.clone();
    let mut opts = opts.clone();
    opts.sample_type = Some(ty.clone());
    opts.app_crates = whole_app_crates(&[before, after], &opts.app_crates);
    let (values, split) = split_all(&[before, after], key);
    let mut groups = Vec::with_capacity(values.len());
    for value in values {
        let b = split[0]
            .get(&value)
            .cloned()
            .unwrap_or_else(|| empty_like(before));
        let a = split[1]
            .get(&value)
            .cloned()
            .unwrap_or_else(|| empty_like(after));
        let d = diff(&b, &a, &opts)?;
        groups.push(GroupDiff {
            value,
            delta_bytes: d.totals.delta_bytes,
            before_bytes: d.totals.before_bytes,
            after_bytes: d.totals.after_bytes,
            delta_objects: d.totals.delta_objects,
            before_objects: d.totals.before_objects,
            after_objects: d.totals.after_objects,
            share: 0.0,
            sites: d.sites,
        });
    }
    let growth: i64 = groups
        .iter()
        .map(|g| g.delta_bytes.max(0))
        .fold(0, i64::saturating_add);
    if growth > 0 {
        for g in &mut groups {
            g.share = g.delta_bytes.max(0) as f64 * 100.0 / growth as f64;
        }
    }
    groups.sort_by(|x, y| {
        y.delta_bytes
            .cmp(&x.delta_bytes)
            .then_with(|| x.value.cmp(&y.value))
    });
    Ok(DiffByLabel {
        by: key.to_owned(),
        sample_type: ty,
        unit,
        groups,
    })
}

/// One value of the label in a [`TrendByLabel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupTrend {
    /// The label's value; `None` for the samples without the label.
    pub value: Option<String>,
    /// `after_bytes - before_bytes`.
    pub delta_bytes: i64,
    /// The followed column in this group at the first snapshot.
    pub before_bytes: i64,
    /// ... and at the last.
    pub after_bytes: i64,
    /// Change of the objects column between the first and last snapshot.
    pub delta_objects: i64,
    /// The group's total at each snapshot, in time order.
    pub bytes: Vec<i64>,
    /// The group's growing sites' summed Theil-Sen slope, bytes per
    /// [`HeapTrend::slope_per`].
    pub growing_slope_bytes: f64,
    /// The group's sites as [`HeapTrend::sites`] orders them: growing first.
    pub sites: Vec<SiteTrend>,
}

/// A trend per value of a label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrendByLabel {
    /// The label (`route`).
    pub by: String,
    /// The trend of the whole profiles (snapshots, slope unit, significance).
    pub whole: HeapTrend,
    /// One group per value, the fastest-growing first (then by `delta_bytes`).
    pub groups: Vec<GroupTrend>,
}

/// The trend of `profiles` per value of label `key`.
///
/// Fails like [`trend`](super::trend()) does, and if no profile carries the label.
pub fn trend_by_label(
    profiles: &[&Profile],
    key: &str,
    opts: &TrendOptions,
) -> Result<TrendByLabel> {
    require_label(profiles.iter().copied(), key)?;
    let whole = trend(profiles, opts)?;
    let mut opts = opts.clone();
    opts.app_crates = whole_app_crates(profiles, &opts.app_crates);
    let (values, split) = split_all(profiles, key);
    let mut groups = Vec::with_capacity(values.len());
    for value in values {
        let group: Vec<Profile> = profiles
            .iter()
            .zip(&split)
            .map(|(p, m)| m.get(&value).cloned().unwrap_or_else(|| empty_like(p)))
            .collect();
        let refs: Vec<&Profile> = group.iter().collect();
        let t = trend(&refs, &opts)?;
        let bytes: Vec<i64> = t.snapshots.iter().map(|s| s.total_bytes).collect();
        let objects = |i: usize| -> i64 { t.sites.iter().filter_map(|s| s.objects.get(i)).sum() };
        let last = bytes.len().saturating_sub(1);
        groups.push(GroupTrend {
            value,
            before_bytes: bytes.first().copied().unwrap_or(0),
            after_bytes: bytes.last().copied().unwrap_or(0),
            delta_bytes: bytes.last().copied().unwrap_or(0) - bytes.first().copied().unwrap_or(0),
            delta_objects: objects(last) - objects(0),
            growing_slope_bytes: t
                .sites
                .iter()
                .filter(|s| s.verdict == super::Verdict::Growing)
                .map(|s| s.slope_bytes)
                .sum(),
            bytes,
            sites: t.sites,
        });
    }
    groups.sort_by(|x, y| {
        y.growing_slope_bytes
            .total_cmp(&x.growing_slope_bytes)
            .then(y.delta_bytes.cmp(&x.delta_bytes))
            .then_with(|| x.value.cmp(&y.value))
    });
    Ok(TrendByLabel {
        by: key.to_owned(),
        whole,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Frame, heap_sample_types};

    fn sample(function: &str, bytes: i64, labels: &[(&str, &str)]) -> Sample {
        Sample {
            stack: vec![Frame::named(function), Frame::named("app::main")],
            values: vec![bytes / 100, bytes, bytes / 100, bytes],
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn heap(samples: Vec<Sample>, time_nanos: i64) -> Profile {
        Profile {
            sample_types: heap_sample_types(),
            samples,
            time_nanos,
            ..Profile::default()
        }
    }

    #[test]
    fn diff_groups_by_route_with_none_and_order() {
        let before = heap(
            vec![
                sample("app::audit", 1000, &[("route", "/audit")]),
                sample("app::bg", 500, &[]),
            ],
            1,
        );
        let after = heap(
            vec![
                sample("app::audit", 9000, &[("route", "/audit")]),
                sample("app::users", 3000, &[("route", "/users")]),
                sample("app::bg", 700, &[]),
            ],
            2,
        );
        let d = diff_by_label(&before, &after, "route", &DiffOptions::default()).unwrap();
        let values: Vec<_> = d.groups.iter().map(|g| g.value.as_deref()).collect();
        assert_eq!(values, [Some("/audit"), Some("/users"), None]);
        assert_eq!(d.groups[0].delta_bytes, 8000);
        assert_eq!(d.groups[0].before_bytes, 1000);
        assert_eq!(d.groups[1].sites[0].function, "app::users");
        assert!(d.groups[1].sites[0].new);
        assert_eq!(d.groups[2].delta_bytes, 200);
        let shares: f64 = d.groups.iter().map(|g| g.share).sum();
        assert!((shares - 100.0).abs() < 1e-9);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["by"], "route");
        assert!(json["groups"][2]["value"].is_null());
        assert_eq!(json["groups"][0]["delta_objects"], 80);
    }

    #[test]
    fn label_rooted_gives_one_root_per_value() {
        let p = heap(
            vec![
                sample("app::a", 10, &[("route", "/a")]),
                sample("app::b", 20, &[]),
            ],
            1,
        );
        let lines =
            crate::profile::folded(&label_rooted(&p, "route"), Some("inuse_space")).unwrap();
        assert_eq!(
            lines,
            [
                "[route (none)];app::main;app::b 20",
                "[route /a];app::main;app::a 10"
            ]
        );
    }

    #[test]
    fn a_missing_label_is_a_clear_error() {
        let p = heap(vec![sample("app::a", 10, &[("thread", "main")])], 1);
        let e = diff_by_label(&p, &p, "route", &DiffOptions::default()).unwrap_err();
        assert!(e.to_string().contains("only thread"), "{e}");
    }

    #[test]
    fn trend_groups_put_the_growing_route_first() {
        let profiles: Vec<Profile> = (0..6)
            .map(|i| {
                heap(
                    vec![
                        sample("app::cache", 5000, &[("route", "/cache")]),
                        sample("app::leak", 1000 + 1000 * i, &[("route", "/leak")]),
                    ],
                    (i + 1) * 1_000_000_000,
                )
            })
            .collect();
        let refs: Vec<&Profile> = profiles.iter().collect();
        let t = trend_by_label(&refs, "route", &TrendOptions::default()).unwrap();
        assert_eq!(t.groups[0].value.as_deref(), Some("/leak"));
        assert_eq!(t.groups[0].delta_bytes, 5000);
        assert!(t.groups[0].growing_slope_bytes > 900.0);
        assert_eq!(t.groups[1].delta_bytes, 0);
    }
}
