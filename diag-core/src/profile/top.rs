//! The heaviest functions of one profile, flat and cumulative, like `go tool pprof -top`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::load::select_sample;
use super::model::{Frame, Profile, ValueType};
use super::sites::{FrameKind, SiteRules, UNKNOWN_SITE, short_name};
use crate::error::Result;

/// Which frame of a stack a sample's value counts as "flat" for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Attribution {
    /// The innermost frame, whatever it is (pprof's flat): right for CPU profiles.
    #[default]
    Leaf,
    /// The innermost application frame (see [`sites`](super::sites)): right for heap
    /// profiles, where the leaf is almost always the allocator. Runtime functions (std, alloc,
    /// the allocator) are left out of the list; a stack without an application frame counts
    /// for a marked entry (`[no application frame] <function>`).
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
    /// One entry per source line (function, file and line) instead of per function, like
    /// `go tool pprof -lines`: where in a hot function the time or memory goes.
    pub lines: bool,
    /// Crates taken as the application's besides those the profile shows or records (see
    /// [`SiteRules`]), for [`Attribution::Sites`].
    pub app_crates: Vec<String>,
}

/// The result of [`top`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Top {
    /// The ranked column.
    pub sample_type: ValueType,
    /// What flat means in this list.
    pub attribution: Attribution,
    /// True if entries are source lines ([`TopOptions::lines`]), not functions.
    pub lines: bool,
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
    /// The function (its full name).
    pub function: String,
    /// `function` as tables show it ([`short_name`]).
    #[serde(default)]
    pub short: String,
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
    /// The line of its heaviest flat sample, when known (0 = unknown); with
    /// [`TopOptions::lines`], the entry's own line.
    #[serde(default)]
    pub line: u32,
}

