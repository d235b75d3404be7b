//! `diag trend`: which allocation sites keep growing over a series of heap snapshots, as
//! opposed to those that grew once (a cache filling up) or move with traffic.
//!
//! Given files, it reads them; given one URL, it first takes `--count` snapshots of the live
//! service `--every` apart and saves them, or with `--history` fetches the points of the
//! service's heap history and a snapshot of now. The statistics live in
//! [`diag_core::profile::trend`].

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use diag_core::profile::{self, HeapTrend, Profile, SlopeUnit, TrendOptions, Verdict};

use crate::commands::Names;
use crate::commands::snapshot;
use crate::filter::Filter;
use crate::history;
use crate::input::{Input, read_profile};
use crate::remote::{self, Remote};
use crate::stats::{p_value, rising_undecided, snapshots_needed};
use crate::table::{Align, Table};
use crate::units;
use diag_core::wire::HeapHistory;

/// Rows shown in the table when `--top` is not given.
const DEFAULT_TOP: usize = 20;
/// Points drawn in a sparkline; longer series are thinned evenly.
const SPARK_POINTS: usize = 32;

/// What `diag trend` is asked to do.
pub(crate) struct Options {
    /// Three or more snapshot files, or one live service's URL.
    pub(crate) inputs: Vec<String>,
    /// URL mode: read the service's heap history instead of taking snapshots.
    pub(crate) history: bool,
    /// URL mode: time between snapshots (`30s`), checked when used.
    pub(crate) every: String,
    /// URL mode: how many snapshots to take.
    pub(crate) count: u64,
    /// URL mode: where the snapshots go; default: a new directory here.
    pub(crate) out: Option<PathBuf>,
    /// Sites shown (0 = all); default: [`DEFAULT_TOP`] in the table, all in JSON.
    pub(crate) top: Option<usize>,
    /// JSON instead of the table.
    pub(crate) json: bool,
    /// The column followed; default: inuse_space.
    pub(crate) sample: Option<String>,
    /// One group per value of this pprof label.
    pub(crate) by: Option<String>,
    /// One-sided significance level of the trend test.
    pub(crate) alpha: f64,
    /// CI gate: exit 1 if any site is classed growing.
    pub(crate) fail_on_growing: bool,
    /// How functions are named.
    pub(crate) names: Names,
    /// `--focus` and friends.
    pub(crate) filter: Filter,
    /// Bearer token for the service.
    pub(crate) token: Option<String>,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// Runs `diag trend`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let files = match args.inputs.as_slice() {
        [one] if matches!(Input::parse(one), Input::Url(_)) && args.history => {
            let remote = Remote::new(one, args.token.clone(), args.timeout)?;
            let history = read_history(&remote)?;
            let (dir, _) = out_dir(&args, one)?;
            eprintln!(
                "diag: fetching {} heap history points of {} and a snapshot of now into {}",
                history.points.len(),
                remote.base(),
                dir.display()
            );
            fetch_history(&remote, &history, args.token.clone(), &dir)?
        }
        [one] if matches!(Input::parse(one), Input::Url(_)) => take_series(&args, one)?,
        inputs => {
            if let Some(url) = inputs
                .iter()
                .find(|a| matches!(Input::parse(a), Input::Url(_)))
            {
                bail!(
                    "{url}: give either one URL (to take the snapshots) or three or more saved \
                     snapshots, not both"
                );
            }
            if args.history {
                bail!("--history reads a live service: give its URL alone");
            }
            if inputs.len() < profile::MIN_TREND_SNAPSHOTS {
                bail!(
                    "a trend needs at least {} snapshots, got {} (for two, use `diag diff`)",
                    profile::MIN_TREND_SNAPSHOTS,
                    inputs.len()
                );
            }
            inputs.to_vec()
        }
    };
    let mut profiles = files
        .iter()
        .map(|f| read_profile(f))
        .collect::<Result<Vec<Profile>>>()?;
    args.filter.apply_all(&mut profiles);
    warn_on_restarts(&files, &profiles);
    let mut opts = TrendOptions::default();
    opts.sample_type.clone_from(&args.sample);
    opts.alpha = args.alpha;
    opts.app_crates.clone_from(&args.names.app_crates);
    let refs: Vec<&Profile> = profiles.iter().collect();
    if let Some(key) = &args.by {
        // The gate judges sites, not groups: classify them too.
        let growing = if args.fail_on_growing {
            growing_sites(&profile::trend(&refs, &opts).context("computing the trend")?)
        } else {
            Vec::new()
        };
        let mut out = BufWriter::new(io::stdout().lock());
        super::by_label::trend(
            &mut out,
            &refs,
            key,
            &opts,
            super::by_label::Shown::new(args.top, args.json, &args.names),
            &files,
        )?;
        out.flush()?;
        return Ok(gate(&growing, args.alpha));
    }
    let mut trend = profile::trend(&refs, &opts).context("computing the trend")?;
    // Judged on every site, before --top trims the output.
    let growing = if args.fail_on_growing {
        growing_sites(&trend)
    } else {
        Vec::new()
    };
    let limit = match (args.top, args.json) {
        (Some(n), _) => n,
        (None, true) => 0,
        (None, false) => DEFAULT_TOP,
    };

    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        if limit > 0 {
            trend.sites.truncate(limit);
        }
        let mut v = serde_json::to_value(&trend).context("writing JSON")?;
        v["files"] = serde_json::json!(files);
        serde_json::to_writer_pretty(&mut out, &v).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &trend, limit, args.names.full_names)?;
    }
    out.flush()?;
    Ok(gate(&growing, args.alpha))
}

