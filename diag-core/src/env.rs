//! Environment variables read by [`init`](crate::init) and
//! [`Builder::from_env`](crate::Builder::from_env).

/// Listener address, `host:port` (default `127.0.0.1:6060`; port 0 picks a free port).
pub const ADDR: &str = "DIAG_ADDR";
/// Mean bytes between heap samples (default 524288; 0 off; 1 every allocation).
pub const HEAP_SAMPLE_BYTES: &str = "DIAG_HEAP_SAMPLE_BYTES";
/// Unwinder for the stacks of sampled allocations: `cached` (default: cached DWARF
/// unwinding with libgcc as the fallback) or `libgcc` (libgcc for every stack).
pub const HEAP_UNWINDER: &str = "DIAG_HEAP_UNWINDER";
/// Bearer token required by every debug endpoint; needed to bind a non-loopback address.
pub const TOKEN: &str = "DIAG_TOKEN";
/// Cap on sampled blocks tracked at once (default 1048576).
pub const MAX_TRACKED_BLOCKS: &str = "DIAG_MAX_TRACKED_BLOCKS";
/// Minimum milliseconds between two heap snapshots (default 200; faster answers 429).
pub const SNAPSHOT_MIN_INTERVAL_MS: &str = "DIAG_SNAPSHOT_MIN_INTERVAL_MS";
/// A poll running longer than this many milliseconds is a blocking event (default 100).
pub const BLOCKING_THRESHOLD_MS: &str = "DIAG_BLOCKING_THRESHOLD_MS";
/// One request in this many per route is counted by the route's tokio-metrics
/// `TaskMonitor` in `/debug/tasks` (default 8; 1 counts every request). The blocking
/// watchdog and `/metrics` see every request regardless.
pub const TASK_SAMPLE: &str = "DIAG_TASK_SAMPLE";
/// Longest CPU profile a request may ask for, in seconds (default 120).
pub const MAX_PROFILE_SECONDS: &str = "DIAG_MAX_PROFILE_SECONDS";
/// Deadline of a debug request in milliseconds, beyond the time a CPU profile or task dump
/// asks for (default 30000); later answers 503.
pub const REQUEST_TIMEOUT_MS: &str = "DIAG_REQUEST_TIMEOUT_MS";
/// Largest debug response body in bytes (default 67108864); larger answers 503.
pub const MAX_RESPONSE_BYTES: &str = "DIAG_MAX_RESPONSE_BYTES";
/// Seconds between two points of the heap history (default 60; 0 turns it off).
pub const HEAP_HISTORY_INTERVAL_SECS: &str = "DIAG_HEAP_HISTORY_INTERVAL_SECS";
/// Points the heap history keeps (default 60, from 2 to 1440).
pub const HEAP_HISTORY_POINTS: &str = "DIAG_HEAP_HISTORY_POINTS";
/// The application's crates, comma-separated (`myapp,myapp_db`), besides the binary's own
/// crate and those its profiles show with their source files: heap sites are their
/// functions, never a dependency's. Recorded in every heap profile (`app_crates=`).
pub const APP_CRATES: &str = "DIAG_APP_CRATES";
/// What the symbolizer may keep between debug requests, in bytes (default 8388608).
pub const SYMBOL_CACHE_BYTES: &str = "DIAG_SYMBOL_CACHE_BYTES";
/// Seconds without symbolizing after which the symbolizer drops everything (default 60;
/// fractions allowed).
pub const SYMBOL_IDLE_SECS: &str = "DIAG_SYMBOL_IDLE_SECS";
/// `on` (default) or `off`: whether the service names the frames of the profiles it serves;
/// `off` serves addresses and mappings with build IDs only (as `?symbolize=0`), for
/// `diag --binary` / `--debug-dir` / debuginfod or `go tool pprof BINARY` to name.
pub const SYMBOLIZE: &str = "DIAG_SYMBOLIZE";
/// One-sided significance level the leak alarm's trend test must reach (default 0.01;
/// between 0 and 1).
pub const LEAK_ALPHA: &str = "DIAG_LEAK_ALPHA";
/// Slowest growth the leak alarm reports, in bytes per second (default 291.27: 1 MiB per
/// hour; fractions allowed).
pub const LEAK_MIN_RATE: &str = "DIAG_LEAK_MIN_RATE";
/// Span of heap history the leak alarm checks: seconds, or with a unit (`30m`, `2h`, `1d`);
/// default 0, the whole history.
pub const LEAK_WINDOW: &str = "DIAG_LEAK_WINDOW";
/// Directory where the heap is captured when a site becomes a leak suspect or memory nears its
/// limit: two pprof files (the heap now, the heap history's oldest point) and a line of
/// `index.jsonl` per capture (default unset: no captures). The directory must exist.
pub const CAPTURE_DIR: &str = "DIAG_CAPTURE_DIR";
/// Share of the memory limit, in percent, at which the heap is captured (default 90; 1 to 100).
pub const CAPTURE_AT_PERCENT: &str = "DIAG_CAPTURE_AT_PERCENT";
/// Most capture files kept in `DIAG_CAPTURE_DIR`, oldest captures removed first (default 20;
/// at least 2).
pub const CAPTURE_MAX_FILES: &str = "DIAG_CAPTURE_MAX_FILES";
/// The memory limit in bytes, measured against the process's resident set, in place of the
/// cgroup's limit and usage (default unset: the process's cgroup, v2 or v1).
pub const MEMORY_LIMIT_BYTES: &str = "DIAG_MEMORY_LIMIT_BYTES";
