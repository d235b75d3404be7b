//! The JSON the debug endpoints answer, as types: the service serializes them, the `diag`
//! command (and anyone else) deserializes them.
//!
//! Always compiled (serde only, no runtime parts), so a client that builds `diag-core` with
//! `default-features = false` reads the same types the server writes.
//!
//! | endpoint | type |
//! |---|---|
//! | `GET /debug/tasks` | [`Tasks`] |
//! | `GET /debug/heap/stats` | [`HeapStats`] |
//! | `GET /debug/heap/history` | [`HeapHistory`] |
//! | `GET /debug/leaks` | [`Leaks`] |
//! | a line of `DIAG_CAPTURE_DIR/index.jsonl` | [`CaptureEntry`] |
//!
//! The field names are the contract (a test compares every field name the endpoints answer
//! with a fixed list). Structs are `#[non_exhaustive]`: fields may be added, never renamed or
//! removed. Deserializing is lenient: a field an older service does not send takes its
//! default, and fields a newer one adds are ignored.
//!
//! ```
//! let body = r#"{"interval_ms": 60000, "max_points": 60, "points": [{"time_nanos": 1}]}"#;
//! let h: diag_core::wire::HeapHistory = serde_json::from_str(body).unwrap();
//! assert_eq!(h.stats.interval_ms, 60_000);
//! assert_eq!(h.points[0].time_nanos, 1);
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

// `GET /debug/tasks`: blocking events, event-loop lag, runtime and per-route task health.

/// `GET /debug/tasks`: everything the runtime-health endpoint serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Tasks {
    /// Recent blocking events, newest first.
    pub blocking_events: Vec<BlockingEvent>,
    /// Blocking events counted by site, since the start.
    pub blocking_sites: Vec<BlockingSite>,
    /// Event-loop lag over the last window.
    pub lag: Lag,
    /// The application's runtime since the previous request.
    pub runtime: RuntimeHealth,
    /// Routes and named tasks, most slow polls first.
    pub tasks: Vec<TaskHealth>,
    /// Health of the blocking detector itself.
    pub watchdog: Watchdog,
    /// Present when the stacks are unsymbolized addresses (`?symbolize=0`,
    /// `DIAG_SYMBOLIZE=off`): what naming them elsewhere takes (`diag tasks --binary ...`
    /// does). Absent when the service named them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawStacks>,
    /// Each watched runtime on its own (actix-web: one per worker); `lag` and `runtime` above
    /// are those that served requests together (all of them until one has served a request:
    /// under `#[actix_web::main]` the System's runtime is listed but not summed).
    pub runtimes: Vec<NamedRuntime>,
    /// Why no runtime is watched and the line that watches one; absent while one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_watching: Option<String>,
}

/// One watched tokio runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NamedRuntime {
    /// Its name: `runtime` (watched from its first request), the actix worker's thread name,
    /// or the name given to `watch_runtime_named` (`runtime-N` by `watch_runtime`).
    pub name: String,
    /// Its event-loop lag.
    pub lag: Lag,
    /// Its runtime figures since the previous request.
    pub runtime: RuntimeHealth,
    /// An instrumented request has run on it (false for a runtime that only runs other work,
    /// e.g. actix's System runtime, which accepts connections for the workers).
    pub serves_requests: bool,
}

/// What a symbolizer away from the service needs to name [`Tasks`]' unsymbolized stacks:
/// the loaded images, as a pprof profile's mappings, and the profile comments a raw profile
/// of the same stacks would carry (`raw_stacks=`, `exe_code=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RawStacks {
    /// The executable images mapped in the service.
    pub mappings: Vec<RawMapping>,
    /// The raw profile's comments (`key=value`).
    pub comments: Vec<String>,
}

/// One executable image mapped in the service (a pprof `Mapping`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RawMapping {
    /// First address of the range.
    pub start: u64,
    /// One past its last address.
    pub limit: u64,
    /// Offset in the file of `start`.
    pub offset: u64,
    /// Path of the file mapped there.
    pub file: String,
    /// The file's GNU build ID (hex), when known.
    pub build_id: String,
}

