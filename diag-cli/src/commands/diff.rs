//! `diag diff A B`: which allocation sites grew between two heap snapshots. Either may be a
//! live service's URL (its heap now); `diag diff URL --since 1h` takes the earlier one from
//! the heap history the service keeps; `diag diff DIR` compares the two files of the latest
//! capture in a capture directory (`DIAG_CAPTURE_DIR`): the growth up to that capture.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use diag_core::profile::{self, DiffOptions, FlameOptions, HeapDiff};

use crate::commands::Names;
use crate::commands::snapshot;
use crate::filter::Filter;
use crate::history;
use crate::input::{Input, read_profile};
use crate::remote::{self, Remote};
use crate::table::{Align, Table};
use crate::units;

/// Rows shown in the table when `--top` is not given.
pub(crate) const DEFAULT_TOP: usize = 20;

/// What `diag diff` is asked to do.
pub(crate) struct Options {
    /// The earlier snapshot: a file or a live service's URL.
    pub(crate) before: String,
    /// The later snapshot: a file or a URL; `None` with `since`.
    pub(crate) after: Option<String>,
    /// With one URL: compare with its heap history from this long ago (`1h`).
    pub(crate) since: Option<String>,
    /// Where fetched snapshots are saved; default: here.
    pub(crate) out: Option<PathBuf>,
    /// Sites shown (0 = all); default: [`DEFAULT_TOP`] in the table, all in JSON.
    pub(crate) top: Option<usize>,
    /// JSON instead of the table.
    pub(crate) json: bool,
    /// Also write a differential flame graph here.
    pub(crate) svg: Option<PathBuf>,
    /// In the SVG, every frame instead of collapsed runtime and dependency frames.
    pub(crate) all_frames: bool,
    /// The column compared; default: inuse_space.
    pub(crate) sample: Option<String>,
    /// One group per value of this pprof label.
    pub(crate) by: Option<String>,
    /// CI gate: exit 1 if a site grew by more than this many bytes.
    pub(crate) fail_above: Option<u64>,
    /// How functions are named.
    pub(crate) names: Names,
    /// `--focus` and friends.
    pub(crate) filter: Filter,
    /// Bearer token for the service.
    pub(crate) token: Option<String>,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// Runs `diag diff`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let (before_name, after_name) = inputs(&args)?;
    let mut before = read_profile(&before_name)?;
    let mut after = read_profile(&after_name)?;
    args.filter.apply_all([&mut before, &mut after]);
    let mut opts = DiffOptions::default();
    opts.sample_type.clone_from(&args.sample);
    opts.app_crates.clone_from(&args.names.app_crates);
    let mut diff = profile::diff(&before, &after, &opts)
        .with_context(|| format!("comparing {before_name} with {after_name}"))?;
    let total_sites = diff.sites.len();
    // Judged on every site, before --top trims the table.
    let offenders = args
        .fail_above
        .map(|limit| over_limit(&diff, limit))
        .unwrap_or_default();

    if let Some(path) = &args.svg {
        let mut flame = FlameOptions::default();
        flame.sample_type = Some(diff.sample_type.clone());
        flame.full_names = args.names.full_names;
        flame.collapse = !args.all_frames;
        flame.app_crates.clone_from(&args.names.app_crates);
        flame.highlight = diff
            .sites
            .first()
            .filter(|s| s.delta_bytes > 0)
            .map(|s| s.function.clone());
        flame.title = Some(format!(
            "Growth of {} from {} to {}",
            diff.sample_type, before_name, after_name
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

    if let Some(key) = &args.by {
        let mut out = BufWriter::new(io::stdout().lock());
        super::by_label::diff(
            &mut out,
            &before,
            &after,
            key,
            &opts,
            super::by_label::Shown::new(args.top, args.json, &args.names),
        )
        .with_context(|| format!("comparing {before_name} with {after_name} by {key}"))?;
        out.flush()?;
        return Ok(gate(&diff, &offenders, args.fail_above));
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
        write_table(&mut out, &diff, total_sites, args.names.full_names)?;
    }
    out.flush()?;
    Ok(gate(&diff, &offenders, args.fail_above))
}

/// Exit code of the CI gate (`--fail-above`): the run found what it was asked to fail on.
pub(crate) const EXIT_GATE: u8 = 1;

/// The sites that grew by more than `limit` (in the compared column's unit), largest first:
/// `(name as tables show it, growth)`.
fn over_limit(diff: &HeapDiff, limit: u64) -> Vec<(String, i64)> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut v: Vec<(String, i64)> = diff
        .sites
        .iter()
        .filter(|s| s.delta_bytes > limit)
        .map(|s| {
            (
                units::located_as(&s.function, s.file.as_deref(), s.line, false),
                s.delta_bytes,
            )
        })
        .collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.1));
    v
}

