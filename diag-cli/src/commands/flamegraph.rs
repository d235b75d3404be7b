//! `diag flamegraph FILE`: render a saved profile as an SVG.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use diag_core::profile::{self, FlameOptions};

use crate::cli::FlamegraphArgs;
use crate::input::{Input, read_profile};

/// Runs `diag flamegraph`.
pub(crate) fn run(args: FlamegraphArgs) -> Result<ExitCode> {
    let p = read_profile(&args.file)?;
    let mut opts = FlameOptions::default();
    opts.title.clone_from(&args.title);
    opts.reverse = args.reverse;
    opts.min_width = args.min_width;
    opts.sample_type.clone_from(&args.sample);
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.file));
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
}
