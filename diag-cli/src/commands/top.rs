//! `diag top FILE`: the heaviest functions of one profile.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use diag_core::profile::{self, Attribution, Profile, Top, TopOptions};

use crate::cli::TopArgs;
use crate::input::read_profile;
use crate::table::{Align, Table};
use crate::units;

/// Runs `diag top`.
pub(crate) fn run(args: TopArgs) -> Result<ExitCode> {
    let p = read_profile(&args.file)?;
    let mut opts = TopOptions::default();
    opts.sample_type.clone_from(&args.sample);
    opts.n = args.top;
    opts.attribution = if args.sites {
        Attribution::Sites
    } else if args.leaf {
        Attribution::Leaf
    } else {
        default_attribution(&p, args.sample.as_deref())
    };
    let top = profile::top(&p, &opts).with_context(|| format!("reading {}", args.file))?;
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &top).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &top)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Sites for heap columns (where the leaf is the allocator), leaf otherwise.
fn default_attribution(p: &Profile, sample: Option<&str>) -> Attribution {
    let ty = match sample {
        Some(t) => t,
        None => match profile::select_sample(p, None) {
            Ok(i) => p.sample_types[i].ty.as_str(),
            Err(_) => return Attribution::Leaf,
        },
    };
    if ty.ends_with("_space") || ty.ends_with("_objects") {
        Attribution::Sites
    } else {
        Attribution::Leaf
    }
}

/// The human table, in the shape of `go tool pprof -top`.
pub(crate) fn write_table(w: &mut impl Write, top: &Top) -> io::Result<()> {
    let unit = top.sample_type.unit.as_str();
    writeln!(
        w,
        "{} total {}; flat = {}",
        top.sample_type.ty,
        units::value(top.total, unit),
        match top.attribution {
            Attribution::Sites => "allocation site (std/alloc frames folded into their caller)",
            _ => "innermost frame",
        }
    )?;
    let shown = top.entries.len();
    writeln!(w, "showing {} of {} functions", shown, shown + top.omitted)?;
    writeln!(w)?;
    let mut table = Table::new(&[
        ("FLAT", Align::Right),
        ("FLAT%", Align::Right),
        ("SUM%", Align::Right),
        ("CUM", Align::Right),
        ("CUM%", Align::Right),
        ("FUNCTION", Align::Left),
    ]);
    for e in &top.entries {
        let function = units::located(&e.function, e.file.as_deref(), e.line);
        table.row(vec![
            units::value(e.flat, unit),
            units::percent(e.flat_percent),
            units::percent(e.sum_percent),
            units::value(e.cum, unit),
            units::percent(e.cum_percent),
            function,
        ]);
    }
    table.write(w)
}