/// One poll that ran longer than the blocking threshold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BlockingEvent {
    /// The route template or task name whose poll blocked.
    pub name: String,
    /// The thread it blocked.
    pub thread: String,
    /// How long the poll ran (so far, if `ongoing`), in milliseconds.
    pub duration_ms: u64,
    /// The same in nanoseconds.
    pub duration_ns: u64,
    /// The poll is still running.
    pub ongoing: bool,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The innermost frame of the application on its stack, if any.
    pub site: Option<String>,
    /// The blocked thread's stack, innermost first, each frame `function (file:line)`.
    pub stack: Vec<String>,
}

/// Blocking events of one site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BlockingSite {
    /// The site (see [`BlockingEvent::site`]).
    pub site: String,
    /// Events there.
    pub count: u64,
    /// Their total duration in milliseconds.
    pub total_ms: u64,
    /// With unsymbolized stacks ([`Tasks::raw`]) the service cannot tell sites apart: one
    /// entry per distinct stack, carrying that stack (`0x...` addresses, innermost first) for
    /// the client to name and count by site. Empty (and absent) otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
}

/// Event-loop lag figures in milliseconds over the last `window_secs` seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Lag {
    /// False until a probe runs on an instrumented runtime.
    pub running: bool,
    /// The last sample, or how overdue the pending timer is if that is more (so the figure
    /// rises while every worker is blocked).
    pub current_ms: f64,
    /// Median lag over the window.
    pub p50_ms: f64,
    /// 99th percentile over the window.
    pub p99_ms: f64,
    /// Largest lag over the window.
    pub max_ms: f64,
    /// Length of the window in seconds.
    pub window_secs: u64,
    /// Probe samples in the window.
    pub samples_in_window: u64,
    /// Time between two probe samples, in milliseconds.
    pub interval_ms: u64,
}

/// The application's runtime (tokio-metrics) over the interval since the previous request; in
/// [`Tasks::runtime`], every watched runtime summed (workers added up, the busy ratio weighted
/// by workers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RuntimeHealth {
    /// False before any instrumented poll: the other figures are then 0.
    pub watching: bool,
    /// Length of the interval in milliseconds.
    pub interval_ms: u64,
    /// Worker threads.
    pub workers: usize,
    /// Share of the interval the workers were busy (0 to 1).
    pub busy_ratio: f64,
    /// Tasks alive at the end of the interval.
    pub alive_tasks: usize,
    /// Tasks in the global queue.
    pub global_queue_depth: usize,
    /// Times the workers parked.
    pub total_park_count: u64,
    /// Busy time of the busiest worker, in milliseconds.
    pub max_busy_ms: f64,
    /// Busy time of the least busy worker, in milliseconds.
    pub min_busy_ms: f64,
    /// Polls (only with `--cfg tokio_unstable`; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
    /// Mean poll time in microseconds (`tokio_unstable` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_poll_us: Option<f64>,
    /// Tasks stolen between workers (`tokio_unstable` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steals: Option<u64>,
    /// Tasks in the workers' local queues (`tokio_unstable` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_queue_depth: Option<usize>,
    /// Threads of the blocking pool (`tokio_unstable` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking_threads: Option<usize>,
}

/// Health of one route or task name, cumulative since it was first seen.
///
/// Route requests are counted one in `sampled_1_in` (`DIAG_TASK_SAMPLE`): `instrumented`,
/// `polls`, `slow_polls` and `long_delays` count the sampled requests only (multiply by
/// `sampled_1_in` for an estimate of all); the means and ratios estimate all requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TaskHealth {
    /// The route template or task name.
    pub name: String,
    /// One in this many of its requests was counted (1 for tasks).
    pub sampled_1_in: u32,
    /// Futures instrumented.
    pub instrumented: u64,
    /// Of those, dropped (finished).
    pub dropped: u64,
    /// Polls.
    pub polls: u64,
    /// Mean poll time in microseconds.
    pub mean_poll_us: f64,
    /// Polls slower than tokio-metrics' slow-poll threshold.
    pub slow_polls: u64,
    /// Share of polls that were slow (0 to 1).
    pub slow_poll_ratio: f64,
    /// Mean time of a slow poll in microseconds.
    pub mean_slow_poll_us: f64,
    /// Times a wake waited long before its poll.
    pub long_delays: u64,
    /// Mean time from wake to poll in microseconds.
    pub mean_scheduled_us: f64,
}

