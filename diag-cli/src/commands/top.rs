//! `diag top FILE`: the heaviest functions of one profile. `diag top URL --profile heap|cpu`
//! fetches the profile from a live service first; `diag top URL` is the live view
//! ([`super::top_live`]).

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use diag_core::profile::{self, Attribution, Profile, Top, TopOptions};

use crate::commands::{Flat, Names};
use crate::filter::Filter;
use crate::input::{Input, less_base, read_profile};
use crate::remote::Remote;
use crate::table::{Align, Table};
use crate::units;

/// What `diag top` is asked to do.
pub(crate) struct Options {
    /// Keep the samples of diag's own threads.
    pub(crate) include_diag: bool,
    /// The profile, or a live service's URL.
    pub(crate) file: String,
    /// Functions shown (0 = all); in the live view, routes.
    pub(crate) top: usize,
    /// Which column, and what counts as flat.
    pub(crate) flat: Flat,
    /// One row per source line instead of per function.
    pub(crate) lines: bool,
    /// An earlier profile subtracted first.
    pub(crate) base: Option<String>,
    /// JSON instead of the table.
    pub(crate) json: bool,
    /// One group per value of this pprof label.
    pub(crate) by: Option<String>,
    /// URL mode: fetch this profile (`heap`, `allocs`, `cpu`) instead of the live view.
    pub(crate) profile: Option<String>,
    /// URL mode: seconds of a CPU or delta profile.
    pub(crate) seconds: Option<u64>,
    /// Live view: time between two scrapes (`2s`), checked when used.
    pub(crate) interval: String,
    /// Live view: one sample, then exit.
    pub(crate) once: bool,
    /// How functions are named.
    pub(crate) names: Names,
    /// `--focus` and friends.
    pub(crate) filter: Filter,
    /// Bearer token for the service.
    pub(crate) token: Option<String>,
    /// Per-request timeout (a profile over time gets its seconds on top).
    pub(crate) timeout: Duration,
}

/// Runs `diag top`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let p = match (Input::parse(&args.file), args.profile.as_deref()) {
        (Input::Url(_), None)
            if args.filter.is_active() || args.base.is_some() || args.by.is_some() =>
        {
            bail!(
                "{} applies to profiles: add --profile heap|cpu to list a profile of {}",
                if args.by.is_some() {
                    "--by".to_owned()
                } else if args.base.is_some() {
                    "--base".to_owned()
                } else {
                    args.filter.describe()
                },
                args.file
            )
        }
        (_, None) if args.seconds.is_some() => bail!(
            "--seconds applies to a profile fetched from a service: add --profile heap|allocs|cpu \
             and give its URL"
        ),
        (Input::Url(url), None) => return super::top_live::run(url, &args),
        (Input::Url(url), Some(kind)) => fetch_profile(url, kind, &args)?,
        (Input::File(_), Some(_)) => {
            bail!("--profile needs a URL (http://host:port of the diag listener), not a file")
        }
        (Input::File(_), None) => read_profile(&args.file)?,
    };
    let mut p = less_base(p, args.base.as_deref())?;
    crate::filter::leave_out_diag(&mut p, args.include_diag);
    args.filter.apply_all([&mut p]);
    let mut opts = TopOptions::default();
    opts.sample_type.clone_from(&args.flat.sample);
    opts.n = args.top;
    opts.lines = args.lines;
    opts.attribution = attribution(&args.flat, &p);
    opts.app_crates.clone_from(&args.names.app_crates);
    if let Some(key) = args.by.as_deref() {
        return by_label(&p, key, &opts, &args);
    }
    let top = profile::top(&p, &opts).with_context(|| format!("reading {}", args.file))?;
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &top).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &top, args.names.full_names)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One group of `--by`: the samples whose label `by` has `value`.
#[derive(serde::Serialize)]
struct Group {
    value: Option<String>,
    total: i64,
    share: f64,
    top: Top,
}

