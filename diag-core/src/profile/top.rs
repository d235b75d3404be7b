//! The heaviest functions of one profile, flat and cumulative, like `go tool pprof -top`.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::load::select_sample;
use super::model::{Profile, ValueType};
use super::sites::{UNKNOWN_SITE, is_runtime, site_index};
use crate::error::Result;

/// Which frame of a stack a sample's value counts as "flat" for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Attribution {
    /// The innermost frame, whatever it is (pprof's flat): right for CPU profiles.
    #[default]
    Leaf,
    /// The innermost user-code frame (see [`sites`](super::sites)): right for heap profiles,
    /// where the leaf is almost always the allocator. Runtime functions (std, alloc, the
    /// allocator) are left out of the list.
    Sites,
}

/// Options for [`top`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TopOptions {
    /// The column to rank by; the profile's default (see
    /// [`select_sample`](super::select_sample)) when `None`.
    pub sample_type: Option<String>,
    /// How many entries to keep; 0 keeps all.
    pub n: usize,
    /// What counts as flat.
    pub attribution: Attribution,
}

/// The result of [`top`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Top {
    /// The ranked column.
    pub sample_type: ValueType,
    /// What flat means in this list.
    pub attribution: Attribution,
    /// The column's total over the profile; percentages are of this.
    pub total: i64,
    /// The heaviest functions: largest flat first, then largest cum.
    pub entries: Vec<TopEntry>,
    /// How many functions with a non-zero value were left out by [`TopOptions::n`].
    pub omitted: usize,
}

/// One function in a [`Top`] list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopEntry {
    /// The function.
    pub function: String,
    /// The value of samples where it is the flat frame.
    pub flat: i64,
    /// `flat` as a percentage of the total.
    pub flat_percent: f64,
    /// The running sum of `flat_percent` down the list (pprof's `sum%`).
    pub sum_percent: f64,
    /// The value of samples with it anywhere on the stack (counted once per sample).
    pub cum: i64,
    /// `cum` as a percentage of the total.
    pub cum_percent: f64,
    /// Its source file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line of its heaviest flat sample, when known (0 = unknown).
    #[serde(default)]
    pub line: u32,
}

#[derive(Default)]
struct Acc {
    flat: i64,
    cum: i64,
    file: Option<String>,
    line: u32,
    line_weight: i64,
}