/// Health of the blocking detector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Watchdog {
    /// A poll longer than this is a blocking event, in milliseconds.
    pub threshold_ms: u64,
    /// `signal` when blocked threads' stacks are captured, else why not.
    pub stack_capture: String,
    /// Blocking events since the start.
    pub events_total: u64,
    /// Captures skipped because the thread was inside the unwinder.
    pub skipped_in_unwinder: u64,
    /// Stacks taken by the signal handler with the cached unwinder.
    pub captured_cached: u64,
    /// Stacks taken by the signal handler with libgcc.
    pub captured_libgcc: u64,
    /// Captures that failed.
    pub capture_failures: u64,
    /// Threads whose polls could not be watched (no slot left).
    pub unwatched_threads: u64,
    /// Events not counted by site: distinct (name, stack) pairs past the table's cap.
    pub dropped_stacks: u64,
}

// `GET /debug/heap/stats` and `GET /debug/heap/history`.

/// `GET /debug/heap/stats`: exact process-wide allocation figures and the sampler's own
/// state (also what `diag_core::heap::stats()` returns in process).
///
/// The allocation figures are the application's: what diag allocates for itself is counted
/// apart, in [`self_live_bytes`](Self::self_live_bytes).
///
/// The exact counters count while sampling is on (rate > 0): with sampling off `DiagAlloc` is
/// a pure pass-through and counts nothing, so after a period off the live figures miss (or
/// keep) the blocks that crossed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HeapStats {
    /// Bytes ever allocated through `DiagAlloc` (exact; realloc counts as free + alloc).
    pub allocated_bytes: u64,
    /// Allocations ever made through `DiagAlloc`.
    pub allocated_objects: u64,
    /// Bytes ever freed.
    pub freed_bytes: u64,
    /// Frees.
    pub freed_objects: u64,
    /// Bytes live now (allocated - freed).
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_objects: u64,
    /// Bytes live now that diag itself allocated (its symbolizer, encoders, debug server,
    /// history), counted apart: the figures above are the application's alone.
    pub self_live_bytes: u64,
    /// Bytes the symbolizer keeps between requests (part of `self_live_bytes`, plus any
    /// inflated debug sections), bounded by `DIAG_SYMBOL_CACHE_BYTES`.
    pub symbolizer_cache_bytes: u64,
    /// Mean bytes between samples (0 = off, 1 = exact).
    pub sample_rate: u64,
    /// Sampled blocks tracked now.
    pub tracked_blocks: u64,
    /// The cap on tracked blocks.
    pub max_tracked_blocks: u64,
    /// Distinct stacks held.
    pub stacks: u64,
    /// Samples that could not be tracked (cap reached, region full).
    pub dropped_samples: u64,
    /// Estimated bytes those dropped samples stood for.
    pub dropped_bytes: u64,
    /// Stacks that did not fit in the stack table (charged to one overflow entry).
    pub dropped_stacks: u64,
    /// Bytes of diag's sampled-block region in use (sampled blocks plus rounding).
    pub region_used_bytes: u64,
    /// Address space reserved for the region (not memory).
    pub region_reserved_bytes: u64,
    /// How the sampled stacks were unwound.
    pub unwind: UnwindStats,
}

