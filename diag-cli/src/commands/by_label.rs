//! `--by LABEL` on `diag diff` and `diag trend`: one group per value of a pprof label
//! (`route`, `task`, `thread`), largest growth first, each with its before, after and delta and
//! its top sites. The computation is [`diag_core::profile::diff_by_label`] and
//! [`trend_by_label`](diag_core::profile::trend_by_label); this is the output.

use std::io::{self, Write};

use anyhow::{Context, Result};
use diag_core::profile::{
    self, DiffByLabel, DiffOptions, NO_LABEL_VALUE, Profile, TrendByLabel, TrendOptions, Verdict,
};

use crate::table::{Align, Table};
use crate::units;

/// Sites shown per group in the table when `--top` is not given.
pub(crate) const DEFAULT_GROUP_TOP: usize = 5;

/// How the groups are shown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shown {
    /// Sites per group (0 = all).
    pub(crate) top: usize,
    /// JSON instead of tables.
    pub(crate) json: bool,
    /// Full function names in tables.
    pub(crate) full_names: bool,
}

impl Shown {
    /// From the command's `--top` (default [`DEFAULT_GROUP_TOP`]), `--json` and name options.
    pub(crate) fn new(top: Option<usize>, json: bool, names: &super::Names) -> Self {
        Self {
            top: top.unwrap_or(DEFAULT_GROUP_TOP),
            json,
            full_names: names.full_names,
        }
    }
}

fn shown(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or(NO_LABEL_VALUE)
}

/// `diag diff A B --by KEY`: JSON `{"by", "sample_type", "unit", "groups": [...]}` or a table
/// per group.
pub(crate) fn diff(
    w: &mut impl Write,
    before: &Profile,
    after: &Profile,
    key: &str,
    opts: &DiffOptions,
    shown_as: Shown,
) -> Result<()> {
    let Shown {
        top,
        json,
        full_names,
    } = shown_as;
    let mut d = profile::diff_by_label(before, after, key, opts)?;
    if top > 0 {
        for g in &mut d.groups {
            g.sites.truncate(top);
        }
    }
    if json {
        serde_json::to_writer_pretty(&mut *w, &d).context("writing JSON")?;
        writeln!(w)?;
        return Ok(());
    }
    write_diff(w, &d, full_names)?;
    Ok(())
}

fn write_diff(w: &mut impl Write, d: &DiffByLabel, full_names: bool) -> io::Result<()> {
    let unit = d.unit.as_str();
    let grew: i64 = d.groups.iter().map(|g| g.delta_bytes.max(0)).sum();
    writeln!(
        w,
        "{} by {}: {} groups, {} grew in all",
        d.sample_type,
        d.by,
        d.groups.len(),
        units::value(grew, unit)
    )?;
    let mut summary = Table::new(&[
        ("GROWTH", Align::Right),
        ("SHARE", Align::Right),
        ("BEFORE", Align::Right),
        ("AFTER", Align::Right),
        ("OBJECTS", Align::Right),
        ("", Align::Left),
    ]);
    for g in &d.groups {
        summary.row(vec![
            units::signed(g.delta_bytes, unit),
            units::percent(g.share),
            units::value(g.before_bytes, unit),
            units::value(g.after_bytes, unit),
            units::signed(g.delta_objects, "count"),
            format!("{} {}", d.by, shown(&g.value)),
        ]);
    }
    writeln!(w)?;
    summary.write(w)?;
    for g in d.groups.iter().filter(|g| !g.sites.is_empty()) {
        writeln!(
            w,
            "\n{} {}: {}",
            d.by,
            shown(&g.value),
            units::signed(g.delta_bytes, unit)
        )?;
        let mut t = Table::new(&[
            ("GROWTH", Align::Right),
            ("BEFORE", Align::Right),
            ("AFTER", Align::Right),
            ("", Align::Left),
            ("SITE", Align::Left),
        ]);
        for s in &g.sites {
            t.row(vec![
                units::signed(s.delta_bytes, unit),
                units::value(s.before_bytes, unit),
                units::value(s.after_bytes, unit),
                if s.new { "NEW".into() } else { String::new() },
                units::located_as(&s.function, s.file.as_deref(), s.line, full_names),
            ]);
        }
        t.write(w)?;
    }
    Ok(())
}

/// `diag trend ... --by KEY`: JSON `{"by", "groups": [...], "snapshots", ...}` or a table per
/// group.
pub(crate) fn trend(
    w: &mut impl Write,
    profiles: &[&Profile],
    key: &str,
    opts: &TrendOptions,
    shown_as: Shown,
    files: &[String],
) -> Result<()> {
    let Shown { top, json, .. } = shown_as;
    let mut t = profile::trend_by_label(profiles, key, opts).context("computing the trend")?;
    if top > 0 {
        for g in &mut t.groups {
            g.sites.truncate(top);
        }
    }
    if json {
        let v = serde_json::json!({
            "by": t.by,
            "sample_type": t.whole.sample_type,
            "slope_per": t.whole.slope_per,
            "alpha": t.whole.alpha,
            "snapshots": t.whole.snapshots,
            "groups": t.groups,
            "files": files,
        });
        serde_json::to_writer_pretty(&mut *w, &v).context("writing JSON")?;
        writeln!(w)?;
        return Ok(());
    }
    write_trend(w, &t)?;
    Ok(())
}

fn write_trend(w: &mut impl Write, t: &TrendByLabel) -> io::Result<()> {
    let per = match t.whole.slope_per {
        profile::SlopeUnit::Second => "/s",
        profile::SlopeUnit::Snapshot => "/snapshot",
    };
    writeln!(
        w,
        "{} over {} snapshots by {}: {} groups (RATE: summed Theil-Sen slope of the group's \
         growing sites)",
        t.whole.sample_type,
        t.whole.snapshots.len(),
        t.by,
        t.groups.len()
    )?;
    let mut summary = Table::new(&[
        ("RATE", Align::Right),
        ("GROWTH", Align::Right),
        ("FIRST", Align::Right),
        ("LAST", Align::Right),
        ("GROWING", Align::Right),
        ("", Align::Left),
    ]);
    for g in &t.groups {
        let growing = g
            .sites
            .iter()
            .filter(|s| s.verdict == Verdict::Growing)
            .count();
        summary.row(vec![
            format!(
                "{}{per}",
                units::bytes(g.growing_slope_bytes.round() as i64)
            ),
            units::signed(g.delta_bytes, "bytes"),
            units::bytes(g.before_bytes),
            units::bytes(g.after_bytes),
            growing.to_string(),
            format!("{} {}", t.by, shown(&g.value)),
        ]);
    }
    writeln!(w)?;
    summary.write(w)?;
    for g in t.groups.iter().filter(|g| !g.sites.is_empty()) {
        writeln!(w, "\n{} {}:", t.by, shown(&g.value))?;
        let mut table = Table::new(&[
            ("VERDICT", Align::Left),
            ("RATE", Align::Right),
            ("GROWTH", Align::Right),
            ("SITE", Align::Left),
        ]);
        for s in &g.sites {
            table.row(vec![
                s.verdict.as_str().to_owned(),
                format!("{}{per}", units::bytes(s.slope_bytes.round() as i64)),
                units::signed(s.delta_bytes, "bytes"),
                s.short.clone(),
            ]);
        }
        table.write(w)?;
    }
    Ok(())
}