/// Success, or with offenders, their list on stderr and [`EXIT_GATE`].
fn gate(diff: &HeapDiff, offenders: &[(String, i64)], limit: Option<u64>) -> ExitCode {
    let Some(limit) = limit.filter(|_| !offenders.is_empty()) else {
        return ExitCode::SUCCESS;
    };
    let unit = diff.unit.as_str();
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "diag: fail: {} site{} grew by more than {} (--fail-above):",
        offenders.len(),
        if offenders.len() == 1 { "" } else { "s" },
        units::value(i64::try_from(limit).unwrap_or(i64::MAX), unit)
    );
    for (site, delta) in offenders {
        let _ = writeln!(err, "  {}  {site}", units::signed(*delta, unit));
    }
    ExitCode::from(EXIT_GATE)
}

/// The two files to compare: the arguments as they are, with each URL replaced by a snapshot
/// of that service taken now, or, with `--since`, by a point of its heap history and a
/// snapshot of now. Fetched snapshots are saved (`--out`, or here) and named on stderr.
fn inputs(args: &Options) -> Result<(String, String)> {
    let dir = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
    let fetch_now = |arg: &str| -> Result<String> {
        if !matches!(Input::parse(arg), Input::Url(_)) {
            return Ok(arg.to_owned());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let base = arg.trim_end_matches('/');
        let saved = snapshot::take(&snapshot::Options {
            url: arg.to_owned(),
            output: Some(unused(dir.join(snapshot::default_name(base, false)))),
            allocs: false,
            seconds: 0,
            token: args.token.clone(),
            timeout: args.timeout,
        })?;
        eprintln!(
            "diag: snapshot of {base} now: {} in use -> {}",
            units::bytes(saved.inuse_bytes),
            saved.path.display()
        );
        Ok(saved.path.display().to_string())
    };
    match (&args.after, &args.since) {
        (Some(after), _) => Ok((fetch_now(&args.before)?, fetch_now(after)?)),
        (None, Some(since)) => {
            let Input::Url(url) = Input::parse(&args.before) else {
                bail!(
                    "--since reads a live service's heap history: give its URL (e.g. \
                     http://127.0.0.1:6060), not the file {}",
                    args.before
                );
            };
            let since = units::duration("--since", since, 1.0, 366.0 * 86_400.0)?;
            let before = from_history(args, url, since, &dir)?;
            Ok((before, fetch_now(url)?))
        }
        (None, None) if crate::captures::is_dir(&args.before) => {
            let dir = Path::new(&args.before);
            let latest = crate::captures::latest(dir)?;
            eprintln!("{}", latest.describe(dir));
            Ok((
                latest.oldest.display().to_string(),
                latest.current.display().to_string(),
            ))
        }
        (None, None) => bail!(
            "give two snapshots, one URL with --since DURATION, or a capture directory \
             (DIAG_CAPTURE_DIR); {} is none of these",
            args.before
        ),
    }
}

/// Saves the heap history point of `url` from `since` ago (or its oldest, if the history is
/// shorter) into `dir`, and returns the file.
fn from_history(args: &Options, url: &str, since: Duration, dir: &Path) -> Result<String> {
    let remote = Remote::new(url, args.token.clone(), args.timeout)?;
    let (point, ago) = history::point_ago(
        &remote,
        since,
        "diff two snapshots instead",
        "comparing with its oldest point",
    )?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = unused(dir.join(format!(
        "heap-{}-at-{}.pb.gz",
        remote::host_tag(remote.base()),
        remote::timestamp_at(point.time_nanos.div_euclid(1_000_000_000))
    )));
    history::save_point(&remote, point.time_nanos, &file).with_context(|| {
        format!(
            "fetching the history point of {} ago (if the service just dropped it as the \
             oldest, run again)",
            units::span(ago)
        )
    })?;
    eprintln!(
        "diag: heap history point of {} ago -> {}",
        units::span(ago),
        file.display()
    );
    Ok(file.display().to_string())
}

/// `path`, or if a file is there already (two snapshots within a second), the first free
/// `<stem>-2.pb.gz`, `<stem>-3.pb.gz`... (up to 999, then `path` itself).
fn unused(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pb.gz").unwrap_or(&name).to_owned();
    (2..1000)
        .map(|k| path.with_file_name(format!("{stem}-{k}.pb.gz")))
        .find(|p| !p.exists())
        .unwrap_or(path)
}

/// The human table: a summary line, then one row per site, values in the compared column's
/// unit (an objects column only if it has a count column beside it); sites by their short
/// names unless `full_names`.
pub(crate) fn write_table(
    w: &mut impl Write,
    diff: &HeapDiff,
    total_sites: usize,
    full_names: bool,
) -> io::Result<()> {
    let t = &diff.totals;
    let unit = diff.unit.as_str();
    let objects = diff.objects_type.is_some();
    write!(
        w,
        "{}: {} -> {} ({}",
        diff.sample_type,
        units::value(t.before_bytes, unit),
        units::value(t.after_bytes, unit),
        units::signed(t.delta_bytes, unit),
    )?;
    if objects {
        write!(w, ", {} objects", units::signed(t.delta_objects, "count"))?;
    }
    writeln!(w, ")")?;
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
        units::value(t.growth_bytes, unit),
    )?;
    writeln!(w)?;
    let mut columns = vec![
        ("GROWTH", Align::Right),
        ("SHARE", Align::Right),
        ("BEFORE", Align::Right),
        ("AFTER", Align::Right),
    ];
    if objects {
        columns.push(("OBJECTS", Align::Right));
    }
    columns.extend([("", Align::Left), ("SITE", Align::Left)]);
    let mut table = Table::new(&columns);
    for s in &diff.sites {
        let mut row = vec![
            units::signed(s.delta_bytes, unit),
            units::percent(s.share),
            units::value(s.before_bytes, unit),
            units::value(s.after_bytes, unit),
        ];
        if objects {
            row.push(units::signed(s.delta_objects, "count"));
        }
        row.push(if s.new { "NEW".into() } else { String::new() });
        row.push(units::located_as(
            &s.function,
            s.file.as_deref(),
            s.line,
            full_names,
        ));
        table.row(row);
    }
    table.write(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_snapshots_never_overwrite_one_another() {
        let dir = std::env::temp_dir().join(format!("diag-unused-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = dir.join("heap-h-1-20261129-080000.pb.gz");
        assert_eq!(unused(first.clone()), first);
        std::fs::write(&first, b"x").unwrap();
        let second = unused(first.clone());
        assert_eq!(second, dir.join("heap-h-1-20261129-080000-2.pb.gz"));
        std::fs::write(&second, b"x").unwrap();
        assert_eq!(unused(first), dir.join("heap-h-1-20261129-080000-3.pb.gz"));
        std::fs::remove_dir_all(dir).ok();
    }
}
