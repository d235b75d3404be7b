//! `diag ages FILE|URL`: how old each site's live bytes are in one heap snapshot, and what
//! that says (leak-like since when and how fast, a bounded cache and its window, young
//! garbage, startup state). The rule is `diag_core::profile::ages::rule`'s. With `--at DURATION`
//! the snapshot is the heap history point the service recorded that long ago.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use diag_core::profile::{AGE_BUCKETS, AgeVerdict, Ages, AgesOptions, Profile, SiteAges};
use serde::Serialize;

use crate::history;
use crate::input::{Input, read_profile};
use crate::remote::{Remote, timestamp_at};
use crate::table::{Align, Table};
use crate::units;

/// What `diag ages` is asked to do.
pub(crate) struct Options {
    /// A saved live heap profile, or a service's debug listener URL.
    pub(crate) input: String,
    /// URL mode: the heap history point from this long ago (a duration), not the heap now.
    pub(crate) at: Option<String>,
    /// Sites shown, most live bytes first (0 = all).
    pub(crate) top: usize,
    /// JSON instead of the table.
    pub(crate) json: bool,
    /// How sites are found and named.
    pub(crate) names: super::Names,
    /// Bearer token for the service.
    pub(crate) token: Option<String>,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// Runs `diag ages`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let (profile, what) = match (Input::parse(&args.input), &args.at) {
        (Input::Url(url), None) => fetch_heap(url, &args)?,
        (Input::Url(url), Some(at)) => {
            let at = units::duration("--at", at, 0.0, 366.0 * 86_400.0)?;
            fetch_point(url, at, &args)?
        }
        (Input::File(_), None) => (read_profile(&args.input)?, args.input.clone()),
        (Input::File(_), Some(_)) => bail!(
            "--at reads a live service's heap history: give its URL (e.g. \
             http://127.0.0.1:6060); a saved history point is read as a file without --at"
        ),
    };
    let mut opts = AgesOptions::default();
    opts.app_crates = args.names.app_crates.clone();
    let mut ages = diag_core::profile::ages(&profile, &opts)
        .with_context(|| format!("reading the ages of {what}"))?;
    if args.top > 0 {
        ages.sites.truncate(args.top);
    }
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &Json::from(&ages)).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &ages, args.names.full_names)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The JSON shape: the snapshot's uptime and time, and the sites (the contract of
/// [`SiteAges`]).
#[derive(Serialize)]
struct Json<'a> {
    uptime_secs: f64,
    time_unix_secs: f64,
    sites: &'a [SiteAges],
}

impl<'a> From<&'a Ages> for Json<'a> {
    fn from(a: &'a Ages) -> Self {
        Self {
            uptime_secs: a.uptime_secs,
            time_unix_secs: a.time_unix_secs,
            sites: &a.sites,
        }
    }
}

/// Up to `n` lines naming the leak-like sites of `profile` by the ages of their live bytes,
/// most live bytes first (`leak-like: myapp::leak 23.4 MiB, growing since 01:38:31 UTC,
/// +400.0 KiB/s`); none if the profile has no ages.
pub(crate) fn leak_like_lines(profile: &Profile, n: usize) -> Vec<String> {
    let Ok(ages) = diag_core::profile::ages(profile, &AgesOptions::default()) else {
        return Vec::new();
    };
    ages.sites
        .iter()
        .filter(|s| s.verdict == AgeVerdict::LeakLike)
        .take(n)
        .map(|s| {
            format!(
                "leak-like: {} {}, {} (diag ages)",
                s.short,
                units::bytes(s.live_bytes),
                detail(s, ages.time_unix_secs)
            )
        })
        .collect()
}

/// The live heap profile of the service at `url`.
fn fetch_heap(url: &str, args: &Options) -> Result<(Profile, String)> {
    let remote = Remote::new(url, args.token.clone(), args.timeout)?;
    let path = "/debug/pprof/heap";
    let reply = remote.get_profile(path)?;
    let what = format!("{}{path}", remote.base());
    Ok((crate::input::decode(&reply.body, &what)?, what))
}

/// The heap history point of the service at `url` recorded `at` ago (its oldest if the
/// history is shorter, said on stderr).
fn fetch_point(url: &str, at: Duration, args: &Options) -> Result<(Profile, String)> {
    let remote = Remote::new(url, args.token.clone(), args.timeout)?;
    let (point, _) = history::point_ago(
        &remote,
        at,
        "read its heap now without --at",
        "reading its oldest point",
    )?;
    let path = format!("/debug/pprof/heap?at={}", point.time_nanos);
    let reply = remote.get_profile(&path)?;
    let what = format!("{}{path}", remote.base());
    Ok((crate::input::decode(&reply.body, &what)?, what))
}

