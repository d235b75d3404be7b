//! `diag leaks URL`: the leak alarm of a live service (`GET /debug/leaks`): which stacks the
//! service itself found growing steadily over its heap history, how fast, and how sure.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use diag_core::wire::Leaks;

use crate::remote::Remote;
use crate::table::{Align, Table};
use crate::units;

/// What `diag leaks` is asked to do.
pub(crate) struct Options {
    /// The debug listener's base URL.
    pub(crate) url: String,
    /// The endpoint's JSON instead of the table.
    pub(crate) json: bool,
    /// Every frame of each suspect's stack, not only the site.
    pub(crate) stacks: bool,
    /// Sites with their full names.
    pub(crate) full_names: bool,
    /// Bearer token for the service.
    pub(crate) token: Option<String>,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// Runs `diag leaks`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let remote = Remote::new(&args.url, args.token.clone(), args.timeout)?;
    let reply = remote.get("/debug/leaks")?;
    let leaks: Leaks = serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "{}/debug/leaks did not answer its JSON (a diag-core older than the leak alarm?)",
            remote.base()
        )
    })?;
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &leaks).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &leaks, remote.base(), &args)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A rate in bytes per second for people: per hour when slow (`+12.0 MiB/h`), else per
/// second.
fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec.abs() < 1024.0 {
        units::rate((bytes_per_sec * 3600.0).round() as i64, "bytes", "h")
    } else {
        units::rate(bytes_per_sec.round() as i64, "bytes", "s")
    }
}

/// The summary line, then one row per suspect.
fn write_table(w: &mut impl Write, l: &Leaks, base: &str, args: &Options) -> io::Result<()> {
    let window = if l.window_secs > 0.0 {
        format!(
            "the last {}",
            units::span(Duration::from_secs_f64(l.window_secs))
        )
    } else {
        "the whole heap history".to_owned()
    };
    if l.checks == 0 {
        return writeln!(
            w,
            "no leak check yet: the service checks at each heap history point once it holds \
             three (GET {base}/debug/heap/history)"
        );
    }
    writeln!(
        w,
        "{} leak suspect{} (growing at p < {} and at least {}, over {window}); last check: {} \
         points over {}, {} stacks that grew, {} of CPU; {} checks so far",
        l.suspects.len(),
        if l.suspects.len() == 1 { "" } else { "s" },
        l.alpha,
        rate(l.min_rate_bytes_per_sec),
        l.points,
        units::span(Duration::from_secs_f64(l.span_secs.max(0.0))),
        l.stacks_checked,
        units::nanos(l.check_cpu_ns as i64),
        l.checks,
    )?;
    if l.suspects.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    let mut table = Table::new(&[
        ("RATE", Align::Right),
        ("RECENT", Align::Right),
        ("P", Align::Right),
        ("FIRST", Align::Right),
        ("LAST", Align::Right),
        ("LABEL", Align::Left),
        ("SITE", Align::Left),
    ]);
    for s in &l.suspects {
        let label = ["route", "task"]
            .iter()
            .find_map(|k| s.labels.get(*k).map(|v| format!("{k}={v}")))
            .unwrap_or_default();
        table.row(vec![
            rate(s.rate_bytes_per_sec),
            rate(s.recent_rate_bytes_per_sec),
            format!("{:.1e}", s.p),
            units::bytes(s.first_bytes as i64),
            units::bytes(s.last_bytes as i64),
            label,
            if args.full_names {
                s.site.clone()
            } else {
                s.short.clone()
            },
        ]);
    }
    table.write(w)?;
    if args.stacks {
        for s in &l.suspects {
            writeln!(w, "\n{} (stack {}):", s.short, s.stack_id)?;
            for f in &s.stack {
                writeln!(w, "    {f}")?;
            }
        }
    }
    if l.suspects.iter().any(|s| s.site.starts_with("stack#")) {
        writeln!(
            w,
            "\nstack#N: the service does not name its stacks (DIAG_SYMBOLIZE=off); `diag top \
             {base} --binary BIN` names its heap profile"
        )?;
    }
    writeln!(
        w,
        "\nwhat grew: diag diff {base} --since 1h; the series: diag trend {base} --history"
    )
}