/// What entries are keyed by: a function, or with [`TopOptions::lines`] a function's line.
type Key<'a> = (Cow<'a, str>, Option<&'a str>, u32);

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
    let lines = opts.lines;
    fn key(f: &Frame, lines: bool) -> Key<'_> {
        let name = Cow::Borrowed(f.function.as_str());
        if lines {
            (name, f.file.as_deref(), f.line)
        } else {
            (name, None, 0)
        }
    }
    let rules = match opts.attribution {
        Attribution::Sites => SiteRules::for_profile(profile).with_app_crates(&opts.app_crates),
        Attribution::Leaf => SiteRules::default(),
    };
    let mut acc: HashMap<Key<'_>, Acc> = HashMap::new();
    let mut seen: HashSet<Key<'_>> = HashSet::new();
    for sample in &profile.samples {
        let value = sample.values.get(index).copied().unwrap_or(0);
        if value == 0 {
            continue;
        }
        let flat_at = match opts.attribution {
            Attribution::Leaf => (!sample.stack.is_empty()).then_some((0, None)),
            Attribution::Sites => rules
                .site(&sample.stack)
                .map(|s| (s.index, (!s.app).then_some(s.name))),
        };
        match flat_at {
            Some((i, marked)) => {
                let frame = &sample.stack[i];
                let mut k = key(frame, lines);
                if let Some(name) = marked {
                    // A marked entry is on no stack as a frame: its cum is its flat.
                    k.0 = Cow::Owned(name);
                    let a = acc.entry(k.clone()).or_default();
                    a.cum = a.cum.saturating_add(value);
                }
                let a = acc.entry(k).or_default();
                a.flat = a.flat.saturating_add(value);
                if frame.file.is_some() && value > a.line_weight {
                    a.file.clone_from(&frame.file);
                    a.line = frame.line;
                    a.line_weight = value;
                }
            }
            None => {
                let a = acc
                    .entry((Cow::Borrowed(UNKNOWN_SITE), None, 0))
                    .or_default();
                a.flat = a.flat.saturating_add(value);
                a.cum = a.cum.saturating_add(value);
            }
        }
        seen.clear();
        for frame in &sample.stack {
            if seen.insert(key(frame, lines)) {
                let a = acc.entry(key(frame, lines)).or_default();
                a.cum = a.cum.saturating_add(value);
            }
        }
    }

    let mut rows: Vec<(Key<'_>, Acc)> = acc.into_iter().collect();
    if opts.attribution == Attribution::Sites {
        // Runtime frames never hold flat value here; listing them only buries the sites.
        rows.retain(|((name, ..), a)| {
            a.flat != 0 || rules.kind(&Frame::named(name.as_ref())) != FrameKind::Runtime
        });
    }
    rows.sort_by(|(ka, a), (kb, b)| {
        b.flat
            .cmp(&a.flat)
            .then(b.cum.cmp(&a.cum))
            .then_with(|| ka.cmp(kb))
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
        .map(|((function, file, line), a)| {
            let flat_percent = percent(a.flat);
            sum += flat_percent;
            let (file, line) = if opts.lines {
                (file.map(str::to_owned), line)
            } else {
                (a.file, a.line)
            };
            TopEntry {
                short: short_name(&function),
                function: function.into_owned(),
                flat: a.flat,
                flat_percent,
                sum_percent: sum,
                cum: a.cum,
                cum_percent: percent(a.cum),
                file,
                line,
            }
        })
        .collect();
    Ok(Top {
        sample_type: profile.sample_types[index].clone(),
        attribution: opts.attribution,
        lines: opts.lines,
        total,
        entries,
        omitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testutil::{cpu_profile, heap_profile};

    /// With the application's crates known, a dependency's constructor is no entry of its
    /// own, and a stack without an application frame counts for a marked entry (cum = flat).
    #[test]
    fn sites_are_the_applications_functions() {
        let p = heap_profile(&[
            (
                &[
                    "__rust_alloc",
                    "bytes::Bytes::copy_from_slice",
                    "svc::keep",
                    "svc::main",
                ],
                300,
            ),
            (
                &[
                    "__rust_alloc",
                    "tokio::runtime::task::raw::poll",
                    "start_thread",
                ],
                100,
            ),
        ]);
        let opts = TopOptions {
            attribution: Attribution::Sites,
            app_crates: vec!["svc".into()],
            ..TopOptions::default()
        };
        let t = top(&p, &opts).unwrap();
        let flat: Vec<(&str, i64, i64)> = t
            .entries
            .iter()
            .filter(|e| e.flat != 0)
            .map(|e| (e.function.as_str(), e.flat, e.cum))
            .collect();
        assert_eq!(
            flat,
            [
                ("svc::keep", 300, 300),
                (
                    "[no application frame] tokio::runtime::task::raw::poll",
                    100,
                    100
                )
            ]
        );
    }

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
    fn lines_split_a_function_by_source_line() {
        let mut p = cpu_profile(&[
            (&["myapp::parse", "myapp::main"], 6),
            (&["myapp::parse", "myapp::main"], 3),
            (&["myapp::parse", "myapp::parse", "myapp::main"], 1),
        ]);
        let at = |name: &str, line: u32| Frame {
            file: Some("src/parse.rs".into()),
            line,
            ..Frame::named(name)
        };
        p.samples[0].stack = vec![at("myapp::parse", 10), at("myapp::main", 3)];
        p.samples[1].stack = vec![at("myapp::parse", 12), at("myapp::main", 3)];
        // Recursion through two lines of one function: each line counts once in cum.
        p.samples[2].stack = vec![
            at("myapp::parse", 12),
            at("myapp::parse", 20),
            at("myapp::main", 3),
        ];
        let by_line = top(
            &p,
            &TopOptions {
                lines: true,
                ..TopOptions::default()
            },
        )
        .unwrap();
        assert!(by_line.lines);
        let rows: Vec<(u32, i64, i64)> = by_line
            .entries
            .iter()
            .map(|e| (e.line, e.flat, e.cum))
            .collect();
        let ms = 10_000_000;
        assert_eq!(
            rows,
            [
                (10, 6 * ms, 6 * ms),
                (12, 4 * ms, 4 * ms),
                (3, 0, 10 * ms),
                (20, 0, ms)
            ]
        );
        assert_eq!(by_line.entries[0].file.as_deref(), Some("src/parse.rs"));
        // By function, the same profile is one entry per function, at its heaviest line.
        let by_function = top(&p, &TopOptions::default()).unwrap();
        assert_eq!(by_function.entries.len(), 2);
        assert_eq!(by_function.entries[0].flat, 10 * ms);
        assert_eq!(by_function.entries[0].line, 10);
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