/// Counts of stack captures by how they were taken (the `unwind` field of [`HeapStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct UnwindStats {
    /// The unwinder in use now, as `DIAG_HEAP_UNWINDER` names it (`cached`, `libgcc`).
    /// Borrowed in the service (building the stats allocates nothing), owned when read.
    pub unwinder: Cow<'static, str>,
    /// Stacks taken by the cached unwinder.
    pub cached: u64,
    /// Stacks the cached unwinder gave to libgcc (unknown code, a custom stack, an unwinding
    /// error, its caches busy).
    pub fallbacks: u64,
    /// Frames whose unwind step the cached unwinder found in its step tables.
    pub rule_hits: u64,
    /// Frames whose step it had to learn from the module's `.eh_frame` (a few thousand
    /// instructions each; the tables hold 1024 entries each, in sets of two).
    pub rule_misses: u64,
}

/// `GET /debug/heap/history`: the history's settings, size and own cost, then its points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HeapHistory {
    /// Settings, size and cost, as top-level fields of the JSON object.
    #[serde(flatten)]
    pub stats: HistoryStats,
    /// The points held, oldest first.
    pub points: Vec<HistoryPoint>,
}

impl HeapHistory {
    /// The listing of `stats` and `points`, as the endpoint builds it.
    pub fn new(stats: HistoryStats, points: Vec<HistoryPoint>) -> Self {
        Self { stats, points }
    }
}

/// The heap history's settings, size and own cost (also what
/// `diag_core::heap::history_stats()` returns in process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HistoryStats {
    /// Time between points in milliseconds (0: not recording).
    pub interval_ms: u64,
    /// The most points kept.
    pub max_points: usize,
    /// Points held now.
    pub points_held: usize,
    /// Changed-stack entries held (at most `diag_core::heap::MAX_HISTORY_ENTRIES`).
    pub entries: usize,
    /// Bytes the history holds.
    pub memory_bytes: usize,
    /// Of those, the bytes of its points' live sampled blocks (their ages).
    pub age_memory_bytes: usize,
    /// Points recorded since the start (including those dropped since).
    pub records: u64,
    /// CPU time the recorder spent on all of them, in nanoseconds.
    pub record_cpu_ns: u64,
    /// CPU time of the latest one, in nanoseconds.
    pub last_record_cpu_ns: u64,
    /// How many times the settings were set (each `POST /debug/heap/history`,
    /// `diag_core::heap::set_history` or the builder's setting counts one).
    pub settings_generation: u64,
    /// The `settings_generation` under which the latest point was recorded: equal to
    /// `settings_generation` once a point under the current settings is in.
    pub recorded_generation: u64,
}

/// One point of the heap history (also what `diag_core::heap::history_points()` lists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HistoryPoint {
    /// When it was recorded, nanoseconds since the Unix epoch (the service's clock); its
    /// profile is `GET /debug/pprof/heap?at=<time_nanos>`.
    pub time_nanos: i64,
    /// Estimated in-use bytes over all stacks.
    pub inuse_bytes: u64,
    /// Estimated in-use objects over all stacks.
    pub inuse_objects: u64,
    /// Exact live bytes (allocated - freed through `DiagAlloc`) at that time.
    pub live_bytes: u64,
    /// Exact live objects at that time.
    pub live_objects: u64,
    /// The sample rate at that time (mean bytes between samples; 0 off, 1 exact).
    pub sample_rate: u64,
}

impl HistoryPoint {
    /// A point recorded at `time_nanos` with every other figure 0 (for tests and tools
    /// that only need the time).
    pub fn at(time_nanos: i64) -> Self {
        Self {
            time_nanos,
            ..Self::default()
        }
    }
}

// `GET /debug/leaks`: the leak alarm's suspects.

/// `GET /debug/leaks`: the leak alarm's settings, its latest check, and the stacks it
/// suspects (also what `diag_core::heap::leaks()` returns in process).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Leaks {
    /// One-sided significance level a suspect's rise must reach (`DIAG_LEAK_ALPHA`).
    pub alpha: f64,
    /// Slowest rate a suspect grows at, bytes per second (`DIAG_LEAK_MIN_RATE`).
    pub min_rate_bytes_per_sec: f64,
    /// Span of history checked, in seconds (0: the whole history; `DIAG_LEAK_WINDOW`).
    pub window_secs: f64,
    /// Checks run since the start (one per heap history point once three are held).
    pub checks: u64,
    /// When the latest check ran, nanoseconds since the Unix epoch (0: none yet).
    pub checked_at_nanos: i64,
    /// History points the latest check classified (thinned to at most 200).
    pub points: usize,
    /// Seconds between the first and last of them.
    pub span_secs: f64,
    /// Stacks the latest check classified: those whose in-use bytes ended higher than they
    /// began.
    pub stacks_checked: usize,
    /// CPU time of the latest check, in nanoseconds.
    pub check_cpu_ns: u64,
    /// The suspects, fastest-growing first.
    pub suspects: Vec<LeakSuspect>,
}