/// The sites classed `growing`, as `(name as tables show it, slope, p)`, fastest first.
fn growing_sites(t: &HeapTrend) -> Vec<(String, String, f64)> {
    let per = match t.slope_per {
        SlopeUnit::Second => "/s",
        SlopeUnit::Snapshot => "/snapshot",
    };
    t.sites
        .iter()
        .filter(|s| s.verdict == Verdict::Growing)
        .map(|s| {
            (
                units::located_as(&s.function, s.file.as_deref(), s.line, false),
                format!(
                    "{}{per}",
                    units::signed(s.slope_bytes.round() as i64, "bytes")
                ),
                s.p_growing,
            )
        })
        .collect()
}

/// `--fail-on growing`: success, or the growing sites on stderr and exit 1.
fn gate(growing: &[(String, String, f64)], alpha: f64) -> ExitCode {
    if growing.is_empty() {
        return ExitCode::SUCCESS;
    }
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "diag: fail: {} site{} growing at p < {alpha} (--fail-on growing):",
        growing.len(),
        if growing.len() == 1 { "" } else { "s" },
    );
    for (site, rate, p) in growing {
        let _ = writeln!(err, "  {rate}  p={p:.2e}  {site}");
    }
    ExitCode::from(super::diff::EXIT_GATE)
}

/// Where URL mode saves its snapshots: `--out`, or a new directory named after the service
/// and the time; created if missing (the bool says whether it was).
fn out_dir(args: &Options, url: &str) -> Result<(PathBuf, bool)> {
    let dir = args.out.clone().unwrap_or_else(|| {
        let base = url.trim_end_matches('/');
        PathBuf::from(format!(
            "diag-trend-{}-{}",
            remote::host_tag(base),
            remote::timestamp()
        ))
    });
    let created = !dir.exists();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir, created))
}

/// The service's heap history listing; an error if it holds too few points for a trend.
pub(crate) fn read_history(remote: &Remote) -> Result<HeapHistory> {
    let history = history::read(remote)?;
    let held = history.points.len();
    if held + 1 < profile::MIN_TREND_SNAPSHOTS {
        bail!(
            "{} holds {held} heap history point{} ({}); a trend needs {} with the snapshot of \
             now: wait for more, or take snapshots with --every",
            remote.base(),
            if held == 1 { "" } else { "s" },
            history::describe(&history),
            profile::MIN_TREND_SNAPSHOTS - 1
        );
    }
    Ok(history)
}

/// Fetches every point of `history` (`/debug/pprof/heap?at=T`), then a snapshot of now, into
/// `dir`; returns their paths, oldest first.
pub(crate) fn fetch_history(
    remote: &Remote,
    history: &HeapHistory,
    token: Option<String>,
    dir: &Path,
) -> Result<Vec<String>> {
    let held = history.points.len();
    let mut files = Vec::with_capacity(held + 1);
    for (k, p) in history.points.iter().enumerate() {
        let file = dir.join(format!("heap-{:03}.pb.gz", k + 1));
        history::save_point(remote, p.time_nanos, &file).with_context(|| {
            format!(
                "fetching history point {} of {held} (if the service dropped it as the oldest \
                 meanwhile, run again)",
                k + 1
            )
        })?;
        files.push(file.display().to_string());
    }
    let saved = snapshot::take(&snapshot::Options {
        url: remote.base().to_owned(),
        output: Some(dir.join(format!("heap-{:03}.pb.gz", held + 1))),
        allocs: false,
        seconds: 0,
        token,
        timeout: remote.timeout(),
    })
    .context("taking the snapshot of now")?;
    files.push(saved.path.display().to_string());
    Ok(files)
}

