//! Every setting's default (`DEFAULT_*`), and the fixed limits more than one floor uses
//! ([`MAX_FRAMES`]): a leaf, so the code that applies a setting and the code that documents
//! or builds it need not import each other. Each constant keeps its public path through a
//! re-export (`diag_core::DEFAULT_ADDR`, `diag_core::heap::DEFAULT_SAMPLE_BYTES`,
//! `diag_core::cpu::DEFAULT_SECONDS`, ...).

#[cfg(any(feature = "heap", feature = "server"))]
use std::time::Duration;

// The service: `Builder` and `init()`.

/// Where the debug listener binds by default (Go's habit; `DIAG_ADDR`).
#[cfg(feature = "server")]
pub const DEFAULT_ADDR: &str = "127.0.0.1:6060";
/// A poll running longer than this is a blocking event by default
/// (`DIAG_BLOCKING_THRESHOLD_MS`).
#[cfg(feature = "server")]
pub const DEFAULT_BLOCKING_THRESHOLD: Duration = Duration::from_millis(100);
/// One route request in this many is counted by the route's `TaskMonitor` by default
/// (`DIAG_TASK_SAMPLE`).
#[cfg(feature = "server")]
pub const DEFAULT_TASK_SAMPLE: u32 = 8;
/// Minimum time between two heap snapshots by default (`DIAG_SNAPSHOT_MIN_INTERVAL_MS`).
#[cfg(feature = "server")]
pub const DEFAULT_SNAPSHOT_MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Deadline of a debug request by default, beyond the time a CPU profile or task dump asks
/// for (`DIAG_REQUEST_TIMEOUT_MS`).
#[cfg(feature = "server")]
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest debug response body by default, in bytes (`DIAG_MAX_RESPONSE_BYTES`).
#[cfg(feature = "server")]
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// How long one readiness check may take by default before `GET /ready` counts it as failed.
#[cfg(feature = "server")]
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(2);

// The heap profiler and the symbolizer.

/// Mean bytes between heap samples by default (Go's `MemProfileRate`).
#[cfg(feature = "heap")]
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;
/// Default cap on sampled blocks tracked at once.
#[cfg(feature = "heap")]
pub const DEFAULT_MAX_TRACKED_BLOCKS: usize = 1 << 20;
/// Default cap on distinct stacks.
#[cfg(feature = "heap")]
pub const DEFAULT_MAX_STACKS: usize = 16 * 1024;
/// Default time between two points.
#[cfg(feature = "heap")]
pub const DEFAULT_HISTORY_INTERVAL: Duration = Duration::from_secs(60);
/// Default number of points kept (with the default interval: one hour).
#[cfg(feature = "heap")]
pub const DEFAULT_HISTORY_POINTS: usize = 60;
/// Default significance level of the leak alarm (`DIAG_LEAK_ALPHA`).
#[cfg(feature = "heap")]
pub const DEFAULT_LEAK_ALPHA: f64 = 0.01;
/// Default slowest growth the leak alarm reports, bytes per second: 1 MiB per hour
/// (`DIAG_LEAK_MIN_RATE`).
#[cfg(feature = "heap")]
pub const DEFAULT_LEAK_MIN_RATE: f64 = (1u64 << 20) as f64 / 3600.0;
/// Default span of history the leak alarm checks: zero, the whole history
/// (`DIAG_LEAK_WINDOW`).
#[cfg(feature = "heap")]
pub const DEFAULT_LEAK_WINDOW: Duration = Duration::ZERO;
/// Default share of the memory limit, in percent, at which the heap is captured
/// (`DIAG_CAPTURE_AT_PERCENT`).
#[cfg(feature = "heap")]
pub const DEFAULT_CAPTURE_AT_PERCENT: u8 = 90;
/// Default most capture files kept in `DIAG_CAPTURE_DIR` (`DIAG_CAPTURE_MAX_FILES`).
#[cfg(feature = "heap")]
pub const DEFAULT_CAPTURE_MAX_FILES: usize = 20;
/// Shortest time between two heap captures: later reasons within it are counted, not written.
#[cfg(feature = "heap")]
pub const CAPTURE_MIN_INTERVAL: Duration = Duration::from_secs(600);
/// What the symbolizer may keep between debug requests by default (parsed DWARF, symbol
/// tables, resolved addresses, measured as diag's own allocations; `DIAG_SYMBOL_CACHE_BYTES`).
#[cfg(feature = "heap")]
pub const DEFAULT_SYMBOL_CACHE_BYTES: usize = 8 << 20;
/// After this long without symbolizing, the symbolizer drops everything and gives the freed
/// heap back, by default (`DIAG_SYMBOL_IDLE_SECS`).
#[cfg(feature = "heap")]
pub const DEFAULT_SYMBOL_IDLE: Duration = Duration::from_secs(60);
/// Deepest stack kept; deeper ones are cut (innermost frames are kept).
#[cfg(feature = "heap")]
pub const MAX_FRAMES: usize = 64;

// CPU profiles.

/// Default profile length in seconds (Go's).
pub const DEFAULT_SECONDS: u64 = 30;
/// Default cap on the profile length a request may ask for, in seconds.
pub const DEFAULT_MAX_SECONDS: u64 = 120;
/// Default sampling frequency in Hz (99, not 100, to avoid lockstep with periodic work).
pub const DEFAULT_FREQUENCY: u32 = 99;
