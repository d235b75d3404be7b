//! The JSON of `/debug/tasks`, `/debug/heap/stats` and `/debug/heap/history` against
//! `diag_core::wire`: each real answer read into its wire type and written back gives the same
//! JSON value (nothing the endpoint sends is lost or renamed on the way through the type), and
//! the answer's field names are exactly the documented ones (a field renamed in the type, on
//! both sides at once, still fails here: outside tools read these names).
#![cfg(feature = "server")]

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod support;

use diag_core::wire::{HeapHistory, HeapStats, Leaks, Tasks};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

async fn get_json(app: &axum::Router, uri: &str) -> Value {
    let reply = support::oneshot(app.clone(), uri, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{uri}");
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

/// `raw` read as `T` and written back: the same value.
fn round_trip<T: DeserializeOwned + Serialize>(uri: &str, raw: &Value) -> T {
    let typed: T = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{uri}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, raw,
        "{uri}: the wire type does not carry the answer as served"
    );
    typed
}

/// Every key path of `v`: `a.b` for objects, `a[].b` through arrays of objects.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                paths(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// The key paths of `raw` are `expected`, plus any of `optional`.
fn assert_fields(uri: &str, raw: &Value, expected: &[&str], optional: &[&str]) {
    let mut got = BTreeSet::new();
    paths(raw, "", &mut got);
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let optional: BTreeSet<String> = optional.iter().map(|s| s.to_string()).collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got
        .difference(&expected)
        .filter(|p| !optional.contains(*p))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{uri}: fields missing {missing:?}, unexpected {extra:?}"
    );
}

const HEAP_STATS_FIELDS: &[&str] = &[
    "allocated_bytes",
    "allocated_objects",
    "freed_bytes",
    "freed_objects",
    "live_bytes",
    "live_objects",
    "self_live_bytes",
    "symbolizer_cache_bytes",
    "sample_rate",
    "tracked_blocks",
    "max_tracked_blocks",
    "stacks",
    "dropped_samples",
    "dropped_bytes",
    "dropped_stacks",
    "region_used_bytes",
    "region_reserved_bytes",
    "unwind",
    "unwind.unwinder",
    "unwind.cached",
    "unwind.fallbacks",
    "unwind.rule_hits",
    "unwind.rule_misses",
];

const HISTORY_FIELDS: &[&str] = &[
    "interval_ms",
    "max_points",
    "points_held",
    "entries",
    "memory_bytes",
    "age_memory_bytes",
    "records",
    "record_cpu_ns",
    "last_record_cpu_ns",
    "settings_generation",
    "recorded_generation",
    "points",
    "points[].time_nanos",
    "points[].inuse_bytes",
    "points[].inuse_objects",
    "points[].live_bytes",
    "points[].live_objects",
    "points[].sample_rate",
];

/// `/debug/leaks` with no suspect (the suspects' fields are checked by type in
/// `diag-cli/tests/leak_alarm_e2e.rs`).
const LEAKS_FIELDS: &[&str] = &[
    "alpha",
    "min_rate_bytes_per_sec",
    "window_secs",
    "checks",
    "checked_at_nanos",
    "points",
    "span_secs",
    "stacks_checked",
    "check_cpu_ns",
    "suspects",
];

const TASKS_FIELDS: &[&str] = &[
    "blocking_events",
    "blocking_events[].name",
    "blocking_events[].thread",
    "blocking_events[].duration_ms",
    "blocking_events[].duration_ns",
    "blocking_events[].ongoing",
    "blocking_events[].at_unix_ms",
    "blocking_events[].site",
    "blocking_events[].stack",
    "blocking_sites",
    "blocking_sites[].site",
    "blocking_sites[].count",
    "blocking_sites[].total_ms",
    "lag",
    "lag.running",
    "lag.current_ms",
    "lag.p50_ms",
    "lag.p99_ms",
    "lag.max_ms",
    "lag.window_secs",
    "lag.samples_in_window",
    "lag.interval_ms",
    "runtime",
    "runtime.watching",
    "runtime.interval_ms",
    "runtime.workers",
    "runtime.busy_ratio",
    "runtime.alive_tasks",
    "runtime.global_queue_depth",
    "runtime.total_park_count",
    "runtime.max_busy_ms",
    "runtime.min_busy_ms",
    "tasks",
    "tasks[].name",
    "tasks[].sampled_1_in",
    "tasks[].instrumented",
    "tasks[].dropped",
    "tasks[].polls",
    "tasks[].mean_poll_us",
    "tasks[].slow_polls",
    "tasks[].slow_poll_ratio",
    "tasks[].mean_slow_poll_us",
    "tasks[].long_delays",
    "tasks[].mean_scheduled_us",
    "watchdog",
    "watchdog.threshold_ms",
    "watchdog.stack_capture",
    "watchdog.events_total",
    "watchdog.skipped_in_unwinder",
    "watchdog.captured_cached",
    "watchdog.captured_libgcc",
    "watchdog.capture_failures",
    "watchdog.unwatched_threads",
    "watchdog.dropped_stacks",
    "runtimes",
    "runtimes[].name",
    "runtimes[].serves_requests",
    "runtimes[].lag",
    "runtimes[].lag.running",
    "runtimes[].lag.current_ms",
    "runtimes[].lag.p50_ms",
    "runtimes[].lag.p99_ms",
    "runtimes[].lag.max_ms",
    "runtimes[].lag.window_secs",
    "runtimes[].lag.samples_in_window",
    "runtimes[].lag.interval_ms",
    "runtimes[].runtime",
    "runtimes[].runtime.watching",
    "runtimes[].runtime.interval_ms",
    "runtimes[].runtime.workers",
    "runtimes[].runtime.busy_ratio",
    "runtimes[].runtime.alive_tasks",
    "runtimes[].runtime.global_queue_depth",
    "runtimes[].runtime.total_park_count",
    "runtimes[].runtime.max_busy_ms",
    "runtimes[].runtime.min_busy_ms",
];