/// Ranks the functions of `profile` by flat value of the chosen column.
pub fn top(profile: &Profile, opts: &TopOptions) -> Result<Top> {
    let index = select_sample(profile, opts.sample_type.as_deref())?;
    let total = profile.total(index);
    let mut acc: HashMap<&str, Acc> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for sample in &profile.samples {
        let value = sample.values.get(index).copied().unwrap_or(0);
        if value == 0 {
            continue;
        }
        let flat_at = match opts.attribution {
            Attribution::Leaf => (!sample.stack.is_empty()).then_some(0),
            Attribution::Sites => site_index(&sample.stack),
        };
        match flat_at {
            Some(i) => {
                let frame = &sample.stack[i];
                let a = acc.entry(frame.function.as_str()).or_default();
                a.flat = a.flat.saturating_add(value);
                if frame.file.is_some() && value > a.line_weight {
                    a.file.clone_from(&frame.file);
                    a.line = frame.line;
                    a.line_weight = value;
                }
            }
            None => {
                let a = acc.entry(UNKNOWN_SITE).or_default();
                a.flat = a.flat.saturating_add(value);
                a.cum = a.cum.saturating_add(value);
            }
        }
        seen.clear();
        for frame in &sample.stack {
            if seen.insert(frame.function.as_str()) {
                let a = acc.entry(frame.function.as_str()).or_default();
                a.cum = a.cum.saturating_add(value);
            }
        }
    }

    let mut rows: Vec<(&str, Acc)> = acc.into_iter().collect();
    if opts.attribution == Attribution::Sites {
        // Runtime frames never hold flat value here; listing them only buries the sites.
        rows.retain(|(name, a)| a.flat != 0 || !is_runtime(name));
    }
    rows.sort_by(|(na, a), (nb, b)| {
        b.flat
            .cmp(&a.flat)
            .then(b.cum.cmp(&a.cum))
            .then_with(|| na.cmp(nb))
    });
    let keep = if opts.n == 0 {
        rows.len()
    } else {
        opts.n.min(rows.len())
    };
    let omitted = rows.len() - keep;
    let percent = |v: i64| {
        if total == 0 {
            0.0
        } else {
            v as f64 * 100.0 / total as f64
        }
    };
    let mut sum = 0.0;
    let entries = rows
        .into_iter()
        .take(keep)
        .map(|(function, a)| {
            let flat_percent = percent(a.flat);
            sum += flat_percent;
            TopEntry {
                function: function.to_owned(),
                flat: a.flat,
                flat_percent,
                sum_percent: sum,
                cum: a.cum,
                cum_percent: percent(a.cum),
                file: a.file,
                line: a.line,
            }
        })
        .collect();
    Ok(Top {
        sample_type: profile.sample_types[index].clone(),
        attribution: opts.attribution,
        total,
        entries,
        omitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testutil::{cpu_profile, heap_profile};

    fn opts(attribution: Attribution, n: usize) -> TopOptions {
        TopOptions {
            attribution,
            n,
            ..TopOptions::default()
        }
    }

    #[test]
    fn cpu_leaf_flat_and_cum() {
        let p = cpu_profile(&[
            (&["myapp::hash", "myapp::handle", "myapp::main"], 6),
            (&["myapp::parse", "myapp::handle", "myapp::main"], 3),
            (&["myapp::main"], 1),
            // Recursion counts once in cum.
            (&["myapp::walk", "myapp::walk", "myapp::main"], 2),
        ]);
        let t = top(&p, &opts(Attribution::Leaf, 0)).unwrap();
        assert_eq!(t.sample_type.ty, "cpu");
        assert_eq!(t.total, 120_000_000);
        let row = |name: &str| t.entries.iter().find(|e| e.function == name).unwrap();
        assert_eq!(t.entries[0].function, "myapp::hash");
        assert_eq!(row("myapp::hash").flat, 60_000_000);
        assert_eq!(row("myapp::handle").flat, 0);
        assert_eq!(row("myapp::handle").cum, 90_000_000);
        assert_eq!(row("myapp::main").cum, 120_000_000);
        assert_eq!(row("myapp::walk").cum, 20_000_000);
        assert!((row("myapp::main").cum_percent - 100.0).abs() < 1e-9);
        assert!((t.entries.last().unwrap().sum_percent - 100.0).abs() < 1e-9);

        let t = top(&p, &opts(Attribution::Leaf, 2)).unwrap();
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.omitted, 3);
        let t = top(
            &p,
            &TopOptions {
                sample_type: Some("samples".into()),
                ..TopOptions::default()
            },
        )
        .unwrap();
        assert_eq!(t.total, 12);
    }

    #[test]
    fn heap_sites_fold_allocator_frames() {
        let p = heap_profile(&[
            (
                &[
                    "__rust_alloc",
                    "alloc::vec::Vec<T>::with_capacity",
                    "myapp::fill",
                    "myapp::main",
                ],
                700,
            ),
            (&["malloc", "myapp::other", "myapp::main"], 300),
        ]);
        let leaf = top(&p, &opts(Attribution::Leaf, 0)).unwrap();
        assert_eq!(leaf.entries[0].function, "__rust_alloc");
        let sites = top(&p, &opts(Attribution::Sites, 0)).unwrap();
        assert_eq!(sites.sample_type.ty, "inuse_space");
        assert_eq!(sites.entries[0].function, "myapp::fill");
        assert_eq!(sites.entries[0].flat, 700);
        assert_eq!(sites.entries[1].function, "myapp::other");
        assert!(
            sites
                .entries
                .iter()
                .all(|e| e.function.starts_with("myapp::"))
        );
        let main = sites
            .entries
            .iter()
            .find(|e| e.function == "myapp::main")
            .unwrap();
        assert_eq!((main.flat, main.cum), (0, 1000));
    }
}
