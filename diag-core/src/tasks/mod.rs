//! Runtime health: a per-poll blocking watchdog that captures the stack of a blocked worker
//! while it is still blocked, an event-loop lag probe, and tokio runtime and per-task metrics.
//!
//! - `slots`: the per-thread poll slots (the hot path: two atomic stores per poll);
//! - `watchdog`: the thread that scans them and turns long polls into events;
//! - `signal`: the signal handler that captures a blocked thread's stack (the only `unsafe`);
//! - `events`: the bounded ring of events, counts by site, the block profile;
//! - `lag`: the timer-lateness probe;
//! - `runtimes`: the watched runtimes (each one's probe and runtime monitor, by name);
//! - `health`: runtime figures (one runtime's, several summed) and per-name task health from
//!   tokio-metrics' monitors.

pub(crate) mod dump;
mod events;
mod health;
mod lag;
mod log;
mod runtimes;
mod signal;
mod slots;
mod watchdog;

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::padded::Padded;

use crate::defaults::DEFAULT_TASK_SAMPLE;
pub(crate) use events::block_profile;
pub(crate) use health::FOLDED_NAMES;
pub(crate) use runtimes::{lag_view, note_request};

/// One request in this many is counted by its route's `TaskMonitor` (1: every request).
static TASK_SAMPLE: Padded<AtomicU32> = Padded(AtomicU32::new(DEFAULT_TASK_SAMPLE));

/// Sets how many route requests share one `TaskMonitor`-counted request (at least 1). The
/// blocking watchdog still watches every poll of every request; only tokio-metrics' per-task
/// accounting (about 0.4 µs per poll, see `BENCHMARKS.md`) is sampled.
pub(crate) fn set_task_sample(n: u32) {
    TASK_SAMPLE.store(n.max(1), Relaxed);
}

/// The current 1-in-N task sampling of route requests.
#[inline]
pub(crate) fn task_sample() -> u32 {
    TASK_SAMPLE.load(Relaxed)
}

