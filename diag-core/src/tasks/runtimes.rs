//! The runtimes diag watches: each one's lag probe and tokio-metrics monitor, under a name.
//!
//! A runtime is watched from the first instrumented request inside it when no runtime is
//! watched yet (the usual tokio `main`), by [`watch_runtime`] (any runtime, several at once),
//! or by a framework adapter (actix-web: each worker's runtime, as its worker builds the app).
//! A runtime that shuts down leaves the list (its probe's task is dropped with it). A runtime
//! is watched once: a second watch of the same runtime (by tokio's runtime [`Id`], unique among
//! running runtimes), under any name, does nothing.
//!
//! [`Id`]: tokio::runtime::Id
//!
//! A runtime is marked as serving requests once an instrumented request has run on it (a
//! thread checks at its first request, and again after another runtime is watched). The
//! summed figures (`lag`, `runtime`) are those of the runtimes that served requests, once any
//! has: under `#[actix_web::main]` with `init()` in `main`, the System's runtime is watched
//! too, but it only accepts connections, and adding it would show one worker more than actix
//! has. It stays listed, marked as serving none.

use std::cell::Cell;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use tokio_metrics::{RuntimeIntervals, RuntimeMonitor};

use super::health;
use super::lag::{self, Probe};
use crate::padded::Padded;
use crate::wire::{Lag, NamedRuntime, RuntimeHealth};

struct Watched {
    name: Arc<str>,
    id: tokio::runtime::Id,
    /// An instrumented request has run on it.
    serves: AtomicBool,
    probe: Arc<Probe>,
    intervals: Mutex<RuntimeIntervals>,
}

static RUNTIMES: Mutex<Vec<Arc<Watched>>> = Mutex::new(Vec::new());
/// How many runtimes are watched: read by every instrumented request.
static COUNT: Padded<AtomicUsize> = Padded(AtomicUsize::new(0));
/// Bumped by each watch: a thread that served requests checks its runtime again.
static GENERATION: Padded<AtomicU64> = Padded(AtomicU64::new(1));

/// Called on each instrumented request: marks the runtime it runs on as serving requests (a
/// relaxed load and a thread-local compare, except a thread's first request after a watch).
#[inline]
pub(crate) fn note_request() {
    thread_local! {
        static SEEN: Cell<u64> = const { Cell::new(0) };
    }
    let g = GENERATION.load(Relaxed);
    if SEEN.try_with(|s| s.replace(g) != g).unwrap_or(false) {
        mark_current();
    }
}

#[cold]
fn mark_current() {
    let Ok(h) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let id = h.id();
    let list = RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = list.iter().find(|w| w.id == id) {
        w.serves.store(true, Relaxed);
    }
}

/// True while at least one runtime is watched.
#[inline]
pub(crate) fn any() -> bool {
    COUNT.load(Relaxed) != 0
}

/// Starts watching `handle`'s runtime as `name()`: its lag probe and runtime metrics. False
/// (and nothing done, `name` not called) when this runtime is already watched, or when a
/// runtime of that name is.
pub(crate) fn watch(name: impl FnOnce() -> String, handle: &tokio::runtime::Handle) -> bool {
    let id = handle.id();
    let w = {
        let mut list = RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
        if list.iter().any(|w| w.id == id) {
            return false;
        }
        let name = name();
        if list.iter().any(|w| *w.name == name) {
            return false;
        }
        let w = Arc::new(Watched {
            name: name.into(),
            id,
            serves: AtomicBool::new(false),
            probe: Arc::new(Probe::new()),
            intervals: Mutex::new(RuntimeMonitor::new(handle).intervals()),
        });
        list.push(w.clone());
        COUNT.fetch_add(1, AcqRel);
        GENERATION.fetch_add(1, AcqRel);
        w
    };
    super::dump::remember(handle);
    let gone = Arc::downgrade(&w);
    w.probe.start(handle, move || {
        // The runtime shut down: forget it, so the next runtime can be watched under the
        // name. (No holder of this lock waits on a runtime.)
        let mut list = RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|w| gone.upgrade().is_none_or(|g| !Arc::ptr_eq(w, &g)));
        if list.len() < before {
            COUNT.fetch_sub(1, AcqRel);
        }
    });
    true
}

fn live() -> Vec<Arc<Watched>> {
    RUNTIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|w| w.probe.is_running())
        .cloned()
        .collect()
}

/// Whether `w` counts in the summed figures: it served requests, or none has.
fn summed(live: &[Arc<Watched>]) -> impl Fn(&Watched) -> bool + use<> {
    let any = live.iter().any(|w| w.serves.load(Relaxed));
    move |w| !any || w.serves.load(Relaxed)
}

/// The lag of the watched runtimes that served requests together (all of them until one has).
pub(crate) fn lag_view() -> Lag {
    let live = live();
    let counts = summed(&live);
    let probes: Vec<&Probe> = live
        .iter()
        .filter(|w| counts(w))
        .map(|w| &*w.probe)
        .collect();
    lag::view(&probes)
}

/// Each watched runtime (figures since the previous call), and those that served requests
/// summed (all of them until one has).
pub(crate) fn views() -> (Vec<NamedRuntime>, RuntimeHealth) {
    let live = live();
    let counts = summed(&live);
    let mut each = Vec::new();
    let mut in_sum = Vec::new();
    for w in &live {
        let m = w.intervals.lock().unwrap_or_else(|e| e.into_inner()).next();
        each.push(NamedRuntime {
            name: w.name.to_string(),
            lag: w.probe.view(),
            runtime: m.map(|m| health::runtime_health(&m)).unwrap_or_default(),
            serves_requests: w.serves.load(Relaxed),
        });
        in_sum.push(counts(w));
    }
    let sum = health::sum(
        each.iter()
            .zip(&in_sum)
            .filter(|(_, c)| **c)
            .map(|(n, _)| &n.runtime),
    );
    (each, sum)
}

/// Why `/debug/tasks` has no lag or runtime figures, and the line that gives them.
pub(crate) const NOT_WATCHING: &str = "no tokio runtime is watched yet: diag watches the \
runtime of the first request under diag_core::layer() (axum, tonic, tower) and each worker of \
an actix-web App wrapped in diag_core::actix::Diag; before any request, or for another \
runtime, add diag_core::watch_runtime(&tokio::runtime::Handle::current()) inside it";
