//! The command line, declared with clap derive. No logic here beyond dispatch: each
//! subcommand's parsed flags become its plain `commands::<name>::Options` (`cli/options.rs`)
//! and are handed to its `commands::<name>::run`; clap's types stay in `cli/`.
//!
//! To add a subcommand: a variant in [`Command`] with its arguments struct below, its arm in
//! [`Command::run`], its conversion in `cli/options.rs`, and a file `commands/<name>.rs`
//! with `Options` and `run(options) -> Result<ExitCode>`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::commands;

mod ages;
mod common;
mod options;
mod values;
pub(crate) use ages::AgesArgs;
pub(crate) use common::{FilterArgs, FlatArgs, NamesArgs, RemoteArgs, SymbolArgs};

/// Find memory leaks and hot paths in live tokio/axum services.
#[derive(Debug, Parser)]
#[command(
    name = "diag",
    version,
    about,
    propagate_version = true,
    long_about = "Find memory leaks, CPU hot paths and runtime stalls in live tokio/axum services \
that embed diag-core.\n\n\
A leak: `snapshot` twice and `diff`, or `diff URL --since 1h`, then `trend` to tell a leak \
from a cache; `list` shows the source lines. A hot path: `flamegraph URL` or `top URL \
--profile cpu`. Stalls and health: `tasks URL`, `top URL` (routes and process). For a \
ticket: `report URL` writes it all into one self-contained HTML page. `demo` runs it all on a \
built-in leaky service.",
    after_help = "Examples:\n  \
diag demo\n  \
diag diff http://127.0.0.1:6060 --since 1h\n  \
diag flamegraph http://127.0.0.1:6060 --seconds 10 -o cpu.svg"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Files that name unsymbolized profiles (`--binary`, `--debug-dir`), for every command.
    #[command(flatten)]
    pub(crate) symbols: SymbolArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the main job end to end on a built-in leaky service: snapshot, leak, snapshot, diff.
    #[command(after_help = "Examples:\n  diag demo\n  diag demo --out /tmp/demo --requests 300")]
    Demo(DemoArgs),
    /// Pull a heap snapshot (gzip'd pprof) from a live service and save it.
    #[command(
        after_help = "Examples:\n  diag snapshot http://127.0.0.1:6060\n  diag snapshot http://127.0.0.1:6060 -o before.pb.gz\n  diag snapshot http://127.0.0.1:6060 --allocs --seconds 30"
    )]
    Snapshot(SnapshotArgs),
    /// Show which allocation sites grew between two heap snapshots (or two CPU profiles).
    ///
    /// Either may be a live service's URL (its heap now); with one URL and --since, the
    /// earlier one comes from the heap history the service keeps. With a capture directory
    /// (DIAG_CAPTURE_DIR) alone: its latest capture's two files, the heap history's oldest
    /// point against the heap when a suspect appeared or memory neared the limit.
    #[command(
        after_help = "Examples:\n  diag diff before.pb.gz after.pb.gz\n  diag diff /var/lib/myapp/captures\n  diag diff before.pb.gz http://127.0.0.1:6060 --top 5\n  diag diff http://127.0.0.1:6060 --since 1h --json\n  diag diff before.pb.gz after.pb.gz --by route --tag-ignore 'route=^/health$'"
    )]
    Diff(DiffArgs),
    /// Tell leaks from one-off growth: which sites keep growing over three or more snapshots.
    ///
    /// With one URL: take --count snapshots of the live service, --every apart, save them,
    /// then report; or, with --history, fetch the history the service keeps (no waiting).
    /// Each site is classed growing (its levels rise by a Mann-Kendall test and its steps by a
    /// sign test, and it is still rising: six snapshots at least), plateaued (rose, then
    /// levelled off: a cache that filled), steady or shrinking, with its Theil-Sen rate.
    #[command(
        after_help = "Examples:\n  diag trend heap-*.pb.gz\n  diag trend http://127.0.0.1:6060 --every 30s --count 10\n  diag trend http://127.0.0.1:6060 --history\n  diag trend heap-*.pb.gz --by task"
    )]
    Trend(TrendArgs),
    /// How old each site's live bytes are, from one heap snapshot: leak-like (growing
    /// steadily since an onset, with its time and rate), bounded (a cache: its window), young,
    /// old-steady (startup state), mixed, or too few samples.
    #[command(after_help = "Examples:
  diag ages http://127.0.0.1:6060
  diag ages heap.pb.gz --top 5 --json")]
    Ages(AgesArgs),
    /// Show the heaviest functions of one profile (heap or CPU).
    ///
    /// With a URL instead of a FILE: a live view of the service's routes (rps, p50/p95/p99,
    /// error %) and process (RSS, CPU %, event-loop lag, live heap) from its /metrics; or,
    /// with --profile heap|cpu, the hottest functions of a profile fetched from it.
    #[command(
        after_help = "Examples:\n  diag top cpu.pb.gz\n  diag top http://127.0.0.1:6060\n  diag top http://127.0.0.1:6060 --profile cpu --seconds 10"
    )]
    Top(TopArgs),
    /// Show the source of the functions matching REGEX with each line's flat and cumulative
    /// value (like `go tool pprof -list`).
    #[command(
        after_help = "Examples:\n  diag list remember_request heap.pb.gz\n  diag list 'myapp::cache' cpu.pb.gz --source-path ~/src/myapp"
    )]
    List(ListArgs),
    /// Render a profile as a flamegraph SVG.
    #[command(
        after_help = "Examples:\n  diag flamegraph http://127.0.0.1:6060 --seconds 10 -o cpu.svg\n  diag flamegraph heap.pb.gz -o heap.svg\n  diag flamegraph cpu.pb.gz --by route -o routes.svg"
    )]
    Flamegraph(FlamegraphArgs),
    /// Show runtime health of a live service: event-loop lag, busy ratio, slow routes and the
    /// recent blocking events with their stacks.
    #[command(
        after_help = "Examples:\n  diag tasks http://127.0.0.1:6060\n  diag tasks http://127.0.0.1:6060 --json"
    )]
    Tasks(TasksArgs),
    /// The leak alarm of a live service: the stacks whose in-use bytes grow steadily over its
    /// heap history, with rate, p-value and labels (`GET /debug/leaks`).
    #[command(
        after_help = "Examples:\n  diag leaks http://127.0.0.1:6060\n  diag leaks http://127.0.0.1:6060 --json"
    )]
    Leaks(LeaksArgs),
    /// Write one self-contained HTML page for a ticket: the verdict (leak suspects with growth,
    /// rate and p-value, hottest functions, blocking sites, worst routes), the growth table,
    /// a readable differential flamegraph, the CPU flamegraph, trend sparklines, blocking
    /// events and routes.
    ///
    /// With a URL: seven heap snapshots across --seconds (or the heap history of --since) and
    /// a CPU profile over the same window, then /debug/tasks and /metrics. With files: two
    /// heap snapshots give the diff, three or more the trend too, CPU profiles their
    /// flamegraphs. With a capture directory (DIAG_CAPTURE_DIR): its latest capture's two
    /// files. The page loads nothing from the network.
    #[command(
        after_help = "Examples:\n  diag report http://127.0.0.1:6060 --seconds 30 -o report.html\n  diag report http://127.0.0.1:6060 --since 1h\n  diag report before.pb.gz after.pb.gz cpu.pb.gz -o leak.html\n  diag report /var/lib/myapp/captures -o leak.html"
    )]
    Report(ReportArgs),
    /// Name the addresses of unsymbolized profiles (from a service with DIAG_SYMBOLIZE=off,
    /// or fetched with ?symbolize=0) from the service's binary or debug files, and write named
    /// copies.
    ///
    /// Files are matched to the profile's mappings by GNU build ID: --binary (the unstripped
    /// binary, or its debug file), --debug-dir (a .build-id tree, as /usr/lib/debug), the
    /// mapped file itself on the profiled host, and debuginfod (DEBUGINFOD_URLS).
    #[command(
        after_help = "Examples:\n  diag symbolize heap.pb.gz --binary target/release/myapp\n  diag symbolize cpu.pb.gz -o cpu-named.pb.gz --debug-dir ./debug\n  DEBUGINFOD_URLS=http://127.0.0.1:8002 diag symbolize heap.pb.gz"
    )]
    Symbolize(SymbolizeArgs),
}

