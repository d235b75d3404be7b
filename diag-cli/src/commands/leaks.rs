//! `diag leaks URL`: the leak alarm of a live service (`GET /debug/leaks`): which stacks the
//! service itself found growing steadily over its heap history, how fast, and how sure.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use diag_core::profile::sites::{self, SiteRules};
use diag_core::profile::{self, Frame};
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
    /// Crates of the application (`--app-crates`, `DIAG_APP_CRATES`).
    pub(crate) app_crates: Vec<String>,
    /// Bearer token for the service.
    pub(crate) token: Option<String>,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// Runs `diag leaks`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let remote = Remote::new(&args.url, args.token.clone(), args.timeout)?;
    let reply = remote.get("/debug/leaks")?;
    let mut leaks: Leaks = serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "{}/debug/leaks did not answer its JSON (a diag-core older than the leak alarm?)",
            remote.base()
        )
    })?;
    if let Err(e) = name_raw_suspects(&remote, &mut leaks, &args.app_crates) {
        // Asked to name them (--binary, --debug-dir): an error; else the ids stay, with a note.
        if crate::symbols::wants_raw() {
            return Err(e);
        }
        eprintln!("diag: note: suspects left as stack#N: {e:#}");
    }
    site_in_app_crates(&mut leaks, &args.app_crates);
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

/// Names the suspects a service that does not name its stacks (`DIAG_SYMBOLIZE=off`), or could
/// not (a stripped binary), left as `stack#N` with their addresses: the addresses go into a profile with the mappings of the
/// service's unsymbolized heap profile, which the files of `--binary` / `--debug-dir` (or the
/// mapped files themselves, on the service's host) name as `diag top` names raw profiles;
/// each suspect gets the site and stack `diag diff` would show.
fn name_raw_suspects(remote: &Remote, leaks: &mut Leaks, app_crates: &[String]) -> Result<()> {
    // The frames the service named (libc's, from its debug file, in a stripped binary) keep
    // their names; the addresses are named here.
    let raw: Vec<(usize, Vec<Frame>)> = leaks
        .suspects
        .iter()
        .enumerate()
        .filter(|(_, s)| s.site.starts_with("stack#") && !s.stack.is_empty())
        .map(|(i, s)| {
            let frames = s
                .stack
                .iter()
                .map(|f| {
                    f.strip_prefix("0x")
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                        .map_or_else(|| Frame::named(f.as_str()), Frame::raw)
                })
                .collect();
            (i, frames)
        })
        .collect();
    if raw.is_empty() {
        return Ok(());
    }
    let reply = remote.get("/debug/pprof/heap?symbolize=0")?;
    let mut profile = profile::load(&reply.body)
        .with_context(|| format!("reading {}/debug/pprof/heap?symbolize=0", remote.base()))?;
    let template = profile.samples.first().cloned();
    let Some(template) = template else {
        anyhow::bail!("the service's heap profile has no sample to take its shape from");
    };
    profile.samples = raw
        .iter()
        .map(|(_, frames)| {
            let mut s = template.clone();
            s.stack = frames.clone();
            s.labels.clear();
            s
        })
        .collect();
    crate::symbols::name(&mut profile, "the leak suspects' stacks")?;
    let rules = SiteRules::for_profile(&profile).with_app_crates(app_crates);
    for ((i, _), sample) in raw.iter().zip(&profile.samples) {
        let s = &mut leaks.suspects[*i];
        // A site still unnamed (no file here names it) stays the stack's id: the innermost
        // address is often one allocation function every stack shares.
        if let Some(site) = rules
            .site(&sample.stack)
            .filter(|x| !sample.stack[x.index].is_raw())
        {
            s.short = sites::short_name(&site.name);
            s.site = site.name;
        }
        s.stack = sample.stack.iter().map(|f| f.function.clone()).collect();
    }
    Ok(())
}

/// With `--app-crates`: a suspect the service found no application frame for (a build with
/// `debug = false` whose code is a library crate beside the binary: the service knows only the
/// binary's crate) is sited at the innermost frame of those crates, as `diag diff
/// --app-crates` sites it.
fn site_in_app_crates(leaks: &mut Leaks, app_crates: &[String]) {
    if app_crates.is_empty() {
        return;
    }
    for s in &mut leaks.suspects {
        if !s.site.starts_with(sites::NO_APP_FRAME) {
            continue;
        }
        let frames: Vec<Frame> = s.stack.iter().map(|f| Frame::named(f.as_str())).collect();
        let rules = SiteRules::for_stacks([frames.as_slice()]).with_app_crates(app_crates);
        if let Some(site) = rules.site(&frames).filter(|x| x.app) {
            s.short = sites::short_name(&site.name);
            s.site = site.name;
        }
    }
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
             three, and names suspects from 30 (GET {base}/debug/heap/history)"
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
            "\nstack#N: the service does not name its stacks (DIAG_SYMBOLIZE=off) and they \
             could not be named here; `diag leaks {base} --binary BIN` names them"
        )?;
    }
    writeln!(
        w,
        "\nwhat grew: diag diff {base} --since 1h; the series: diag trend {base} --history"
    )
}

#[cfg(test)]
mod tests {
    use diag_core::wire::LeakSuspect;

    use super::*;

    #[test]
    fn app_crates_site_a_suspect_the_service_found_no_application_frame_for() {
        let stack = [
            "alloc::raw_vec::finish_grow",
            "kv_lib::grpc::remember_set",
            "kv_lib::grpc::set::{{closure}}",
            "tokio::runtime::task::raw::poll",
        ];
        let suspect = |site: &str| {
            let mut s = LeakSuspect::default();
            s.site = site.to_owned();
            s.short = sites::short_name(site);
            s.stack = stack.iter().map(|f| (*f).to_owned()).collect();
            s
        };
        let mut leaks = Leaks::default();
        leaks.suspects = vec![
            suspect("[no application frame] kv_lib::grpc::remember_set"),
            suspect("kv_bin::main"),
        ];
        site_in_app_crates(&mut leaks, &[]);
        assert!(leaks.suspects[0].site.starts_with(sites::NO_APP_FRAME));
        site_in_app_crates(&mut leaks, &["kv_lib".to_owned()]);
        assert_eq!(leaks.suspects[0].site, "kv_lib::grpc::remember_set");
        assert_eq!(leaks.suspects[0].short, "kv_lib::grpc::remember_set");
        // A site the service named is the service's.
        assert_eq!(leaks.suspects[1].site, "kv_bin::main");
    }
}
