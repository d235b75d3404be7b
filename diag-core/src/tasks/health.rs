//! Runtime health from tokio-metrics' `RuntimeMonitor` and per-name task health from one
//! `TaskMonitor` per route or task name (at most [`MAX_NAMES`] names; the rest share one).

// `tokio_unstable` is set by the application's RUSTFLAGS, not a cargo feature.
#![allow(unexpected_cfgs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio_metrics::{RuntimeIntervals, RuntimeMonitor, TaskMonitor};

use crate::names::OVERFLOW;
use crate::wire::{RuntimeHealth, TaskHealth};

/// Distinct names tracked; later names are counted under [`OVERFLOW`].
pub(crate) const MAX_NAMES: usize = 256;
/// Registrations of a name past [`MAX_NAMES`] (folded into [`OVERFLOW`]): a route's first
/// request, each `diag_core::spawn` of a task name. Profiles report it (`folded_names=`).
pub(crate) static FOLDED_NAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Names {
    ids: HashMap<Arc<str>, u32>,
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    name: Arc<str>,
    monitor: TaskMonitor,
    /// Counted one in `task_sample()` (route requests) rather than every time.
    sampled: bool,
}

static NAMES: RwLock<Option<Names>> = RwLock::new(None);

/// The id and monitor for `name`, registering it if new (`sampled`: see `TaskName::new`).
pub(crate) fn monitor_for(name: &Arc<str>, sampled: bool) -> (u32, TaskMonitor) {
    {
        let g = NAMES.read().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = g.as_ref()
            && let Some(&id) = n.ids.get(name)
        {
            return (id, n.entries[id as usize].monitor.clone());
        }
    }
    let mut g = NAMES.write().unwrap_or_else(|e| e.into_inner());
    let n = g.get_or_insert_with(|| Names {
        ids: HashMap::new(),
        entries: Vec::new(),
    });
    if let Some(&id) = n.ids.get(name) {
        return (id, n.entries[id as usize].monitor.clone());
    }
    let key: Arc<str> = if n.entries.len() + 1 >= MAX_NAMES {
        FOLDED_NAMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OVERFLOW.into()
    } else {
        name.clone()
    };
    if let Some(&id) = n.ids.get(&key) {
        return (id, n.entries[id as usize].monitor.clone());
    }
    let id = n.entries.len() as u32;
    let m = TaskMonitor::new();
    n.entries.push(Entry {
        name: key.clone(),
        monitor: m.clone(),
        sampled,
    });
    n.ids.insert(key, id);
    (id, m)
}

/// The name registered under `id` and whether it is a route (counted one request in
/// `task_sample()`) rather than a spawned task.
pub(crate) fn name_and_kind(id: u32) -> Option<(Arc<str>, bool)> {
    NAMES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|n| n.entries.get(id as usize))
        .map(|e| (e.name.clone(), e.sampled))
}

/// The name registered under `id`.
pub(crate) fn name_of(id: u32) -> Arc<str> {
    NAMES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|n| n.entries.get(id as usize))
        .map(|e| e.name.clone())
        .unwrap_or_else(|| "<unknown>".into())
}

/// Every name, worst (most slow polls) first.
pub(crate) fn tasks_view() -> Vec<TaskHealth> {
    let entries: Vec<Entry> = NAMES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|n| n.entries.clone())
        .unwrap_or_default();
    let rate = super::task_sample();
    let mut out: Vec<TaskHealth> = entries
        .into_iter()
        .map(
            |Entry {
                 name,
                 monitor: m,
                 sampled,
             }| {
                let c = m.cumulative();
                TaskHealth {
                    name: name.to_string(),
                    sampled_1_in: if sampled { rate } else { 1 },
                    instrumented: c.instrumented_count,
                    dropped: c.dropped_count,
                    polls: c.total_poll_count,
                    mean_poll_us: c.mean_poll_duration().as_secs_f64() * 1e6,
                    slow_polls: c.total_slow_poll_count,
                    slow_poll_ratio: finite(c.slow_poll_ratio()),
                    mean_slow_poll_us: c.mean_slow_poll_duration().as_secs_f64() * 1e6,
                    long_delays: c.total_long_delay_count,
                    mean_scheduled_us: c.mean_scheduled_duration().as_secs_f64() * 1e6,
                }
            },
        )
        .collect();
    // Estimated slow polls of all requests, so sampled routes and spawned tasks compare.
    let est = |t: &TaskHealth| t.slow_polls.saturating_mul(u64::from(t.sampled_1_in));
    out.sort_by(|a, b| {
        est(b)
            .cmp(&est(a))
            .then(b.mean_slow_poll_us.total_cmp(&a.mean_slow_poll_us))
    });
    out
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

static RUNTIME: Mutex<Option<RuntimeIntervals>> = Mutex::new(None);

/// Watches `handle`'s runtime from now on (first runtime seen wins while it lives).
pub(crate) fn watch_runtime(handle: &tokio::runtime::Handle) {
    let mut g = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(RuntimeMonitor::new(handle).intervals());
    }
}

/// The runtime figures since the last call (`watching: false` before any instrumented poll).
pub(crate) fn runtime_view() -> RuntimeHealth {
    let m = RUNTIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(Iterator::next);
    let Some(m) = m else {
        return RuntimeHealth {
            watching: false,
            interval_ms: 0,
            workers: 0,
            busy_ratio: 0.0,
            alive_tasks: 0,
            global_queue_depth: 0,
            total_park_count: 0,
            max_busy_ms: 0.0,
            min_busy_ms: 0.0,
            polls: None,
            mean_poll_us: None,
            steals: None,
            local_queue_depth: None,
            blocking_threads: None,
        };
    };
    #[cfg(tokio_unstable)]
    let (polls, mean_poll_us, steals, local_queue_depth, blocking_threads) = (
        Some(m.total_polls_count),
        Some(m.mean_poll_duration.as_secs_f64() * 1e6),
        Some(m.total_steal_count),
        Some(m.total_local_queue_depth),
        Some(m.blocking_threads_count),
    );
    #[cfg(not(tokio_unstable))]
    let (polls, mean_poll_us, steals, local_queue_depth, blocking_threads) =
        (None, None, None, None, None);
    RuntimeHealth {
        watching: true,
        interval_ms: m.elapsed.as_millis() as u64,
        workers: m.workers_count,
        busy_ratio: finite(m.busy_ratio()),
        alive_tasks: m.live_tasks_count,
        global_queue_depth: m.global_queue_depth,
        total_park_count: m.total_park_count,
        max_busy_ms: m.max_busy_duration.as_secs_f64() * 1e3,
        min_busy_ms: m.min_busy_duration.as_secs_f64() * 1e3,
        polls,
        mean_poll_us,
        steals,
        local_queue_depth,
        blocking_threads,
    }
}
