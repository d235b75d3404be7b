//! `diag symbolize IN... [-o OUT] --binary PATH | --debug-dir DIR`: writes named copies of
//! unsymbolized profiles (a service's `?symbolize=0` / `DIAG_SYMBOLIZE=off` profiles), for
//! tools that cannot name them or to keep a named copy next to the raw one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use diag_core::profile::pprof_codec;

/// What `diag symbolize` is asked to do.
pub(crate) struct Options {
    /// The profiles to name.
    pub(crate) inputs: Vec<PathBuf>,
    /// Where to write the named copy (one input only); default: `NAME.sym.pb.gz` beside each.
    pub(crate) output: Option<PathBuf>,
}

/// The default output of `input`: `heap.pb.gz` -> `heap.sym.pb.gz`.
fn default_output(input: &Path) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".to_owned());
    let stem = name
        .strip_suffix(".pb.gz")
        .or_else(|| name.strip_suffix(".pb"))
        .unwrap_or(&name);
    input.with_file_name(format!("{stem}.sym.pb.gz"))
}

/// Runs `diag symbolize`.
pub(crate) fn run(opts: Options) -> Result<ExitCode> {
    if opts.output.is_some() && opts.inputs.len() != 1 {
        bail!(
            "-o names one output: give one input, or leave -o out to write NAME.sym.pb.gz beside each"
        );
    }
    for input in &opts.inputs {
        let what = input.display().to_string();
        let bytes = std::fs::read(input).with_context(|| format!("reading {what}"))?;
        let profile = crate::input::decode(&bytes, &what)?;
        let out = opts.output.clone().unwrap_or_else(|| default_output(input));
        std::fs::write(&out, pprof_codec::encode_gzip(&profile))
            .with_context(|| format!("writing {}", out.display()))?;
        println!("{what} -> {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_sit_beside_their_inputs() {
        assert_eq!(
            default_output(Path::new("/t/heap.pb.gz")),
            PathBuf::from("/t/heap.sym.pb.gz")
        );
        assert_eq!(
            default_output(Path::new("cpu.pb")),
            PathBuf::from("cpu.sym.pb.gz")
        );
        assert_eq!(
            default_output(Path::new("x.json")),
            PathBuf::from("x.json.sym.pb.gz")
        );
    }
}