/// `/debug/tasks?symbolize=0` adds these: each site entry carries its stack, and the answer
/// what names them elsewhere.
const TASKS_RAW_FIELDS: &[&str] = &[
    "blocking_sites[].stack",
    "raw",
    "raw.mappings",
    "raw.mappings[].start",
    "raw.mappings[].limit",
    "raw.mappings[].offset",
    "raw.mappings[].file",
    "raw.mappings[].build_id",
    "raw.comments",
];

/// Only with `--cfg tokio_unstable`.
const TASKS_OPTIONAL: &[&str] = &[
    "runtime.polls",
    "runtime.mean_poll_us",
    "runtime.steals",
    "runtime.local_queue_depth",
    "runtime.blocking_threads",
    "runtimes[].runtime.polls",
    "runtimes[].runtime.mean_poll_us",
    "runtimes[].runtime.steals",
    "runtimes[].runtime.local_queue_depth",
    "runtimes[].runtime.blocking_threads",
    // Only while no runtime is watched.
    "not_watching",
];

#[inline(never)]
fn block_a_worker() {
    std::thread::sleep(Duration::from_millis(80)); // workload: the blocking poll to catch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_their_wire_types() {
    let diag = diag_core::Diag::builder()
        .no_listener()
        .blocking_threshold(Duration::from_millis(20))
        .heap_history(Duration::from_millis(100), 10)
        .start()
        .unwrap();
    let app = diag.router();
    // Something in every list: a blocking poll of a named task, history points.
    diag_core::spawn("wire-blocker", async { block_a_worker() })
        .await
        .unwrap();

    let tasks = support::wait_until_async(
        Duration::from_secs(30),
        "/debug/tasks with blocking events, blocking sites and tasks",
        || async {
            let raw = get_json(&app, "/debug/tasks").await;
            support::when(raw, |raw| {
                ["blocking_events", "blocking_sites", "tasks"]
                    .iter()
                    .all(|k| raw[k].as_array().is_some_and(|a| !a.is_empty()))
            })
        },
    )
    .await;
    assert_fields("/debug/tasks", &tasks, TASKS_FIELDS, TASKS_OPTIONAL);
    let typed: Tasks = round_trip("/debug/tasks", &tasks);
    assert!(typed.tasks.iter().any(|t| t.name == "wire-blocker"));
    assert!(typed.blocking_events.iter().any(|e| e.duration_ms >= 20));
    // The text view renders the same typed answer.
    let reply = support::oneshot(app.clone(), "/debug/tasks?debug=1", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    assert!(text.starts_with("lag: current "), "{text}");
    assert!(text.contains("wire-blocker"), "{text}");
    // Unsymbolized: addresses only, and the mappings (with build IDs) that name them.
    let raw = get_json(&app, "/debug/tasks?symbolize=0").await;
    let fields: Vec<&str> = TASKS_FIELDS
        .iter()
        .chain(TASKS_RAW_FIELDS)
        .copied()
        .collect();
    assert_fields("/debug/tasks?symbolize=0", &raw, &fields, TASKS_OPTIONAL);
    let typed: Tasks = round_trip("/debug/tasks?symbolize=0", &raw);
    let how = typed.raw.as_ref().expect("raw is set");
    assert!(
        how.mappings.iter().any(|m| !m.build_id.is_empty()),
        "{how:?}"
    );
    assert!(
        how.comments
            .iter()
            .any(|c| c == "raw_stacks=drop_top_machinery"),
        "{how:?}"
    );
    let frames = typed.blocking_events.iter().flat_map(|e| &e.stack);
    assert!(frames.clone().all(|f| f.starts_with("0x")), "{typed:?}");
    assert!(frames.count() > 0);

    let stats = get_json(&app, "/debug/heap/stats").await;
    assert_fields("/debug/heap/stats", &stats, HEAP_STATS_FIELDS, &[]);
    let typed: HeapStats = round_trip("/debug/heap/stats", &stats);
    assert!(typed.allocated_bytes > 0);
    assert_eq!(typed.unwind.unwinder, "cached");

    let history = support::wait_until_async(
        Duration::from_secs(30),
        "two heap history points",
        || async {
            let raw = get_json(&app, "/debug/heap/history").await;
            support::when(raw, |raw| {
                raw["points"].as_array().is_some_and(|a| a.len() >= 2)
            })
        },
    )
    .await;
    assert_fields("/debug/heap/history", &history, HISTORY_FIELDS, &[]);
    let typed: HeapHistory = round_trip("/debug/heap/history", &history);
    assert_eq!(typed.stats.interval_ms, 100);
    assert!(typed.points.len() >= 2);

    let leaks = get_json(&app, "/debug/leaks").await;
    assert_fields("/debug/leaks", &leaks, LEAKS_FIELDS, &[]);
    let typed: Leaks = round_trip("/debug/leaks", &leaks);
    assert_eq!(typed.alpha, diag_core::heap::DEFAULT_LEAK_ALPHA);

    // Lenient reading: what an older service leaves out takes its default.
    let old: HeapStats = serde_json::from_str(r#"{"live_bytes": 5}"#).unwrap();
    assert_eq!((old.live_bytes, old.unwind.cached), (5, 0));
}
