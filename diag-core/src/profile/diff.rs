//! Heap growth between two snapshots, by site.
//!
//! Samples are attributed to their site (see [`sites`](super::sites)) and matched between the
//! two profiles by function name, never by address, so two runs of the same binary diff
//! cleanly. The JSON form of [`HeapDiff`] is a contract:
//!
//! ```json
//! {"sites": [{"function": "myapp::cache::fill", "delta_bytes": 1048576, "before_bytes": 0,
//!             "after_bytes": 1048576, "delta_objects": 16, "stack": ["myapp::cache::fill",
//!             "myapp::main"], ...}], ...}
//! ```
//!
//! with `sites` sorted by `delta_bytes`, largest growth first. More fields may be added.
//!
//! Any column can be compared (`alloc_space`, or `cpu` of two CPU profiles, as
//! `go tool pprof -diff_base` does): the `*_bytes` fields then hold that column's values, in
//! the unit [`HeapDiff::unit`] names, and the `*_objects` fields its count column's, if it has
//! one ([`HeapDiff::objects_type`]; `inuse_space` pairs with `inuse_objects`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load::sample_type_names;
use super::model::Profile;
use super::sites::{SiteRules, UNKNOWN_SITE, short_name};
use crate::error::{Error, Result};

/// The column compared by default.
pub const DEFAULT_DIFF_SAMPLE_TYPE: &str = "inuse_space";

/// Options for [`diff`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DiffOptions {
    /// The column to compare. When `None`: [`DEFAULT_DIFF_SAMPLE_TYPE`] if both profiles have
    /// it, else the default column of both if they agree on it (`cpu` for two CPU profiles).
    /// Its objects column is found by name (`alloc_space` -> `alloc_objects`).
    pub sample_type: Option<String>,
    /// Crates taken as the application's besides those the profiles show or record (see
    /// [`SiteRules`]): `--app-crates`, `DIAG_APP_CRATES`.
    pub app_crates: Vec<String>,
}

/// How the heap changed between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeapDiff {
    /// Sites whose in-use bytes or objects changed, largest `delta_bytes` first. Sites that did
    /// not change are omitted, so `diff(a, a)` has none.
    pub sites: Vec<SiteDelta>,
    /// Sums over all sites.
    pub totals: DiffTotals,
    /// The compared column (`inuse_space`).
    pub sample_type: String,
    /// Its unit (`bytes`; `nanoseconds` for `cpu`): what the `*_bytes` fields hold.
    pub unit: String,
    /// The count column paired with it (`inuse_objects`), whose values the `*_objects` fields
    /// hold; `None` if it has none (they are 0 then).
    pub objects_type: Option<String>,
}

/// The change at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SiteDelta {
    /// The site: the innermost application function of the stacks attributed here (see
    /// [`sites`](super::sites)), its full name; `[no application frame] <function>` for stacks
    /// without one.
    pub function: String,
    /// `function` as tables show it: generic arguments elided, a closure or async body named
    /// by its enclosing function ([`short_name`]).
    #[serde(default)]
    pub short: String,
    /// `after_bytes - before_bytes`.
    pub delta_bytes: i64,
    /// In-use bytes at the site in the first snapshot.
    pub before_bytes: i64,
    /// In-use bytes at the site in the second snapshot.
    pub after_bytes: i64,
    /// `after_objects - before_objects`.
    pub delta_objects: i64,
    /// The site's heaviest-growing stack: function names from the site outward (site first,
    /// then its callers); runtime frames below the site are dropped.
    pub stack: Vec<String>,
    /// In-use objects at the site in the first snapshot.
    pub before_objects: i64,
    /// In-use objects at the site in the second snapshot.
    pub after_objects: i64,
    /// Change of bytes ever allocated at the site (`alloc_space`), 0 if not recorded.
    pub alloc_delta_bytes: i64,
    /// Change of objects ever allocated at the site (`alloc_objects`), 0 if not recorded.
    pub alloc_delta_objects: i64,
    /// `delta_bytes` as a percentage of the total growth (the sum of positive deltas);
    /// negative for a site that shrank.
    pub share: f64,
    /// True if the site has no samples in the first snapshot.
    pub new: bool,
    /// The site's source file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The site's source line, when known (0 = unknown).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: u32,
}

