//! `diag top URL`: a live view of a service from consecutive scrapes of its Prometheus
//! `/metrics` (see [`crate::scrape`]): per route requests per second, p50/p95/p99 and error %,
//! and the process's RSS, CPU %, event-loop lag and live heap; refreshed every interval, or
//! one sample with `--once`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::commands::top::Options;
use crate::remote::Remote;
use crate::scrape::{Sample, diff, scrape};
use crate::table::{Align, Table};
use crate::units;

/// Parses `2s`, `500ms`, `1.5s`, `1m`; at least 100 ms, at most one hour.
pub(crate) fn parse_interval(s: &str) -> Result<Duration> {
    crate::units::duration("--interval", s, 0.1, 3600.0)
}

/// Runs `diag top URL` (live view, or one sample with `--once`).
pub(crate) fn run(url: &str, args: &Options) -> Result<ExitCode> {
    let interval = parse_interval(&args.interval)?;
    let base = url.trim_end_matches('/');
    let base = base.strip_suffix("/metrics").unwrap_or(base);
    let remote = Remote::new(base, args.token.clone(), args.timeout)?;
    let mut prev = scrape(&remote)?;
    loop {
        std::thread::sleep(interval);
        let next = scrape(&remote)?;
        let secs = match (prev.at, next.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => interval.as_secs_f64(),
        };
        let sample = diff(remote.base(), &prev, &next, secs);
        let mut out = io::stdout().lock();
        if args.json {
            serde_json::to_writer(&mut out, &sample).context("writing JSON")?;
            writeln!(out)?;
        } else {
            if !args.once {
                // Clear the screen and go home, like top(1).
                write!(out, "\x1b[2J\x1b[H")?;
            }
            write_view(&mut out, &sample, args.top)?;
        }
        out.flush()?;
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        prev = next;
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

/// The human view: a process line and a table of routes (`top` rows; 0 = all).
pub(crate) fn write_view(w: &mut impl Write, s: &Sample, top: usize) -> io::Result<()> {
    let p = &s.process;
    writeln!(
        w,
        "{}  every {:.1}s   RSS {}   CPU {}   lag {}   live heap {}   threads {}",
        s.url,
        s.interval_seconds,
        opt(p.rss_bytes, |v| units::bytes(v as i64)),
        opt(p.cpu_percent, |v| format!("{v:.1}%")),
        opt(p.lag_ms, units::millis),
        opt(p.heap_live_bytes, |v| units::bytes(v as i64)),
        opt(p.threads, |v| format!("{v:.0}")),
    )?;
    writeln!(w)?;
    let mut table = Table::new(&[
        ("RPS", Align::Right),
        ("P50", Align::Right),
        ("P95", Align::Right),
        ("P99", Align::Right),
        ("ERR%", Align::Right),
        ("ROUTE", Align::Left),
    ]);
    let n = if top == 0 { s.routes.len() } else { top };
    for r in s.routes.iter().take(n) {
        table.row(vec![
            format!("{:.1}", r.rps),
            opt(r.p50_ms, units::millis),
            opt(r.p95_ms, units::millis),
            opt(r.p99_ms, units::millis),
            format!("{:.1}", r.error_percent),
            r.route.clone(),
        ]);
    }
    if s.routes.is_empty() {
        writeln!(w, "no requests in this interval")?;
        return Ok(());
    }
    table.write(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("2").is_err());
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("xs").is_err());
    }
}