/// `HH:MM:SS UTC` of `secs` since the Unix epoch, with the date (`YYYY-mm-dd`) first unless it
/// is the day of `today`.
pub(crate) fn clock(secs: f64, today: f64) -> String {
    let t = timestamp_at(secs.round() as i64);
    let n = timestamp_at(today.round() as i64);
    let hms = format!("{}:{}:{} UTC", &t[9..11], &t[11..13], &t[13..15]);
    if t[..8] == n[..8] {
        hms
    } else {
        format!("{}-{}-{} {hms}", &t[..4], &t[4..6], &t[6..8])
    }
}

/// A duration in seconds for people (`59s`, `1h2m`).
fn secs(s: f64) -> String {
    units::span(Duration::from_secs_f64(s.max(0.0)))
}

/// A rate of growth for people: per hour when slow (`+12.0 MiB/h`), else per second.
pub(crate) fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec.abs() < 1024.0 {
        units::rate((bytes_per_sec * 3600.0).round() as i64, "bytes", "h")
    } else {
        units::rate(bytes_per_sec.round() as i64, "bytes", "s")
    }
}

/// One bar per age bucket, youngest first, scaled to the fullest (` ` for none).
fn sparkline(bytes: &[i64; 8]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = bytes.iter().copied().max().unwrap_or(0);
    bytes
        .iter()
        .map(|&b| {
            if b <= 0 || max <= 0 {
                ' '
            } else {
                BARS[((b as f64 / max as f64) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// What a verdict adds: since when and how fast, or the window.
pub(crate) fn detail(s: &SiteAges, now: f64) -> String {
    match s.verdict {
        AgeVerdict::LeakLike => match (s.onset_unix_secs, s.rate_bytes_per_sec) {
            (Some(onset), Some(r)) => format!("growing since {}, {}", clock(onset, now), rate(r)),
            _ => String::new(),
        },
        AgeVerdict::Bounded => s
            .window_secs
            .map(|w| format!("window {}", secs(w)))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn write_table(w: &mut impl Write, a: &Ages, full_names: bool) -> io::Result<()> {
    let live: i64 = a.sites.iter().map(|s| s.live_bytes).sum();
    writeln!(
        w,
        "live bytes by age, {} site{} shown ({}); process up {}; snapshot at {}",
        a.sites.len(),
        if a.sites.len() == 1 { "" } else { "s" },
        units::bytes(live),
        secs(a.uptime_secs),
        clock(a.time_unix_secs, a.time_unix_secs),
    )?;
    if a.sites.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    let mut table = Table::new(&[
        ("VERDICT", Align::Left),
        ("LIVE", Align::Right),
        ("MEDIAN", Align::Right),
        ("OLDEST", Align::Right),
        (">10m", Align::Right),
        ("AGES", Align::Left),
        ("SAMPLES", Align::Right),
        ("SINCE / WINDOW", Align::Left),
        ("SITE", Align::Left),
    ]);
    for s in &a.sites {
        table.row(vec![
            s.verdict.as_str().to_owned(),
            units::bytes(s.live_bytes),
            secs(s.median_age_secs),
            secs(s.oldest_age_secs),
            units::percent(s.share_older_than_600s * 100.0),
            format!("[{}]", sparkline(&s.bucket_bytes)),
            s.samples.to_string(),
            detail(s, a.time_unix_secs),
            if full_names {
                s.site.clone()
            } else {
                s.short.clone()
            },
        ]);
    }
    table.write(w)?;
    let buckets: Vec<&str> = AGE_BUCKETS.iter().map(|b| b.0).collect();
    writeln!(
        w,
        "\nAGES: live bytes by age, one bar each for {}. The rule: README, \"Ages\".",
        buckets.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_rates_and_bars() {
        // 2026-12-07 01:40:05 UTC.
        let t = 1_796_607_605.0;
        assert_eq!(clock(t, t), "01:40:05 UTC");
        assert_eq!(clock(t - 86_400.0, t), "2026-12-06 01:40:05 UTC");
        assert_eq!(rate(409_600.0), "+400.0 KiB/s");
        assert_eq!(rate(100.0), "+351.6 KiB/h");
        assert_eq!(sparkline(&[0, 10, 70, 0, 0, 0, 0, 0]), " ▂█     ");
    }
}