/// Totals of a [`HeapDiff`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DiffTotals {
    /// In-use bytes in the first snapshot.
    pub before_bytes: i64,
    /// In-use bytes in the second snapshot.
    pub after_bytes: i64,
    /// `after_bytes - before_bytes`.
    pub delta_bytes: i64,
    /// The sum of the positive site deltas: what [`SiteDelta::share`] is relative to.
    pub growth_bytes: i64,
    /// In-use objects in the first snapshot.
    pub before_objects: i64,
    /// In-use objects in the second snapshot.
    pub after_objects: i64,
    /// `after_objects - before_objects`.
    pub delta_objects: i64,
    /// Change of bytes ever allocated.
    pub alloc_delta_bytes: i64,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Column indices used from one profile.
#[derive(Clone, Copy)]
pub(super) struct Columns {
    pub(super) bytes: usize,
    pub(super) objects: Option<usize>,
    alloc_bytes: Option<usize>,
    alloc_objects: Option<usize>,
}

/// Values at one site or stack: bytes, objects, alloc bytes, alloc objects.
pub(super) type Values = [i64; 4];

#[derive(Default)]
pub(super) struct SiteAgg {
    pub(super) values: Values,
    /// Per stack (from the site outward): bytes, and the site frame's file and line.
    stacks: BTreeMap<Vec<String>, (i64, Option<String>, u32)>,
}

/// Compares two heap profiles: growth by site from `before` to `after`, largest in-use growth
/// first.
///
/// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if either profile
/// lacks the compared column or the two disagree on its unit (a CPU profile against a heap
/// profile, say).
pub fn diff(before: &Profile, after: &Profile, opts: &DiffOptions) -> Result<HeapDiff> {
    let ty = match opts.sample_type.as_deref() {
        Some(ty) => ty,
        None => default_column(before, after),
    };
    let (cb, ca) = columns(before, after, ty)?;
    let rules = SiteRules::for_profiles([before, after]).with_app_crates(&opts.app_crates);
    let sites_before = aggregate(before, cb, &rules);
    let sites_after = aggregate(after, ca, &rules);

    let mut totals = DiffTotals::default();
    let mut sites = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        sites_before.keys().chain(sites_after.keys()).collect();
    let empty = SiteAgg::default();
    for name in names {
        let b = sites_before.get(name).unwrap_or(&empty);
        let a = sites_after.get(name).unwrap_or(&empty);
        totals.before_bytes = totals.before_bytes.saturating_add(b.values[0]);
        totals.after_bytes = totals.after_bytes.saturating_add(a.values[0]);
        totals.before_objects = totals.before_objects.saturating_add(b.values[1]);
        totals.after_objects = totals.after_objects.saturating_add(a.values[1]);
        let alloc_delta_bytes = a.values[2].saturating_sub(b.values[2]);
        totals.alloc_delta_bytes = totals.alloc_delta_bytes.saturating_add(alloc_delta_bytes);
        let delta_bytes = a.values[0].saturating_sub(b.values[0]);
        let delta_objects = a.values[1].saturating_sub(b.values[1]);
        if delta_bytes == 0 && delta_objects == 0 {
            continue;
        }
        let (stack, file, line) = heaviest_stack(b, a);
        sites.push(SiteDelta {
            function: name.clone(),
            short: short_name(name),
            delta_bytes,
            before_bytes: b.values[0],
            after_bytes: a.values[0],
            delta_objects,
            stack,
            before_objects: b.values[1],
            after_objects: a.values[1],
            alloc_delta_bytes,
            alloc_delta_objects: a.values[3].saturating_sub(b.values[3]),
            share: 0.0,
            new: !sites_before.contains_key(name),
            file,
            line,
        });
    }
    totals.delta_bytes = totals.after_bytes.saturating_sub(totals.before_bytes);
    totals.delta_objects = totals.after_objects.saturating_sub(totals.before_objects);
    totals.growth_bytes = sites
        .iter()
        .map(|s| s.delta_bytes.max(0))
        .fold(0, i64::saturating_add);
    if totals.growth_bytes > 0 {
        for s in &mut sites {
            s.share = s.delta_bytes as f64 * 100.0 / totals.growth_bytes as f64;
        }
    }
    sites.sort_by(|x, y| {
        y.delta_bytes
            .cmp(&x.delta_bytes)
            .then(y.delta_objects.cmp(&x.delta_objects))
            .then_with(|| x.function.cmp(&y.function))
    });
    Ok(HeapDiff {
        sites,
        totals,
        sample_type: ty.to_owned(),
        unit: before.sample_types[cb.bytes].unit.clone(),
        objects_type: cb.objects.map(|i| before.sample_types[i].ty.clone()),
    })
}

