//! `diag diff A B`: which allocation sites grew between two heap snapshots.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use diag_core::profile::{self, DiffOptions, FlameOptions, HeapDiff};

use crate::cli::DiffArgs;
use crate::input::read_profile;
use crate::table::{Align, Table};
use crate::units;

/// Rows shown in the table when `--top` is not given.
pub(crate) const DEFAULT_TOP: usize = 20;

/// Runs `diag diff`.
pub(crate) fn run(args: DiffArgs) -> Result<ExitCode> {
    let mut before = read_profile(&args.before)?;
    let mut after = read_profile(&args.after)?;
    args.filter.apply_all([&mut before, &mut after]);
    let mut opts = DiffOptions::default();
    opts.sample_type.clone_from(&args.sample);
    let mut diff = profile::diff(&before, &after, &opts)
        .with_context(|| format!("comparing {} with {}", args.before, args.after))?;
    let total_sites = diff.sites.len();

    if let Some(path) = &args.svg {
        let mut flame = FlameOptions::default();
        flame.sample_type = Some(diff.sample_type.clone());
        flame.title = Some(format!(
            "Growth of {} from {} to {}",
            diff.sample_type, args.before, args.after
        ));
        let mut svg = Vec::new();
        profile::diff_flamegraph(&before, &after, &flame, &mut svg)
            .context("drawing the differential flamegraph")?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "diag: differential flamegraph written to {}",
            path.display()
        );
    }

    let limit = match (args.top, args.json) {
        (Some(n), _) => n,
        (None, true) => 0,
        (None, false) => DEFAULT_TOP,
    };
    if limit > 0 {
        diff.sites.truncate(limit);
    }

    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &diff).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &diff, total_sites)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The human table: a summary line, then one row per site.
pub(crate) fn write_table(
    w: &mut impl Write,
    diff: &HeapDiff,
    total_sites: usize,
) -> io::Result<()> {
    let t = &diff.totals;
    writeln!(
        w,
        "{}: {} -> {} ({}, {} objects)",
        diff.sample_type,
        units::bytes(t.before_bytes),
        units::bytes(t.after_bytes),
        units::signed(t.delta_bytes, "bytes"),
        units::signed(t.delta_objects, "count"),
    )?;
    if diff.sites.is_empty() {
        return writeln!(w, "no site changed");
    }
    let grew = diff.sites.iter().filter(|s| s.delta_bytes > 0).count();
    writeln!(
        w,
        "{} of {} changed sites shown; {} grew by {} in total",
        diff.sites.len(),
        total_sites,
        grew,
        units::bytes(t.growth_bytes),
    )?;
    writeln!(w)?;
    let mut table = Table::new(&[
        ("GROWTH", Align::Right),
        ("SHARE", Align::Right),
        ("BEFORE", Align::Right),
        ("AFTER", Align::Right),
        ("OBJECTS", Align::Right),
        ("", Align::Left),
        ("SITE", Align::Left),
    ]);
    for s in &diff.sites {
        let site = units::located(&s.function, s.file.as_deref(), s.line);
        table.row(vec![
            units::signed(s.delta_bytes, "bytes"),
            units::percent(s.share),
            units::bytes(s.before_bytes),
            units::bytes(s.after_bytes),
            units::signed(s.delta_objects, "count"),
            if s.new { "NEW".into() } else { String::new() },
            site,
        ]);
    }
    table.write(w)
}
