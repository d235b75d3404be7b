//! `diag report URL` / `diag report FILE...`: one self-contained HTML page from a live service
//! (heap snapshots across a window, a CPU profile over it, runtime health and routes) or from
//! saved profiles, or the latest capture of a capture directory (`DIAG_CAPTURE_DIR`). The gathering and the page are in [`crate::report`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::input::Input;
use crate::report::{self, LiveOptions, Report, ReportOptions};
use crate::units;

/// The window of URL mode when `--seconds` is not given.
pub(crate) const DEFAULT_SECONDS: u64 = 30;
/// Where the page goes when `-o` is not given.
pub(crate) const DEFAULT_OUTPUT: &str = "report.html";

/// What `diag report` is asked to do.
pub(crate) struct Options {
    /// One live service's URL, or saved profiles.
    pub(crate) inputs: Vec<String>,
    /// Where the page goes; default: [`DEFAULT_OUTPUT`].
    pub(crate) output: Option<PathBuf>,
    /// URL mode: the window in seconds; default: [`DEFAULT_SECONDS`].
    pub(crate) seconds: Option<u64>,
    /// URL mode: compare with the heap history from this long ago instead of waiting.
    pub(crate) since: Option<String>,
    /// Crates of the application besides those the profiles show or record.
    pub(crate) app_crates: Vec<String>,
    /// Keep the CPU samples of diag's own threads.
    pub(crate) include_diag: bool,
    /// Bearer token for the service.
    pub(crate) token: Option<String>,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

/// Runs `diag report`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let start = Instant::now();
    let opts = ReportOptions {
        app_crates: args.app_crates.clone(),
        include_diag: args.include_diag,
    };
    let mut args = args;
    if let [dir] = args.inputs.as_slice()
        && crate::captures::is_dir(dir)
    {
        let dir = PathBuf::from(dir);
        let latest = crate::captures::latest(&dir)?;
        eprintln!("{}", latest.describe(&dir));
        args.inputs = [latest.oldest, latest.current]
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    let urls: Vec<&String> = args
        .inputs
        .iter()
        .filter(|a| matches!(Input::parse(a), Input::Url(_)))
        .collect();
    let report = match (urls.as_slice(), args.inputs.len()) {
        ([url], 1) => {
            let since = args
                .since
                .as_deref()
                .map(|s| units::duration("--since", s, 1.0, 366.0 * 86_400.0))
                .transpose()?;
            let seconds = args.seconds.unwrap_or(DEFAULT_SECONDS);
            eprintln!(
                "diag: reporting on {url}: {}a {seconds} s CPU profile, runtime health and routes",
                if since.is_some() {
                    "its heap history, "
                } else {
                    "heap snapshots across "
                }
            );
            report::gather_live(&LiveOptions {
                url: (*url).clone(),
                seconds,
                since,
                token: args.token.clone(),
                timeout: args.timeout,
                report: opts,
            })?
        }
        ([], _) => {
            if args.seconds.is_some() || args.since.is_some() {
                bail!("--seconds and --since apply to a live service's URL, not to saved profiles");
            }
            report::from_files(&args.inputs, &opts)?
        }
        _ => bail!("give one live service's URL, or saved profiles, not both"),
    };
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
    let size = write(&report, &out)?;
    eprintln!(
        "diag: report written to {} ({}, {})",
        out.display(),
        units::bytes(size as i64),
        units::span(start.elapsed())
    );
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `report` to `path`; returns its size in bytes.
pub(crate) fn write(report: &Report, path: &Path) -> Result<usize> {
    if report.diff.is_none() && report.cpu.is_empty() && report.tasks.is_none() {
        bail!(
            "nothing to report: no heap comparison, no CPU profile and no runtime health{}",
            if report.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", report.notes.join("; "))
            }
        );
    }
    let html = report.html();
    std::fs::write(path, &html).with_context(|| format!("writing {}", path.display()))?;
    Ok(html.len())
}