/// The column compared when none is asked for: `inuse_space` if both profiles have it, else
/// both profiles' default column if it is the same one (two CPU profiles: `cpu`); failing
/// both, `inuse_space`, which [`columns`] then explains the absence of.
pub(super) fn default_column<'a>(before: &'a Profile, after: &Profile) -> &'a str {
    let has = |p: &Profile| p.sample_index(DEFAULT_DIFF_SAMPLE_TYPE).is_some();
    if has(before) && has(after) {
        return DEFAULT_DIFF_SAMPLE_TYPE;
    }
    fn default(p: &Profile) -> Option<&str> {
        p.default_index().map(|i| p.sample_types[i].ty.as_str())
    }
    match (default(before), default(after)) {
        (Some(b), Some(a)) if b == a => b,
        _ => DEFAULT_DIFF_SAMPLE_TYPE,
    }
}

/// Finds the compared columns in both profiles, or explains why they cannot be compared.
pub(super) fn columns(before: &Profile, after: &Profile, ty: &str) -> Result<(Columns, Columns)> {
    let (ib, ia) = match (before.sample_index(ty), after.sample_index(ty)) {
        (Some(b), Some(a)) => (b, a),
        (b, a) => {
            let which = match (b, a) {
                (None, None) => "neither profile has",
                (None, Some(_)) => "the first profile has no",
                _ => "the second profile has no",
            };
            return Err(Error::invalid(format!(
                "cannot diff these profiles: {which} `{ty}` column (is one a CPU profile?); \
                 first has [{}], second has [{}]",
                sample_type_names(before),
                sample_type_names(after)
            )));
        }
    };
    let (ub, ua) = (&before.sample_types[ib].unit, &after.sample_types[ia].unit);
    if ub != ua {
        return Err(Error::invalid(format!(
            "cannot diff these profiles: `{ty}` is in {ub} in the first and in {ua} in the second"
        )));
    }
    let objects_ty = ty.strip_suffix("_space").map(|p| format!("{p}_objects"));
    let both = |name: Option<&str>| -> (Option<usize>, Option<usize>) {
        match name {
            Some(n) => match (before.sample_index(n), after.sample_index(n)) {
                (Some(b), Some(a)) => (Some(b), Some(a)),
                _ => (None, None),
            },
            None => (None, None),
        }
    };
    let (ob, oa) = both(objects_ty.as_deref());
    let (abb, aba) = both((ty != "alloc_space").then_some("alloc_space"));
    let (aob, aoa) = both((ty != "alloc_space").then_some("alloc_objects"));
    Ok((
        Columns {
            bytes: ib,
            objects: ob,
            alloc_bytes: abb,
            alloc_objects: aob,
        },
        Columns {
            bytes: ia,
            objects: oa,
            alloc_bytes: aba,
            alloc_objects: aoa,
        },
    ))
}

pub(super) fn aggregate(
    profile: &Profile,
    cols: Columns,
    rules: &SiteRules,
) -> BTreeMap<String, SiteAgg> {
    let get =
        |values: &[i64], i: Option<usize>| i.and_then(|i| values.get(i).copied()).unwrap_or(0);
    let mut sites: BTreeMap<String, SiteAgg> = BTreeMap::new();
    for sample in &profile.samples {
        let v = &sample.values;
        let values = [
            get(v, Some(cols.bytes)),
            get(v, cols.objects),
            get(v, cols.alloc_bytes),
            get(v, cols.alloc_objects),
        ];
        let (name, stack, file, line) = match rules.site(&sample.stack) {
            Some(site) => {
                let i = site.index;
                let frame = &sample.stack[i];
                let stack: Vec<String> = sample.stack[i..]
                    .iter()
                    .map(|f| f.function.clone())
                    .collect();
                (site.name, stack, frame.file.clone(), frame.line)
            }
            None => (UNKNOWN_SITE.to_owned(), Vec::new(), None, 0),
        };
        let agg = sites.entry(name).or_default();
        for (sum, v) in agg.values.iter_mut().zip(values) {
            *sum = sum.saturating_add(v);
        }
        let entry = agg.stacks.entry(stack).or_insert((0, file, line));
        entry.0 = entry.0.saturating_add(values[0]);
    }
    sites
}

