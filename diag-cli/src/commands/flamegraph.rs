//! `diag flamegraph FILE`: render a saved profile as an SVG.
//! `diag flamegraph URL`: profile a live service's CPU, save the raw profile, render the SVG.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use diag_core::profile::{self, FlameOptions, Profile};

use crate::filter::Filter;
use crate::input::{Input, fetch_cpu, read_profile};

/// What `diag flamegraph` is asked to do.
pub(crate) struct Options {
    /// Keep the samples of diag's own threads.
    pub(crate) include_diag: bool,
    /// The profile, or a live service's URL (its CPU, profiled now).
    pub(crate) file: String,
    /// Where the SVG goes (`-`: stdout); default: the input's name with `.svg`.
    pub(crate) output: Option<PathBuf>,
    /// The column drawn; default: the profile's own.
    pub(crate) sample: Option<String>,
    /// The title.
    pub(crate) title: Option<String>,
    /// An icicle graph: stacks reversed.
    pub(crate) reverse: bool,
    /// Root at one node per value of this pprof label.
    pub(crate) by: Option<String>,
    /// Frames narrower than this many pixels are left out.
    pub(crate) min_width: f64,
    /// Labels with full function names.
    pub(crate) full_names: bool,
    /// Every frame, runtime and dependency frames not collapsed.
    pub(crate) all_frames: bool,
    /// `--focus` and friends.
    pub(crate) filter: Filter,
    /// URL mode: seconds to profile for.
    pub(crate) seconds: Option<u64>,
    /// URL mode: sampling frequency in Hz.
    pub(crate) frequency: Option<u32>,
    /// URL mode: bearer token for the service.
    pub(crate) token: Option<String>,
}

/// Runs `diag flamegraph`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let mut opts = FlameOptions::default();
    opts.title.clone_from(&args.title);
    opts.reverse = args.reverse;
    opts.min_width = args.min_width;
    opts.full_names = args.full_names;
    opts.collapse = !args.all_frames;
    opts.sample_type.clone_from(&args.sample);
    let (mut p, output) = match Input::parse(&args.file) {
        Input::File(_) => {
            if args.seconds.is_some() || args.frequency.is_some() {
                bail!(
                    "--seconds and --frequency apply to a live service's URL, not to the saved \
                     profile {}",
                    args.file
                );
            }
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| default_output(&args.file));
            (read_profile(&args.file)?, output)
        }
        Input::Url(url) => from_url(url, &args, &mut opts)?,
    };
    // The raw profile of URL mode is saved as served; the drawing is filtered.
    crate::filter::leave_out_diag(&mut p, args.include_diag);
    args.filter.apply_all([&mut p]);
    // --by LABEL: one root per value of the label. Otherwise CPU profiles are rooted at their
    // `thread` label (heap profiles carry it too, but a heap split by worker thread is noise).
    let p = match &args.by {
        Some(key) => {
            profile::require_label([&p], key)?;
            profile::label_rooted(&p, key)
        }
        None if p.sample_index("cpu").is_some() => diag_core::cpu::thread_rooted(&p),
        None => p,
    };
    if output.as_os_str() == "-" {
        let mut out = BufWriter::new(io::stdout().lock());
        profile::flamegraph(&p, &opts, &mut out)
            .with_context(|| format!("drawing {}", args.file))?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Render to memory first so a failure leaves no half-written file.
    let mut svg = Vec::new();
    profile::flamegraph(&p, &opts, &mut svg).with_context(|| format!("drawing {}", args.file))?;
    std::fs::write(&output, svg).with_context(|| format!("writing {}", output.display()))?;
    eprintln!("diag: flamegraph written to {}", output.display());
    Ok(ExitCode::SUCCESS)
}

/// Profiles the CPU of the service at `url`, saves the raw profile beside the SVG's path
/// (`<name>.pb.gz`), and returns the profile and the SVG's path.
fn from_url(url: &str, args: &Options, opts: &mut FlameOptions) -> Result<(Profile, PathBuf)> {
    let seconds = args.seconds.unwrap_or(diag_core::cpu::DEFAULT_SECONDS);
    let frequency = args.frequency.unwrap_or(diag_core::cpu::DEFAULT_FREQUENCY);
    let fetched = fetch_cpu(url, args.token.clone(), seconds, frequency)?;
    let default_stem = format!(
        "cpu-{}-{}",
        crate::remote::host_tag(&fetched.base),
        crate::remote::timestamp()
    );
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{default_stem}.svg")));
    let raw = raw_path(&output, &default_stem);
    std::fs::write(&raw, &fetched.bytes)
        .with_context(|| format!("writing the raw profile {}", raw.display()))?;
    eprintln!(
        "diag: {} samples; raw profile saved to {}",
        fetched.profile.total(0),
        raw.display()
    );
    // The service's own account of what it caught: the process's CPU over the window beside
    // the profile's total, and any truncated or lost samples.
    for c in &fetched.profile.comments {
        if c.starts_with("process CPU in the window") || c.starts_with("samples: ") {
            eprintln!("diag: {c}");
        }
    }
    if opts.title.is_none() {
        opts.title = Some(format!(
            "CPU flame graph: {}, {seconds} s at {frequency} Hz",
            fetched.base
        ));
    }
    if opts.sample_type.is_none() && fetched.profile.sample_index("samples").is_some() {
        opts.sample_type = Some("samples".to_owned());
    }
    Ok((fetched.profile, output))
}

/// `out/cpu.svg` -> `out/cpu.pb.gz`; for stdout (`-`), `<default_stem>.pb.gz` here.
fn raw_path(svg: &Path, default_stem: &str) -> PathBuf {
    if svg.as_os_str() == "-" {
        return PathBuf::from(format!("{default_stem}.pb.gz"));
    }
    let name = svg
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(default_stem);
    let stem = name.strip_suffix(".svg").unwrap_or(name);
    let stem = if stem.is_empty() { default_stem } else { stem };
    svg.with_file_name(format!("{stem}.pb.gz"))
}

/// `heap-1.pb.gz` -> `heap-1.svg`, in the current directory.
fn default_output(input: &str) -> PathBuf {
    let name = match Input::parse(input) {
        Input::File(path) => path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("profile")
            .to_owned(),
        Input::Url(_) => "profile".to_owned(),
    };
    let mut stem = name.as_str();
    for ext in [".gz", ".pb", ".pprof", ".json", ".prof"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    if stem.is_empty() {
        stem = "profile";
    }
    Path::new(&format!("{stem}.svg")).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_names() {
        assert_eq!(
            default_output("dir/heap-1.pb.gz"),
            PathBuf::from("heap-1.svg")
        );
        assert_eq!(
            default_output("dhat-heap.json"),
            PathBuf::from("dhat-heap.svg")
        );
        assert_eq!(default_output("cpu.pprof"), PathBuf::from("cpu.svg"));
        assert_eq!(default_output(".gz"), PathBuf::from("profile.svg"));
        assert_eq!(default_output("http://h:1"), PathBuf::from("profile.svg"));
    }

    #[test]
    fn raw_profile_goes_beside_the_svg() {
        assert_eq!(
            raw_path(Path::new("out/cpu.svg"), "d"),
            PathBuf::from("out/cpu.pb.gz")
        );
        assert_eq!(
            raw_path(Path::new("flame"), "d"),
            PathBuf::from("flame.pb.gz")
        );
        assert_eq!(
            raw_path(Path::new("-"), "cpu-h-1"),
            PathBuf::from("cpu-h-1.pb.gz")
        );
        assert_eq!(raw_path(Path::new(".svg"), "d"), PathBuf::from("d.pb.gz"));
    }
}