/// `diag top --by LABEL`: the profile split by the label's values, each with its heaviest
/// functions (at most `--top`, 5 by default here).
fn by_label(p: &Profile, key: &str, opts: &TopOptions, args: &Options) -> Result<ExitCode> {
    profile::require_label([p], key)?;
    let mut opts = opts.clone();
    if args.top == 20 {
        opts.n = 5; // the default of a flat list is long for one group
    }
    let whole = profile::top(p, &opts).with_context(|| format!("reading {}", args.file))?;
    let mut groups = Vec::new();
    for (value, part) in profile::split_by_label(p, key) {
        let top = profile::top(&part, &opts)?;
        groups.push(Group {
            value,
            total: top.total,
            share: if whole.total == 0 {
                0.0
            } else {
                top.total as f64 * 100.0 / whole.total as f64
            },
            top,
        });
    }
    groups.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.value.cmp(&b.value)));
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        let v =
            serde_json::json!({ "by": key, "sample_type": whole.sample_type, "groups": groups });
        serde_json::to_writer_pretty(&mut out, &v).context("writing JSON")?;
        writeln!(out)?;
    } else {
        let unit = whole.sample_type.unit.as_str();
        writeln!(
            out,
            "{} total {} by {key}; {} groups",
            whole.sample_type.ty,
            units::value(whole.total, unit),
            groups.len()
        )?;
        for g in &groups {
            writeln!(
                out,
                "\n{key} {}: {} ({})",
                g.value.as_deref().unwrap_or("(none)"),
                units::value(g.total, unit),
                units::percent(g.share)
            )?;
            write_table(&mut out, &g.top, args.names.full_names)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// CPU profile length when `--seconds` is not given.
const DEFAULT_CPU_SECONDS: u64 = 10;

/// Fetches `/debug/pprof/heap` or `/allocs` (with `--seconds`, their delta over the next N
/// seconds) or `/debug/pprof/profile?seconds=N` from the service at `url`.
fn fetch_profile(url: &str, kind: &str, args: &Options) -> Result<Profile> {
    let (path, seconds) = match (kind, args.seconds) {
        ("cpu", s) => {
            let s = s.unwrap_or(DEFAULT_CPU_SECONDS);
            (format!("/debug/pprof/profile?seconds={s}"), s)
        }
        (_, Some(s)) => (format!("/debug/pprof/{kind}?seconds={s}"), s),
        (_, None) => (format!("/debug/pprof/{kind}"), 0),
    };
    // A profile over time takes its seconds before the answer starts: allow for them.
    let timeout = args.timeout + Duration::from_secs(seconds);
    let remote = Remote::new(url, args.token.clone(), timeout)?;
    if seconds > 0 {
        eprintln!(
            "diag: {} for {seconds} s...",
            if kind == "cpu" {
                "profiling CPU"
            } else {
                "recording allocations"
            }
        );
    }
    let reply = remote.get_profile(&path)?;
    crate::input::decode(&reply.body, &format!("{}{path}", remote.base()))
}

/// What counts as flat: as asked (`--sites`, `--leaf`), else by the column.
pub(crate) fn attribution(flat: &Flat, p: &Profile) -> Attribution {
    if flat.sites {
        Attribution::Sites
    } else if flat.leaf {
        Attribution::Leaf
    } else {
        default_attribution(p, flat.sample.as_deref())
    }
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
pub(crate) fn write_table(w: &mut impl Write, top: &Top, full_names: bool) -> io::Result<()> {
    let unit = top.sample_type.unit.as_str();
    writeln!(
        w,
        "{} total {}; flat = {}",
        top.sample_type.ty,
        units::value(top.total, unit),
        match top.attribution {
            Attribution::Sites =>
                "allocation site (std and dependency frames folded into the application's)",
            _ => "innermost frame",
        }
    )?;
    let shown = top.entries.len();
    writeln!(
        w,
        "showing {} of {} {}",
        shown,
        shown + top.omitted,
        if top.lines { "lines" } else { "functions" }
    )?;
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
        let function = units::located_as(&e.function, e.file.as_deref(), e.line, full_names);
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