impl Command {
    /// Runs the chosen subcommand.
    pub(crate) fn run(self) -> Result<ExitCode> {
        match self {
            Command::Demo(args) => commands::demo::run(args.into()),
            Command::Snapshot(args) => commands::snapshot::run(args.into()),
            Command::Diff(args) => commands::diff::run(args.into()),
            Command::Trend(args) => commands::trend::run(args.into()),
            Command::Ages(args) => commands::ages::run(args.into()),
            Command::Top(args) => commands::top::run(args.into()),
            Command::List(args) => commands::list::run(args.into()),
            Command::Flamegraph(args) => commands::flamegraph::run(args.into()),
            Command::Tasks(args) => commands::tasks::run(args.into()),
            Command::Leaks(args) => commands::leaks::run(args.into()),
            Command::Report(args) => commands::report::run(args.into()),
            Command::Symbolize(args) => commands::symbolize::run(args.into()),
        }
    }
}

/// `diag demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Directory for the snapshots and the flamegraph.
    #[arg(long, value_name = "DIR", default_value = "diag-demo")]
    pub(crate) out: PathBuf,
    /// Leaking requests between the two snapshots.
    #[arg(long, value_name = "N", default_value_t = 800, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) requests: u64,
    /// KiB retained by each leaking request.
    #[arg(long, value_name = "KIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=16_384))]
    pub(crate) kb: u64,
}