/// Takes `--count` snapshots of the service at `url`, `--every` apart (measured from the
/// first, so slow answers do not stretch the spacing), into `--out`; returns their paths.
fn take_series(args: &Options, url: &str) -> Result<Vec<String>> {
    let every = units::duration("--every", &args.every, 1.0, 86_400.0)?;
    let count = args.count as usize;
    let (dir, created) = out_dir(args, url)?;
    eprintln!(
        "diag: taking {count} heap snapshots of {url}, {} apart ({} in all), into {}",
        units::span(every),
        units::span(every * (count as u32 - 1)),
        dir.display()
    );
    let start = Instant::now();
    let mut files = Vec::with_capacity(count);
    for k in 0..count {
        let due = every * k as u32;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let path = dir.join(format!("heap-{:03}.pb.gz", k + 1));
        let saved = snapshot::take(&snapshot::Options {
            url: url.to_owned(),
            output: Some(path),
            allocs: false,
            seconds: 0,
            token: args.token.clone(),
            timeout: args.timeout,
        })
        .map_err(|e| {
            if k == 0 {
                // Nothing saved: leave no empty directory behind.
                if created {
                    let _ = std::fs::remove_dir(&dir);
                }
                e.context(format!("taking snapshot 1 of {count}"))
            } else {
                e.context(format!(
                    "taking snapshot {} of {count} ({k} saved in {}: `diag trend \
                     {}/heap-*.pb.gz` reads them once there are {} or more)",
                    k + 1,
                    dir.display(),
                    dir.display(),
                    profile::MIN_TREND_SNAPSHOTS
                ))
            }
        })?;
        eprintln!(
            "diag: snapshot {}/{count} at {}: {} in use -> {}",
            k + 1,
            units::span(start.elapsed()),
            units::bytes(saved.inuse_bytes),
            saved.path.display()
        );
        files.push(saved.path.display().to_string());
    }
    Ok(files)
}

/// A trend across a restart compares two processes' heaps: say so (the result still stands
/// for what it is).
fn warn_on_restarts(files: &[String], profiles: &[Profile]) {
    let pids: Vec<Option<&str>> = profiles.iter().map(|p| p.comment_value("pid")).collect();
    if let Some(i) = pids
        .windows(2)
        .position(|w| w[0].is_some() && w[1].is_some() && w[0] != w[1])
    {
        eprintln!(
            "diag: warning: {} and {} come from different processes (pid {} and {}): a restart \
             empties the heap, so a trend across one misleads",
            files[i],
            files[i + 1],
            pids[i].unwrap_or("?"),
            pids[i + 1].unwrap_or("?")
        );
    }
}

/// The human table: a summary of all sites, then one row for each of the first `limit`
/// (0 = all).
pub(crate) fn write_table(
    w: &mut impl Write,
    t: &HeapTrend,
    limit: usize,
    full_names: bool,
) -> io::Result<()> {
    let n = t.snapshots.len();
    let (first, last) = (&t.snapshots[0], &t.snapshots[n - 1]);
    let over = match t.slope_per {
        SlopeUnit::Second => format!(
            " in {}",
            units::span(Duration::from_nanos(
                (last.time_nanos - first.time_nanos).max(0) as u64
            ))
        ),
        SlopeUnit::Snapshot => " (no timestamps: in the order given, rates per snapshot)".into(),
    };
    writeln!(
        w,
        "{} over {n} snapshots{over}: {} -> {} ({})",
        t.sample_type,
        units::bytes(first.total_bytes),
        units::bytes(last.total_bytes),
        units::signed(last.total_bytes.saturating_sub(first.total_bytes), "bytes"),
    )?;
    let tally = |v: Verdict| t.sites.iter().filter(|s| s.verdict == v).count();
    writeln!(
        w,
        "{} growing, {} plateaued, {} steady, {} shrinking of {} changed sites \
         (growing: the levels rise, Mann-Kendall, and the steps rise, sign test, both at \
         one-sided p < {}; RATE: Theil-Sen slope over all snapshots, RECENT: over the later \
         half)",
        tally(Verdict::Growing),
        tally(Verdict::Plateaued),
        tally(Verdict::Steady),
        tally(Verdict::Shrinking),
        t.sites.len(),
        t.alpha,
    )?;
    if t.min_p_value >= t.alpha {
        writeln!(
            w,
            "note: {n} snapshots cannot show a trend at p < {} (the smallest p they allow is \
             {:.3}); take at least {}",
            t.alpha,
            t.min_p_value,
            snapshots_needed(t.alpha)
        )?;
    }
    let undecided = t
        .sites
        .iter()
        .filter(|s| s.verdict == Verdict::Steady && rising_undecided(s, t.alpha))
        .count();
    if undecided > 0 && t.min_p_value < t.alpha {
        writeln!(
            w,
            "note: {undecided} steady site{} rose and {} still rising, but too few of the \
             steps between snapshots rose to tell a slow leak from a wandering estimate: \
             take more snapshots, or read the heap history (--history)",
            if undecided == 1 { "" } else { "s" },
            if undecided == 1 { "is" } else { "are" },
        )?;
    }
    if t.sites.is_empty() {
        return writeln!(w, "no site changed");
    }
    writeln!(w)?;
    let mut table = Table::new(&[
        ("VERDICT", Align::Left),
        ("RATE", Align::Right),
        ("RECENT", Align::Right),
        ("FIRST", Align::Right),
        ("LAST", Align::Right),
        ("ROSE", Align::Right),
        ("P", Align::Right),
        ("SERIES", Align::Left),
        ("SITE", Align::Left),
    ]);
    let shown = if limit == 0 { t.sites.len() } else { limit };
    let steepest = t
        .sites
        .iter()
        .take(shown)
        .map(|s| s.slope_bytes.abs().max(s.recent_slope_bytes.abs()))
        .fold(0.0, f64::max);
    let unit = rate_unit(steepest, t.slope_per);
    for s in t.sites.iter().take(shown) {
        let p = match s.verdict {
            Verdict::Growing => s.p_growing,
            Verdict::Plateaued => s.p_levels,
            Verdict::Shrinking => s.p_shrinking,
            Verdict::Steady => s.p_growing.min(s.p_shrinking),
        };
        table.row(vec![
            s.verdict.as_str().to_owned(),
            rate(s.slope_bytes, unit),
            rate(s.recent_slope_bytes, unit),
            units::bytes(s.bytes[0]),
            units::bytes(s.bytes[s.bytes.len() - 1]),
            format!("{}/{}", s.rose_in, s.bytes.len() - 1),
            p_value(p).trim_start_matches("= ").to_owned(),
            sparkline(&s.bytes),
            units::located_as(&s.function, s.file.as_deref(), s.line, full_names),
        ]);
    }
    table.write(w)?;
    if shown < t.sites.len() {
        writeln!(
            w,
            "({shown} of {} sites shown; --top 0 shows all)",
            t.sites.len()
        )?;
    }
    Ok(())
}

