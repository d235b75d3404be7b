//! The flags several subcommands share, as clap parses them; `cli/options.rs` turns each
//! into the plain options the commands take.

use std::path::PathBuf;

use clap::Args;

/// How to reach a live service's debug listener; shared by the commands that take a URL.
#[derive(Debug, Args)]
pub(crate) struct RemoteArgs {
    /// Bearer token for a listener started with DIAG_TOKEN.
    #[arg(long, env = "DIAG_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Give up on a request after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) timeout: u64,
}

/// How functions are named and which are the application's; shared by the commands that
/// show sites or functions.
#[derive(Debug, Args)]
pub(crate) struct NamesArgs {
    /// Crates of the application (comma-separated crate names), besides those the profile
    /// shows with their source files and the service's binary crate it records: a site is the
    /// innermost frame of one of these, never a dependency's. Needed for builds with
    /// `debug = false` whose application spans several crates.
    #[arg(
        long,
        value_name = "CRATES",
        env = "DIAG_APP_CRATES",
        value_delimiter = ','
    )]
    pub(crate) app_crates: Vec<String>,
    /// Show functions with their full names (generic arguments, closure and async bodies);
    /// by default tables and flamegraph labels elide generic arguments, as pprof does.
    #[arg(long)]
    pub(crate) full_names: bool,
}

/// Which column and which frame count, for `top` and `list`.
#[derive(Debug, Args)]
pub(crate) struct FlatArgs {
    /// The column to show (default: inuse_space for heap, cpu for CPU profiles).
    #[arg(long, value_name = "TYPE")]
    pub(crate) sample: Option<String>,
    /// Flat is the allocation site: the innermost frame of the application (std, allocator and
    /// dependency frames are folded into it)
    /// (the default for heap profiles).
    #[arg(long, conflicts_with = "leaf")]
    pub(crate) sites: bool,
    /// Flat is the innermost frame, whatever it is (the default for CPU profiles).
    #[arg(long)]
    pub(crate) leaf: bool,
}

/// The filter options, shared by every command that reads profiles.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Keep only stacks with a frame whose function or file matches REGEX.
    #[arg(long, value_name = "REGEX", value_parser = crate::filter::parse_regex)]
    pub(crate) focus: Option<regex_lite::Regex>,
    /// Drop the stacks with a frame whose function or file matches REGEX.
    #[arg(long, value_name = "REGEX", value_parser = crate::filter::parse_regex)]
    pub(crate) ignore: Option<regex_lite::Regex>,
    /// Remove the frames whose function or file matches REGEX from every stack (their values
    /// go to the frames around them).
    #[arg(long, value_name = "REGEX", value_parser = crate::filter::parse_regex)]
    pub(crate) hide: Option<regex_lite::Regex>,
    /// Keep only samples whose pprof label KEY (route, task, thread, ...) matches REGEX
    /// (repeatable: a sample must match each).
    #[arg(long, value_name = "KEY=REGEX", value_parser = crate::filter::parse_tag)]
    pub(crate) tag_focus: Vec<crate::filter::TagFilter>,
    /// Drop the samples whose pprof label KEY matches REGEX (repeatable: any match drops).
    #[arg(long, value_name = "KEY=REGEX", value_parser = crate::filter::parse_tag)]
    pub(crate) tag_ignore: Vec<crate::filter::TagFilter>,
}

/// Where the files that name unsymbolized profiles are; shared by the commands that read
/// profiles.
#[derive(Debug, Args)]
pub(crate) struct SymbolArgs {
    /// A binary (or its debug file) of the profiled service or one of its libraries, matched
    /// to the profile by GNU build ID; repeatable. With it, profiles are fetched unsymbolized
    /// (`?symbolize=0`) and named here, so the service never reads its debug info.
    #[arg(long = "binary", value_name = "PATH", global = true)]
    pub(crate) binaries: Vec<PathBuf>,
    /// A tree of debug files by build ID (`DIR/.build-id/ab/cdef....debug`, as
    /// `/usr/lib/debug`); repeatable. Fetches profiles unsymbolized, as --binary does.
    #[arg(long = "debug-dir", value_name = "DIR", global = true)]
    pub(crate) debug_dirs: Vec<PathBuf>,
}