/// `diag snapshot URL`.
#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The debug listener's base URL, e.g. http://127.0.0.1:6060.
    #[arg(value_name = "URL")]
    pub(crate) url: String,
    /// Where to write the snapshot. Default: heap-<host>-<port>-<UTC time>.pb.gz here.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Fetch /debug/pprof/allocs (allocated space by default) instead of /debug/pprof/heap.
    #[arg(long)]
    pub(crate) allocs: bool,
    /// A delta profile: what changed over the next N seconds (allocated, and still in use),
    /// like Go's `?seconds=N`. Default file: heap-delta-<host>-<port>-<UTC time>.pb.gz.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) seconds: Option<u64>,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// `diag diff A B`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The earlier heap snapshot (pprof .pb.gz / .pb, or dhat-heap.json), or a live service's
    /// diag URL: its heap now (with --since: its heap history); or alone, a capture directory
    /// (DIAG_CAPTURE_DIR): the growth its latest capture holds.
    #[arg(value_name = "BEFORE|DIR")]
    pub(crate) before: String,
    /// The later heap snapshot, or a live service's diag URL: its heap now.
    #[arg(value_name = "AFTER")]
    pub(crate) after: Option<String>,
    /// With one URL: what grew since DURATION ago (e.g. 10m, 1h, 2d), from the heap history
    /// the service keeps, against a snapshot of now. No earlier snapshot needed.
    #[arg(long, value_name = "DURATION", conflicts_with = "after")]
    pub(crate) since: Option<String>,
    /// Where to save the snapshots fetched from URLs (default: here, named after the service
    /// and the time).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Show this many sites (0 = all). Default: 20 in the table, all with --json.
    #[arg(long, value_name = "N")]
    pub(crate) top: Option<usize>,
    /// Print the diff as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write a differential flamegraph of the growth to FILE: frames coloured by their
    /// share of the growth, runtime and dependency frames collapsed, the top site's path
    /// outlined, hover text with before, after and delta.
    #[arg(long, value_name = "FILE")]
    pub(crate) svg: Option<PathBuf>,
    /// With --svg: draw every frame instead of collapsing runtime and dependency frames.
    #[arg(long)]
    pub(crate) all_frames: bool,
    /// Compare this column instead of inuse_space (e.g. alloc_space).
    #[arg(long, value_name = "TYPE")]
    pub(crate) sample: Option<String>,
    /// One group per value of this pprof label (`route`, `task`, `thread`, ...), largest
    /// growth first, each with its before, after and delta and its top sites (--top per
    /// group, default 5); samples without the label form the group `(none)` (JSON
    /// `"value": null`).
    #[arg(long, value_name = "LABEL")]
    pub(crate) by: Option<String>,
    /// CI gate: exit 1, naming the offending sites on stderr, if any site grew by more than
    /// BYTES (plain bytes or with a unit: 512KiB, 10MiB, 1GiB). Errors still exit 2.
    #[arg(long, value_name = "BYTES", value_parser = crate::units::parse_bytes)]
    pub(crate) fail_above: Option<u64>,
    #[command(flatten)]
    pub(crate) names: NamesArgs,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// What `diag trend --fail-on` fails on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FailOn {
    /// Any site classed `growing`.
    Growing,
}

