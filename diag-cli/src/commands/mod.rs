//! One module per subcommand, each with its plain `Options` (built from the parsed flags in
//! `cli/options.rs`) and `run(options) -> Result<ExitCode>`.

pub(crate) mod ages;
pub(crate) mod by_label;
pub(crate) mod demo;
pub(crate) mod diff;
pub(crate) mod flamegraph;
pub(crate) mod leaks;
pub(crate) mod list;
pub(crate) mod report;
pub(crate) mod snapshot;
pub(crate) mod symbolize;
pub(crate) mod tasks;
pub(crate) mod top;
pub(crate) mod top_live;
pub(crate) mod trend;

/// How functions are named and which are the application's (`--app-crates`,
/// `--full-names`); shared by the commands that show sites or functions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    /// Crates of the application besides those the profile shows or records.
    pub(crate) app_crates: Vec<String>,
    /// Full function names (generic arguments, closure and async bodies).
    pub(crate) full_names: bool,
}

/// Which column and which frame counts as flat (`--sample`, `--sites`, `--leaf`); for `top`
/// and `list`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flat {
    /// The column to show; default: the profile's own.
    pub(crate) sample: Option<String>,
    /// Flat is the allocation site (the innermost application frame).
    pub(crate) sites: bool,
    /// Flat is the innermost frame, whatever it is.
    pub(crate) leaf: bool,
}
