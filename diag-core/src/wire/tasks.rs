//! `GET /debug/tasks`: blocking events, event-loop lag, runtime and per-route task health.

use serde::{Deserialize, Serialize};

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

/// The application's runtime (tokio-metrics) over the interval since the previous request.
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