/// The time unit rates are shown in, one for the whole table so rows compare at a glance:
/// per second when the steepest slope is 1 MiB/s or more, per minute when it is 1 KiB/min or
/// more, else per hour; per snapshot without timestamps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RateUnit {
    name: &'static str,
    /// Slope units (seconds or snapshots) in one of these.
    scale: f64,
}

fn rate_unit(steepest: f64, per: SlopeUnit) -> RateUnit {
    let (name, scale) = match per {
        SlopeUnit::Snapshot => ("snap", 1.0),
        SlopeUnit::Second if steepest.abs() >= 1024.0 * 1024.0 => ("s", 1.0),
        SlopeUnit::Second if steepest.abs() * 60.0 >= 1024.0 => ("min", 60.0),
        SlopeUnit::Second => ("h", 3600.0),
    };
    RateUnit { name, scale }
}

/// A slope in `unit`: `+1.5 MiB/min`.
fn rate(bytes: f64, unit: RateUnit) -> String {
    units::rate((bytes * unit.scale).round() as i64, "bytes", unit.name)
}

/// The series as block characters scaled between its minimum and maximum.
fn sparkline(values: &[i64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let picked: Vec<i64> = if values.len() > SPARK_POINTS {
        (0..SPARK_POINTS)
            .map(|i| values[i * (values.len() - 1) / (SPARK_POINTS - 1)])
            .collect()
    } else {
        values.to_vec()
    };
    let (lo, hi) = (
        *picked.iter().min().unwrap_or(&0),
        *picked.iter().max().unwrap_or(&0),
    );
    picked
        .iter()
        .map(|&v| {
            if hi == lo {
                BARS[3]
            } else {
                let x = (v - lo) as f64 / (hi - lo) as f64;
                BARS[((x * 7.0).round() as usize).min(7)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sparklines() {
        let unit = |v| rate_unit(v, SlopeUnit::Second);
        assert_eq!(rate(2.0 * 1048576.0, unit(2.0 * 1048576.0)), "+2.0 MiB/s");
        assert_eq!(rate(1024.0, unit(1024.0)), "+60.0 KiB/min");
        assert_eq!(rate(-1.0, unit(-1.0)), "-3.5 KiB/h");
        // One unit for a table: the steepest row picks it.
        assert_eq!(rate(1024.0, unit(2.0 * 1048576.0)), "+1.0 KiB/s");
        let snap = rate_unit(0.0, SlopeUnit::Snapshot);
        assert_eq!(rate(4096.0, snap), "+4.0 KiB/snap");
        assert_eq!(sparkline(&[0, 1, 2, 3, 4, 5, 6, 7]), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[5, 5, 5]), "▄▄▄");
        let long: Vec<i64> = (0..100).collect();
        let s = sparkline(&long);
        assert_eq!(s.chars().count(), SPARK_POINTS);
        assert!(s.starts_with('▁') && s.ends_with('█'));
    }
}