/// True for a random one in `n` calls (per-thread xorshift; no shared state). Random rather
/// than every n-th, so a client alternating between routes cannot hide one of them.
#[inline]
fn one_in(n: u32) -> bool {
    thread_local! {
        static RNG: Cell<u64> = const { Cell::new(0) };
    }
    if n <= 1 {
        return true;
    }
    RNG.try_with(|r| {
        let mut x = r.get();
        if x == 0 {
            // Seed from this thread's stack address and the clock: distinct per thread.
            let seed = &x as *const u64 as u64 ^ slots::now_us().rotate_left(32);
            x = seed | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        // The high 32 bits mapped onto 0..n by a multiply and a shift (no division).
        ((x >> 32) * u64::from(n)) >> 32 == 0
    })
    .unwrap_or(false)
}

pin_project_lite::pin_project! {
    /// A future whose polls are timed by the watchdog and, if it is counted, by its name's
    /// TaskMonitor.
    pub(crate) struct Watched<F> {
        #[pin]
        inner: Counted<F>,
        name_id: u32,
        // When the first watched poll started (µs since diag's epoch; 0: not yet, or the
        // first poll was nested in another watched one and not timed).
        first_poll_us: u64,
    }
}

pin_project_lite::pin_project! {
    /// The watched future, with or without tokio-metrics' accounting.
    #[project = CountedProj]
    enum Counted<F> {
        Yes { #[pin] fut: tokio_metrics::Instrumented<F> },
        No { #[pin] fut: F },
    }
}

impl<F> Watched<F> {
    /// When its first poll started, in µs since diag's epoch (see [`now_us`]), if the watchdog
    /// timed it (not when nested inside another watched future).
    #[inline]
    pub(crate) fn first_poll_us(&self) -> Option<u64> {
        (self.first_poll_us != 0).then_some(self.first_poll_us)
    }
}

/// Microseconds since diag's epoch: the watchdog's clock.
#[inline]
pub(crate) fn now_us() -> u64 {
    slots::now_us()
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let token = slots::enter(*this.name_id);
        if *this.first_poll_us == 0
            && let Some((_, word)) = token
        {
            *this.first_poll_us = slots::start_us(word).max(1);
        }
        let _guard = slots::PollGuard(token);
        match this.inner.project() {
            CountedProj::Yes { fut } => fut.poll(cx),
            CountedProj::No { fut } => fut.poll(cx),
        }
    }
}

/// Starts the watchdog, and the lag probe and runtime monitor on the current runtime if there
/// is one and no runtime is watched yet.
#[inline]
fn ensure_started() {
    watchdog::ensure_started();
    if !runtimes::any()
        && let Ok(h) = tokio::runtime::Handle::try_current()
    {
        runtimes::watch(|| IMPLICIT_RUNTIME.to_owned(), &h);
    }
}

/// The name of the runtime watched from its first instrumented request.
const IMPLICIT_RUNTIME: &str = "runtime";

/// Watches `handle`'s runtime: an event-loop lag probe on it and its tokio-metrics runtime
/// figures, in `/debug/tasks` (`runtimes`, each by name, and summed in `runtime`), in
/// `diag tasks` and in the report.
///
/// diag already watches the runtime of the first request under [`layer()`](crate::layer())
/// when it watches none, and each worker of an actix-web app wrapped in `diag_core::actix::Diag`.
/// Call this for the others: a runtime started before any request reaches it, a second
/// runtime (a blocking-work or background runtime beside the server's), or several. The name is
/// `runtime-N` (N counts the runtimes this call watched); [`watch_runtime_named`] chooses it.
/// A runtime already watched (by diag, or by an earlier call, under any name) is not watched
/// twice: the call does nothing. Runtimes are told apart by tokio's [`Id`](tokio::runtime::Id).
///
/// Cost: one task that sleeps 10 ms in a loop on that runtime, until the runtime shuts down
/// (then it leaves the list).
pub fn watch_runtime(handle: &tokio::runtime::Handle) {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    watchdog::ensure_started();
    runtimes::watch(
        || format!("runtime-{}", CALLS.fetch_add(1, Relaxed) + 1),
        handle,
    );
}

/// [`watch_runtime`] under `name`. Returns false, and does nothing, when this runtime is
/// already watched (under any name) or a live runtime is already watched under `name`.
pub fn watch_runtime_named(name: &str, handle: &tokio::runtime::Handle) -> bool {
    watchdog::ensure_started();
    runtimes::watch(|| name.to_owned(), handle)
}

/// Watches the current thread's runtime under the thread's name, once per thread: for
/// frameworks that run one runtime per worker thread (actix-web). Does nothing outside a
/// runtime.
#[cfg(feature = "actix")]
pub(crate) fn watch_this_threads_runtime() {
    thread_local! {
        static DONE: Cell<bool> = const { Cell::new(false) };
    }
    if DONE.try_with(|d| d.replace(true)).unwrap_or(true) {
        return;
    }
    let Ok(h) = tokio::runtime::Handle::try_current() else {
        DONE.with(|d| d.set(false));
        return;
    };
    let thread = std::thread::current();
    let name = match thread.name() {
        Some(n) => n.to_owned(),
        None => format!("{:?}", thread.id()),
    };
    watch_runtime_named(&name, &h);
}

/// The route or task of the instrumented poll running on this thread (signal-safe), as an id
/// for [`poll_label`].
pub(crate) fn running_poll() -> Option<u32> {
    slots::running_poll()
}

/// The pprof label of a poll id from [`running_poll`]: `("route", "/users/{id}")` for a
/// request under `layer()`, `("task", name)` for a future of `spawn(name, ..)`.
pub(crate) fn poll_label(id: u32) -> Option<(&'static str, Arc<str>)> {
    let (name, route) = health::name_and_kind(id)?;
    use crate::names::{ROUTE_LABEL, TASK_LABEL};
    Some((if route { ROUTE_LABEL } else { TASK_LABEL }, name))
}

/// Called by `Builder::start`: applies the threshold and starts what can be started.
pub(crate) fn on_init(threshold: Duration) {
    watchdog::set_threshold(threshold);
    ensure_started();
    log::ensure_started();
}

/// A registered task name: its id in the watchdog's slots and its `TaskMonitor`. Resolve it
/// once ([`TaskName::new`]) and reuse it, so instrumenting a future costs no name lookup.
#[derive(Clone)]
pub(crate) struct TaskName {
    id: u32,
    monitor: tokio_metrics::TaskMonitor,
}

impl TaskName {
    /// Registers `name` (or finds it). `sampled`: its futures are counted one in
    /// [`task_sample`] (route requests), not all (spawned tasks); shown in `/debug/tasks`.
    pub(crate) fn new(name: &Arc<str>, sampled: bool) -> Self {
        let (id, monitor) = health::monitor_for(name, sampled);
        Self { id, monitor }
    }

    /// Wraps `fut` so each of its polls is watched (blocking detector) and counted
    /// (this name's TaskMonitor).
    pub(crate) fn instrument<F: Future>(&self, fut: F) -> Watched<F> {
        ensure_started();
        Watched {
            inner: Counted::Yes {
                fut: self.monitor.instrument(fut),
            },
            name_id: self.id,
            first_poll_us: 0,
        }
    }

    /// Like [`instrument`](Self::instrument), but only one future in [`task_sample`] is
    /// counted by the TaskMonitor; every one is watched.
    #[inline]
    pub(crate) fn instrument_sampled<F: Future>(&self, fut: F) -> Watched<F> {
        if one_in(task_sample()) {
            return self.instrument(fut);
        }
        ensure_started();
        Watched {
            inner: Counted::No { fut },
            name_id: self.id,
            first_poll_us: 0,
        }
    }
}

/// Wraps `fut` so each of its polls is watched (blocking detector) and counted (per-name TaskMonitor).
pub(crate) fn instrument<F: Future>(
    name: Arc<str>,
    fut: F,
) -> impl Future<Output = F::Output> + use<F> {
    TaskName::new(&name, false).instrument(fut)
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

/// A snapshot of all of it (symbolizes: call off the async workers).
pub(crate) fn view() -> crate::wire::Tasks {
    let b = events::view();
    let (each, runtime) = runtimes::views();
    let watching = runtime.watching;
    crate::wire::Tasks {
        watchdog: crate::wire::Watchdog {
            threshold_ms: slots::THRESHOLD_NS.load(Relaxed) / 1_000_000,
            stack_capture: signal::unavailable_reason().unwrap_or("signal").to_owned(),
            events_total: b.total,
            skipped_in_unwinder: signal::SKIPPED_IN_UNWINDER.load(Relaxed),
            captured_cached: signal::CAPTURED_CACHED.load(Relaxed),
            captured_libgcc: signal::CAPTURED_LIBGCC.load(Relaxed),
            capture_failures: watchdog::CAPTURE_FAILURES.load(Relaxed),
            unwatched_threads: slots::UNWATCHED_THREADS.load(Relaxed),
            dropped_stacks: b.dropped_stacks,
        },
        blocking_events: b.events,
        blocking_sites: b.sites,
        lag: runtimes::lag_view(),
        runtime,
        tasks: health::tasks_view(),
        raw: b.raw,
        runtimes: each,
        not_watching: (!watching).then(|| runtimes::NOT_WATCHING.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_in_n_is_about_one_in_n() {
        assert!((0..100).all(|_| super::one_in(1)));
        let n = 80_000;
        let hits = (0..n).filter(|_| super::one_in(8)).count() as f64;
        // Binomial(80000, 1/8): mean 10000, sd ~94; 6 sd either side.
        assert!((hits - 10_000.0).abs() < 6.0 * 94.0, "{hits}");
        // Alternating callers (two routes on one thread) are both sampled.
        let (mut a, mut b) = (0, 0);
        for i in 0..n {
            if super::one_in(8) {
                if i % 2 == 0 { a += 1 } else { b += 1 }
            }
        }
        assert!(a > 4000 && b > 4000, "{a} {b}");
    }
}