/// `diag trend`.
#[derive(Debug, Args)]
pub(crate) struct TrendArgs {
    /// Three or more heap snapshots (pprof .pb.gz / .pb, or dhat-heap.json), in any order
    /// (they are sorted by their timestamps). Or one URL: a live service's diag listener.
    #[arg(value_name = "SNAPSHOT", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<String>,
    /// URL mode: read the service's heap history (one point a minute over the last hour, by
    /// default) plus a snapshot of now, instead of taking snapshots over time.
    #[arg(long, conflicts_with_all = ["every", "count"])]
    pub(crate) history: bool,
    /// URL mode: time between snapshots, e.g. 30s, 5m, 1h.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub(crate) every: String,
    /// URL mode: how many snapshots to take (six at least can show growth; ten leave room
    /// for intervals in which a slow leak was not sampled).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(3..=200))]
    pub(crate) count: u64,
    /// URL mode: directory to save the snapshots in. Default: diag-trend-<host>-<port>-<UTC
    /// time> here.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Show this many sites (0 = all). Default: 20 in the table, all with --json.
    #[arg(long, value_name = "N")]
    pub(crate) top: Option<usize>,
    /// Print the trend as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Follow this column instead of inuse_space.
    #[arg(long, value_name = "TYPE")]
    pub(crate) sample: Option<String>,
    /// One group per value of this pprof label (`route`, `task`, `thread`, ...), fastest-growing
    /// first, each with its before, after and delta and its top sites (--top per
    /// group, default 5); samples without the label form the group `(none)` (JSON
    /// `"value": null`).
    #[arg(long, value_name = "LABEL")]
    pub(crate) by: Option<String>,
    /// One-sided significance level of the trend test.
    #[arg(long, value_name = "P", default_value_t = diag_core::profile::DEFAULT_TREND_ALPHA, value_parser = values::alpha)]
    pub(crate) alpha: f64,
    /// CI gate: exit 1, naming the offending sites on stderr, if any site is classed
    /// `growing` (at --alpha). Errors still exit 2.
    #[arg(long, value_name = "VERDICT", value_enum)]
    pub(crate) fail_on: Option<FailOn>,
    #[command(flatten)]
    pub(crate) names: NamesArgs,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// `diag top FILE`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Keep the samples of diag's own threads (named `diag-*`); by default they are left out
    /// and their share is said on stderr.
    #[arg(long)]
    pub(crate) include_diag: bool,
    /// The profile (pprof .pb.gz / .pb, or dhat-heap.json).
    /// Or URL: a live service's diag listener (http://host:port) or app serving /metrics.
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
    /// Show this many functions (0 = all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) top: usize,
    #[command(flatten)]
    pub(crate) flat: FlatArgs,
    /// One row per source line (function, file:line) instead of per function, like
    /// `go tool pprof -lines`; with --focus, where inside one function the cost sits.
    #[arg(long)]
    pub(crate) lines: bool,
    /// Subtract this earlier profile of the same process first, stack by stack (like
    /// `go tool pprof -base`): what changed since.
    #[arg(long, value_name = "FILE")]
    pub(crate) base: Option<String>,
    /// Print the list as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// One group per value of this pprof label (`route`, `task`, `thread`, or any other the
    /// profile carries), largest first, each with its total, its share and its heaviest
    /// functions; samples without the label form the group `(none)` (JSON `"value": null`).
    #[arg(long, value_name = "LABEL")]
    pub(crate) by: Option<String>,
    /// URL mode: fetch this profile from the service and list its hottest functions instead
    /// of the live view (heap: /debug/pprof/heap, in use; allocs: /debug/pprof/allocs,
    /// allocated; cpu: /debug/pprof/profile?seconds=N).
    #[arg(long, value_name = "KIND", value_parser = ["heap", "allocs", "cpu"])]
    pub(crate) profile: Option<String>,
    /// URL mode: with --profile cpu, seconds to profile for (default 10); with heap or allocs,
    /// a delta profile of the next N seconds instead of a snapshot of now.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) seconds: Option<u64>,
    /// URL mode (live view): time between two scrapes of /metrics, e.g. 2s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub(crate) interval: String,
    /// URL mode (live view): print one sample (two scrapes, --interval apart) and exit.
    #[arg(long)]
    pub(crate) once: bool,
    #[command(flatten)]
    pub(crate) names: NamesArgs,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// `diag list REGEX FILE`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Functions to list: a regular expression matched anywhere in their names.
    #[arg(value_name = "REGEX", value_parser = crate::filter::parse_regex)]
    pub(crate) regex: regex_lite::Regex,
    /// The profile (pprof .pb.gz / .pb, or dhat-heap.json).
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
    #[command(flatten)]
    pub(crate) flat: FlatArgs,
    /// Source lines shown around each line with a value.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) context: usize,
    /// Where to look for source files recorded with paths of another machine (tried with
    /// the longest tail of the path that exists there). Repeatable. Default: here.
    #[arg(long, value_name = "DIR")]
    pub(crate) source_path: Vec<PathBuf>,
    /// List at most this many functions, heaviest (cum) first (0 = all).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) top: usize,
    /// Subtract this earlier profile of the same process first, stack by stack (like
    /// `go tool pprof -base`).
    #[arg(long, value_name = "FILE")]
    pub(crate) base: Option<String>,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

/// `diag flamegraph FILE`.
#[derive(Debug, Args)]
pub(crate) struct FlamegraphArgs {
    /// Keep the samples of diag's own threads (named `diag-*`); by default they are left out
    /// and their share is said on stderr.
    #[arg(long)]
    pub(crate) include_diag: bool,
    /// The profile (pprof .pb.gz / .pb, or dhat-heap.json).
    /// Or URL: a live service's diag listener (http://host:port): profiles its CPU for
    /// --seconds, writes the SVG and saves the raw profile beside it as <name>.pb.gz.
    #[arg(value_name = "FILE")]
    pub(crate) file: String,
    /// Where to write the SVG (`-` for stdout). Default: the input's name with `.svg`, in the
    /// current directory.
    #[arg(short, long, value_name = "OUT")]
    pub(crate) output: Option<PathBuf>,
    /// The column to draw: inuse_space, inuse_objects, alloc_space, alloc_objects (heap), or
    /// cpu, samples (CPU). Default: the profile's default.
    #[arg(long, value_name = "TYPE")]
    pub(crate) sample: Option<String>,
    /// The title.
    #[arg(long, value_name = "T")]
    pub(crate) title: Option<String>,
    /// Draw an icicle graph with stacks reversed: allocation sites / hot functions on top.
    #[arg(long)]
    pub(crate) reverse: bool,
    /// Root the flamegraph at one node per value of this pprof label (`[route /audit]`,
    /// `[task flush]`, `[thread worker-1]`; `(none)` for samples without it) instead of at
    /// the thread (CPU) or nothing (heap).
    #[arg(long, value_name = "LABEL")]
    pub(crate) by: Option<String>,
    /// Leave out frames narrower than this many pixels.
    #[arg(long, value_name = "F", default_value_t = diag_core::profile::DEFAULT_MIN_WIDTH, value_parser = values::min_width)]
    pub(crate) min_width: f64,
    /// Label frames with their full names (generic arguments, closure and async bodies).
    #[arg(long)]
    pub(crate) full_names: bool,
    /// Draw every frame: by default each run of runtime and dependency frames (std, tokio,
    /// hyper, ...) is collapsed into one frame named after its crates.
    #[arg(long)]
    pub(crate) all_frames: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// URL mode: seconds to profile the live service's CPU for (default 30).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) seconds: Option<u64>,
    /// URL mode: sampling frequency in Hz (default 99).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) frequency: Option<u32>,
    /// URL mode: bearer token for a listener started with DIAG_TOKEN.
    #[arg(long, env = "DIAG_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// `diag tasks URL`.
#[derive(Debug, Args)]
pub(crate) struct TasksArgs {
    /// The debug listener's base URL, e.g. http://127.0.0.1:6060.
    #[arg(value_name = "URL")]
    pub(crate) url: String,
    /// Refresh every 2 s until Ctrl-C.
    #[arg(long, conflicts_with = "json")]
    pub(crate) watch: bool,
    /// Print the endpoint's JSON instead of the summary.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// `diag leaks URL`.
#[derive(Debug, Args)]
pub(crate) struct LeaksArgs {
    /// The debug listener's base URL, e.g. http://127.0.0.1:6060.
    #[arg(value_name = "URL")]
    pub(crate) url: String,
    /// Print the endpoint's JSON instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Show every frame of each suspect's stack, not only the site.
    #[arg(long)]
    pub(crate) stacks: bool,
    #[command(flatten)]
    pub(crate) names: NamesArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// `diag report URL` / `diag report FILE...`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// A live service's diag URL (http://host:port), saved profiles (heap snapshots and
    /// CPU profiles: pprof .pb.gz / .pb, or dhat-heap.json), or a capture directory.
    #[arg(value_name = "URL|FILE|DIR", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<String>,
    /// Where to write the page.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// URL mode: the window, in seconds: heap snapshots across it, the CPU profiled over it
    /// (default 30).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) seconds: Option<u64>,
    /// URL mode: compare with the service's heap history from DURATION ago (e.g. 10m, 1h)
    /// instead of waiting; the CPU is still profiled for --seconds.
    #[arg(long, value_name = "DURATION")]
    pub(crate) since: Option<String>,
    /// Crates of the application (comma-separated), besides those the profiles show or
    /// record (see `diag diff --help`).
    #[arg(
        long,
        value_name = "CRATES",
        env = "DIAG_APP_CRATES",
        value_delimiter = ','
    )]
    pub(crate) app_crates: Vec<String>,
    /// Keep the CPU samples of diag's own threads (named `diag-*`) in the CPU table and
    /// flamegraph; by default they are left out and their share is said.
    #[arg(long)]
    pub(crate) include_diag: bool,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// `diag symbolize IN...`.
#[derive(Debug, Args)]
pub(crate) struct SymbolizeArgs {
    /// Unsymbolized profiles (pprof .pb.gz / .pb).
    #[arg(value_name = "IN", required = true, num_args = 1..)]
    pub(crate) inputs: Vec<PathBuf>,
    /// Where to write the named copy (one input only). Default: NAME.sym.pb.gz beside each.
    #[arg(short, long, value_name = "OUT")]
    pub(crate) output: Option<PathBuf>,
}
