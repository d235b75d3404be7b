//! Gathering a report from a live service: heap snapshots across the window (or its heap
//! history with `--since`), a CPU profile over the same window, `/debug/tasks` and two
//! scrapes of `/metrics`.
//!
//! `/debug/tasks` and `/metrics` are read through one function each ([`fetch_tasks`],
//! [`fetch_metrics`]), the one place to change when their wire types change.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use diag_core::profile::Profile;

use super::{Report, ReportOptions};
use crate::history;
use crate::remote::Remote;
use crate::scrape::{self, Scrape};
use crate::units;

/// Heap snapshots taken across the window: enough for the trend test to call a leak growing
/// (it needs six).
const SNAPSHOTS: u32 = 7;
/// CPU sampling frequency, Hz.
const CPU_HZ: u32 = diag_core::cpu::DEFAULT_FREQUENCY;
/// Extra time a CPU profile may take beyond its length (symbolizing, answering).
const CPU_SLACK: Duration = Duration::from_secs(60);

/// How to gather from a live service.
pub(crate) struct LiveOptions {
    /// The debug listener's base URL.
    pub(crate) url: String,
    /// The window: seconds between the first and last snapshot, and the CPU profile's length.
    pub(crate) seconds: u64,
    /// `--since`: take the earlier heap from the service's heap history instead of waiting.
    pub(crate) since: Option<Duration>,
    /// Bearer token.
    pub(crate) token: Option<String>,
    /// Timeout of each request (the CPU profile gets its length on top).
    pub(crate) timeout: Duration,
    /// Shared options.
    pub(crate) report: ReportOptions,
}

/// `/debug/tasks` of the service.
pub(crate) fn fetch_tasks(remote: &Remote) -> Result<diag_core::wire::Tasks> {
    Ok(remote.get_tasks()?.0)
}

/// One scrape of the service's `/metrics`.
pub(crate) fn fetch_metrics(remote: &Remote) -> Result<Scrape> {
    scrape::scrape(remote)
}

/// Gathers the report from the service (see the module docs); progress on stderr.
pub(crate) fn gather_live(opts: &LiveOptions) -> Result<Report> {
    let remote = Remote::new(&opts.url, opts.token.clone(), opts.timeout)?;
    let base = remote.base().to_owned();
    let mut report = Report {
        source: base.clone(),
        ..Report::default()
    };
    let metrics_start = fetch_metrics(&remote)
        .map_err(|e| report.notes.push(format!("no route table: {e:#}")))
        .ok();

    let cpu_remote = Remote::new(&base, opts.token.clone(), opts.timeout + CPU_SLACK)?;
    let cpu_path = format!(
        "/debug/pprof/profile?seconds={}&frequency={CPU_HZ}",
        opts.seconds
    );
    let start = Instant::now();
    let heaps = std::thread::scope(|scope| -> Result<_> {
        let cpu = scope.spawn(|| cpu_remote.get_profile(&cpu_path));
        let heaps = match opts.since {
            Some(since) => from_history(&remote, since, opts.seconds, start)?,
            None => across_window(&remote, opts.seconds, start)?,
        };
        let cpu = cpu
            .join()
            .map_err(|_| anyhow!("the CPU profile thread panicked"))?;
        Ok((heaps, cpu))
    });
    let (heaps, cpu) = heaps?;
    eprintln!("diag: gathered in {}", units::span(start.elapsed()));

    report.add_heaps(heaps, &opts.report)?;
    match cpu.and_then(|reply| crate::input::decode(&reply.body, &format!("{base}{cpu_path}"))) {
        Ok(p) => report.add_cpu(&format!("{base}{cpu_path}"), &p, &opts.report)?,
        Err(e) => report.notes.push(format!("no CPU profile: {e:#}")),
    }
    match fetch_tasks(&remote) {
        Ok(v) => report.tasks = Some(v),
        Err(e) => report.notes.push(format!("no runtime health: {e:#}")),
    }
    if let Some(a) = metrics_start {
        match fetch_metrics(&remote) {
            Ok(b) => {
                let secs = start.elapsed().as_secs_f64();
                report.routes = Some(scrape::diff(&base, &a, &b, secs));
            }
            Err(e) => report.notes.push(format!("no route table: {e:#}")),
        }
    }
    Ok(report)
}

/// One heap snapshot of now.
fn snapshot(remote: &Remote) -> Result<Profile> {
    let reply = remote.get_profile("/debug/pprof/heap")?;
    crate::input::decode(
        &reply.body,
        &format!("the heap snapshot of {}", remote.base()),
    )
}

/// [`SNAPSHOTS`] heap snapshots evenly across `seconds` from `start`.
fn across_window(remote: &Remote, seconds: u64, start: Instant) -> Result<Vec<(String, Profile)>> {
    let every = Duration::from_secs(seconds) / (SNAPSHOTS - 1);
    let mut heaps = Vec::new();
    for k in 0..SNAPSHOTS {
        if let Some(wait) = (every * k).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let p = snapshot(remote).with_context(|| format!("heap snapshot {}", k + 1))?;
        eprintln!(
            "diag: heap snapshot {}/{SNAPSHOTS} at {} of {seconds} s (CPU profile running)",
            k + 1,
            units::span(start.elapsed()),
        );
        heaps.push((
            format!("snapshot {} at {}", k + 1, units::span(every * k)),
            p,
        ));
    }
    Ok(heaps)
}

/// The heap history points of the last `since` (at least the one at or before its start),
/// then a snapshot of now once the CPU profile's `seconds` are over.
fn from_history(
    remote: &Remote,
    since: Duration,
    seconds: u64,
    start: Instant,
) -> Result<Vec<(String, Profile)>> {
    let h = history::read(remote)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let Some((first, short)) = history::point_before(&h.points, now, since) else {
        bail!(
            "{} holds no heap history point yet ({}): run without --since",
            remote.base(),
            history::describe(&h)
        );
    };
    if short {
        eprintln!(
            "diag: the heap history of {} is shorter than {}: starting at its oldest point",
            remote.base(),
            units::span(since)
        );
    }
    let dir = std::env::temp_dir().join(format!("diag-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let points: Vec<_> = h
        .points
        .iter()
        .filter(|p| p.time_nanos >= first.time_nanos)
        .copied()
        .collect();
    let mut heaps = Vec::new();
    let result = (|| -> Result<()> {
        for (k, p) in points.iter().enumerate() {
            let file = dir.join(format!("heap-{k:03}.pb.gz"));
            history::save_point(remote, p.time_nanos, &file)?;
            let prof = read_file(&file)?;
            let ago = Duration::from_nanos(now.saturating_sub(p.time_nanos).max(0) as u64);
            eprintln!(
                "diag: heap history point {}/{} ({} ago)",
                k + 1,
                points.len(),
                units::span(ago)
            );
            heaps.push((format!("history point of {} ago", units::span(ago)), prof));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.context("fetching the heap history")?;
    if let Some(wait) = Duration::from_secs(seconds).checked_sub(start.elapsed()) {
        eprintln!("diag: waiting {} for the CPU profile", units::span(wait));
        std::thread::sleep(wait);
    }
    heaps.push(("snapshot of now".to_owned(), snapshot(remote)?));
    Ok(heaps)
}

fn read_file(path: &std::path::Path) -> Result<Profile> {
    crate::input::read_profile(&path.display().to_string())
}