/// The stack of the site that grew most (ties: the first in name order), with its file and
/// line; from `after` if it is there, else from `before`.
pub(super) fn heaviest_stack(b: &SiteAgg, a: &SiteAgg) -> (Vec<String>, Option<String>, u32) {
    let mut best: Option<(i64, &Vec<String>, &Option<String>, u32)> = None;
    let keys: std::collections::BTreeSet<&Vec<String>> =
        b.stacks.keys().chain(a.stacks.keys()).collect();
    for key in keys {
        let before = b.stacks.get(key);
        let after = a.stacks.get(key);
        let delta = after
            .map_or(0, |s| s.0)
            .saturating_sub(before.map_or(0, |s| s.0));
        let (_, file, line) = after.or(before).expect("key comes from one of the maps");
        if best.as_ref().is_none_or(|(d, ..)| delta > *d) {
            best = Some((delta, key, file, *line));
        }
    }
    best.map(|(_, k, f, l)| (k.clone(), f.clone(), l))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::profile::testutil::{Rng, cpu_profile, heap_profile, random_profile};

    const VEC_ALLOC: &[&str] = &[
        "__rust_alloc",
        "alloc::raw_vec::RawVec<T,A>::with_capacity_in",
        "alloc::vec::Vec<T>::with_capacity",
    ];

    fn through_vec(user: &[&'static str]) -> Vec<&'static str> {
        VEC_ALLOC.iter().chain(user).copied().collect()
    }

    #[test]
    fn diff_with_itself_is_empty() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let mut p = random_profile(&mut rng);
            // random_profile has between 1 and 4 columns; make sure inuse_space exists.
            p.sample_types = crate::profile::testutil::heap_types();
            for s in &mut p.samples {
                s.values.resize(4, 7);
            }
            let d = diff(&p, &p, &DiffOptions::default()).unwrap();
            assert!(d.sites.is_empty(), "{:?}", d.sites);
            assert_eq!(d.totals.delta_bytes, 0);
            assert_eq!(d.totals.growth_bytes, 0);
        }
    }

    #[test]
    fn growth_is_attributed_through_std_frames_and_ranked() {
        let main = "myapp::main";
        let before = heap_profile(&[
            (&through_vec(&["myapp::cache::fill", main]), 1000),
            (&through_vec(&["myapp::sessions::open", main]), 500),
            (&["myapp::steady", main], 300),
            (&["myapp::shrinks", main], 400),
        ]);
        let after = heap_profile(&[
            (&through_vec(&["myapp::cache::fill", main]), 1000),
            // Same site via another caller: summed into the site, heaviest stack wins.
            (
                &through_vec(&["myapp::cache::fill", "myapp::warm", main]),
                9000,
            ),
            (&through_vec(&["myapp::sessions::open", main]), 2500),
            (&["myapp::steady", main], 300),
            (&["myapp::shrinks", main], 100),
            (
                &[
                    "std::collections::hash::map::HashMap<K,V,S>::insert",
                    "myapp::index::add",
                ],
                640,
            ),
        ]);
        let d = diff(&before, &after, &DiffOptions::default()).unwrap();
        let names: Vec<&str> = d.sites.iter().map(|s| s.function.as_str()).collect();
        assert_eq!(
            names,
            [
                "myapp::cache::fill",
                "myapp::sessions::open",
                "myapp::index::add",
                "myapp::shrinks"
            ]
        );
        let fill = &d.sites[0];
        assert_eq!(
            (fill.before_bytes, fill.after_bytes, fill.delta_bytes),
            (1000, 10000, 9000)
        );
        assert_eq!(fill.stack, ["myapp::cache::fill", "myapp::warm", main]);
        assert!(!fill.new);
        assert_eq!(fill.delta_objects, 16 + 141 - 16);
        assert_eq!(fill.alloc_delta_bytes, 18000);
        let add = &d.sites[2];
        assert!(add.new);
        assert_eq!(add.stack, ["myapp::index::add"]);
        assert_eq!(d.totals.growth_bytes, 9000 + 2000 + 640);
        assert!((fill.share - 9000.0 * 100.0 / 11640.0).abs() < 1e-9);
        assert_eq!(d.sites[3].delta_bytes, -300);
        assert!(d.sites[3].share < 0.0);
        assert_eq!(
            d.totals.delta_bytes,
            d.totals.after_bytes - d.totals.before_bytes
        );
    }

    #[test]
    fn frames_match_by_symbol_not_address() {
        // Two runs of one binary: same functions, different load addresses (ASLR).
        let mut before = heap_profile(&[(&["myapp::leak", "myapp::main"], 100)]);
        let mut after = heap_profile(&[(&["myapp::leak", "myapp::main"], 900)]);
        for (p, base) in [
            (&mut before, 0x5555_0000_0000u64),
            (&mut after, 0x7f00_0000_0000),
        ] {
            for s in &mut p.samples {
                for (i, f) in s.stack.iter_mut().enumerate() {
                    f.address = base + 0x40 * i as u64;
                }
            }
        }
        let d = diff(&before, &after, &DiffOptions::default()).unwrap();
        assert_eq!(d.sites.len(), 1);
        assert_eq!(d.sites[0].function, "myapp::leak");
        assert_eq!(d.sites[0].delta_bytes, 800);
        assert!(!d.sites[0].new, "a site seen before is not new");
    }

    #[test]
    fn cpu_against_heap_is_refused() {
        let heap = heap_profile(&[(&["myapp::a"], 10)]);
        let cpu = cpu_profile(&[(&["myapp::a"], 10)]);
        let err = diff(&cpu, &heap, &DiffOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(
            msg.contains("first profile has no `inuse_space` column"),
            "{msg}"
        );
        assert!(msg.contains("cpu/nanoseconds"), "{msg}");
    }

    #[test]
    fn two_cpu_profiles_compare_their_default_column() {
        // `go tool pprof -diff_base` for CPU: what got hotter, in CPU time, by user function.
        let before = cpu_profile(&[
            (&["myapp::parse", "myapp::main"], 50),
            (&["core::slice::memchr", "myapp::scan", "myapp::main"], 10),
        ]);
        let after = cpu_profile(&[
            (&["myapp::parse", "myapp::main"], 50),
            (&["core::slice::memchr", "myapp::scan", "myapp::main"], 70),
        ]);
        let d = diff(&before, &after, &DiffOptions::default()).unwrap();
        assert_eq!(d.sample_type, "cpu");
        assert_eq!(d.unit, "nanoseconds");
        assert_eq!(d.objects_type, None);
        assert_eq!(d.sites.len(), 1);
        let scan = &d.sites[0];
        assert_eq!(scan.function, "myapp::scan");
        assert_eq!(scan.delta_bytes, 600_000_000);
        assert_eq!(scan.delta_objects, 0);
        // Asked for explicitly, the sample count works too; a heap diff keeps its pairing.
        let opts = DiffOptions {
            sample_type: Some("samples".into()),
            ..DiffOptions::default()
        };
        let d = diff(&before, &after, &opts).unwrap();
        assert_eq!((d.unit.as_str(), d.sites[0].delta_bytes), ("count", 60));
        let heap = heap_profile(&[(&["myapp::a"], 10)]);
        let d = diff(&heap, &heap, &DiffOptions::default()).unwrap();
        assert_eq!(d.unit, "bytes");
        assert_eq!(d.objects_type.as_deref(), Some("inuse_objects"));
    }

    #[test]
    fn json_contract() {
        let before = heap_profile(&[(&["myapp::a", "myapp::main"], 100)]);
        let after = heap_profile(&[(&["myapp::a", "myapp::main"], 300)]);
        let d = diff(&before, &after, &DiffOptions::default()).unwrap();
        let v: serde_json::Value = serde_json::to_value(&d).unwrap();
        let site = &v["sites"][0];
        assert_eq!(site["function"], "myapp::a");
        assert_eq!(site["delta_bytes"], 200);
        assert_eq!(site["before_bytes"], 100);
        assert_eq!(site["after_bytes"], 300);
        assert_eq!(site["delta_objects"], 3);
        assert_eq!(
            site["stack"],
            serde_json::json!(["myapp::a", "myapp::main"])
        );
        assert_eq!(site["new"], false);
        assert!(site.get("file").is_none());
        let back: HeapDiff = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }
}
