//! Runtime health: a per-poll blocking watchdog that captures the stack of a blocked worker
//! while it is still blocked, an event-loop lag probe, and tokio runtime and per-task metrics.
//!
//! - `slots`: the per-thread poll slots (the hot path: two atomic stores per poll);
//! - `watchdog`: the thread that scans them and turns long polls into events;
//! - `signal`: the signal handler that captures a blocked thread's stack (the only `unsafe`);
//! - `events`: the bounded ring of events, counts by site, the block profile;
//! - `lag`: the timer-lateness probe;
//! - `metrics`: tokio-metrics runtime and per-name task monitors.

pub(crate) mod dump;
mod events;
mod lag;
mod metrics;
mod signal;
mod slots;
mod watchdog;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;

pub(crate) use events::block_profile;
pub(crate) use lag::view as lag_view;
pub(crate) use watchdog::DEFAULT_THRESHOLD_MS;

pin_project_lite::pin_project! {
    /// A future whose polls are timed by the watchdog and counted by its name's TaskMonitor.
    pub(crate) struct Watched<F> {
        #[pin]
        inner: tokio_metrics::Instrumented<F>,
        name_id: u32,
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _guard = slots::PollGuard(slots::enter(*this.name_id));
        this.inner.poll(cx)
    }
}

/// Starts the watchdog, and the lag probe and runtime monitor on the current runtime if there
/// is one and none runs yet.
fn ensure_started() {
    watchdog::ensure_started();
    if !lag::is_running()
        && let Ok(h) = tokio::runtime::Handle::try_current()
    {
        lag::ensure_started(&h);
        metrics::watch_runtime(&h);
        dump::remember(&h);
    }
}

/// Called by `Builder::start`: applies the threshold and starts what can be started.
pub(crate) fn on_init(threshold: Duration) {
    watchdog::set_threshold(threshold);
    ensure_started();
}

/// A registered task name: its id in the watchdog's slots and its `TaskMonitor`. Resolve it
/// once ([`TaskName::new`]) and reuse it, so instrumenting a future costs no name lookup.
#[derive(Clone)]
pub(crate) struct TaskName {
    id: u32,
    monitor: tokio_metrics::TaskMonitor,
}

impl TaskName {
    /// Registers `name` (or finds it).
    pub(crate) fn new(name: &Arc<str>) -> Self {
        let (id, monitor) = metrics::monitor_for(name);
        Self { id, monitor }
    }

    /// Wraps `fut` so each of its polls is watched (blocking detector) and counted
    /// (this name's TaskMonitor).
    pub(crate) fn instrument<F: Future>(&self, fut: F) -> Watched<F> {
        ensure_started();
        Watched {
            inner: self.monitor.instrument(fut),
            name_id: self.id,
        }
    }
}

/// Wraps `fut` so each of its polls is watched (blocking detector) and counted (per-name TaskMonitor).
pub(crate) fn instrument<F: Future>(
    name: Arc<str>,
    fut: F,
) -> impl Future<Output = F::Output> + use<F> {
    TaskName::new(&name).instrument(fut)
}

/// Spawns `fut` on the current tokio runtime with every poll watched by the blocking detector
/// and counted under `name` in `/debug/tasks`.
///
/// # Panics
///
/// Like [`tokio::spawn`], panics when called outside a tokio runtime.
pub fn spawn<F>(name: &str, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(instrument(Arc::from(name), fut))
}

/// Health of the blocking detector itself.
#[derive(Debug, Serialize)]
pub(crate) struct WatchdogView {
    threshold_ms: u64,
    stack_capture: &'static str,
    events_total: u64,
    skipped_in_unwinder: u64,
    capture_failures: u64,
    unwatched_threads: u64,
    dropped_stacks: u64,
}

/// Everything `/debug/tasks` serves.
#[derive(Debug, Serialize)]
pub(crate) struct TasksView {
    blocking_events: Vec<events::EventView>,
    blocking_sites: Vec<events::SiteView>,
    lag: lag::LagView,
    runtime: metrics::RuntimeView,
    tasks: Vec<metrics::TaskView>,
    watchdog: WatchdogView,
}

/// A snapshot of all of it (symbolizes: call off the async workers).
pub(crate) fn view() -> TasksView {
    let b = events::view();
    TasksView {
        watchdog: WatchdogView {
            threshold_ms: slots::THRESHOLD_NS.load(Relaxed) / 1_000_000,
            stack_capture: signal::unavailable_reason().unwrap_or("signal"),
            events_total: b.total,
            skipped_in_unwinder: signal::SKIPPED_IN_UNWINDER.load(Relaxed),
            capture_failures: watchdog::CAPTURE_FAILURES.load(Relaxed),
            unwatched_threads: slots::UNWATCHED_THREADS.load(Relaxed),
            dropped_stacks: b.dropped_stacks,
        },
        blocking_events: b.events,
        blocking_sites: b.sites,
        lag: lag::view(),
        runtime: metrics::runtime_view(),
        tasks: metrics::tasks_view(),
    }
}