/// One stack the leak alarm suspects: `growing` in the trend test of its in-use bytes over
/// the history, at `p < alpha`, at least `min_rate_bytes_per_sec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LeakSuspect {
    /// The stack's id in the service's stack table (stable for the process's life).
    pub stack_id: u32,
    /// The allocation site: the innermost application function of the stack when the service
    /// names its stacks, else `stack#<id>`.
    pub site: String,
    /// `site` as tables show it.
    pub short: String,
    /// The stack's labels by key (`thread`, and `route` or `task` when sampled under one).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The stack, innermost frame first: function names, or hexadecimal addresses when the
    /// service does not name its stacks.
    pub stack: Vec<String>,
    /// Theil-Sen slope of its in-use bytes over the points checked, bytes per second.
    pub rate_bytes_per_sec: f64,
    /// The same over the later half of those points.
    pub recent_rate_bytes_per_sec: f64,
    /// One-sided p-value of the rise.
    pub p: f64,
    /// In-use bytes at the first point checked.
    pub first_bytes: u64,
    /// In-use bytes at the last point checked.
    pub last_bytes: u64,
    /// Points its series had.
    pub points: usize,
    /// When it became a suspect (the check that first found it), nanoseconds since the Unix
    /// epoch.
    pub since_nanos: i64,
}

// `DIAG_CAPTURE_DIR`: heap captures written when a leak suspect appears or memory nears its
// limit.

/// The capture index's name within the capture directory (`DIAG_CAPTURE_DIR`): one
/// [`CaptureEntry`] a line.
pub const CAPTURE_INDEX_FILE: &str = "index.jsonl";

/// One line of `index.jsonl` in the capture directory (`DIAG_CAPTURE_DIR`): one capture, with
/// the names of its pprof files (gzip'd, as `/debug/pprof/heap` and `?at=` serve them), which
/// lie beside the index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CaptureEntry {
    /// When it was taken, nanoseconds since the Unix epoch.
    pub time_nanos: i64,
    /// The same, as RFC 3339 UTC (`2026-12-07T05:01:02Z`).
    pub time: String,
    /// Why: `suspect` (a site became a leak suspect) or `memory_limit` (usage reached
    /// `DIAG_CAPTURE_AT_PERCENT` of the limit).
    pub reason: String,
    /// The files written.
    pub files: CaptureFiles,
    /// The suspect's site, if a suspect caused it (or appeared with it).
    pub site: Option<String>,
    /// Memory in use when it was taken, bytes, if a limit is known: the resident set against
    /// `DIAG_MEMORY_LIMIT_BYTES`, else the cgroup's working set.
    pub usage_bytes: Option<u64>,
    /// The limit it is measured against, bytes.
    pub limit_bytes: Option<u64>,
    /// Where usage and limit came from: `rss` (`DIAG_MEMORY_LIMIT_BYTES`), `cgroup_v2` or
    /// `cgroup_v1`.
    pub usage_source: Option<String>,
    /// The time of the history point in `files.oldest`, nanoseconds since the Unix epoch.
    pub oldest_time_nanos: Option<i64>,
    /// The process that wrote it.
    pub pid: u32,
}

/// The files of one [`CaptureEntry`], by name within the capture directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CaptureFiles {
    /// The heap profile when the capture was taken.
    pub current: String,
    /// The oldest point of the heap history then, if the history held one: what the heap
    /// looked like before the growth (`diag diff DIR` compares it with `current`).
    pub oldest: Option<String>,
}
