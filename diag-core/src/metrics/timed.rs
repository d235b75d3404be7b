//! Named operation timings: `timed("db.query", fut).await` for async code, a [`Timer`] guard
//! for sync code. Both record into `diag_operation_duration_seconds{operation="..."}`.
//!
//! A name resolves to a process-lifetime entry once; after that a thread finds it in a small
//! direct-mapped cache of its own (indexed by the name's address, confirmed by comparing the
//! text), and records into the entry's [`Sharded`] histogram: no lock, no hash and no shared
//! cache line per timing.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::latency::{self, Sharded};
use super::{FrontCache, front_cached};
use crate::names::OVERFLOW;

/// At most this many distinct operation names get their own series; timings under later
/// names are recorded as `operation="(other)"` and counted in
/// `diag_operation_names_folded_total`.
pub const MAX_OPERATIONS: usize = 64;

/// Labels of the operation histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Arc<str>,
}

/// One series: an operation label and its histogram.
struct Series {
    label: Arc<str>,
    latency: Sharded<0>,
}

/// A name as recorded: its series (its own, or `(other)`'s when folded).
struct Name {
    name: Box<str>,
    series: &'static Series,
    folded: bool,
}

#[derive(Default)]
struct Table {
    /// Every name remembered so far (bounded: see [`resolve`]).
    names: HashMap<Box<str>, &'static Name>,
    /// Every series, in creation order (at most `MAX_OPERATIONS + 1`).
    series: Vec<&'static Series>,
    /// The `(other)` series, once created.
    other: Option<&'static Series>,
    /// The entry shared by folded names past the bound on remembered names.
    unremembered: Option<&'static Name>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);
/// Timings recorded under `(other)` because the name cap was reached.
static FOLDED: AtomicU64 = AtomicU64::new(0);

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// The entry of `name`, through this thread's cache.
#[inline]
fn lookup(name: &str) -> &'static Name {
    thread_local! {
        static FRONT: FrontCache<Name, 32> = const { [const { Cell::new(None) }; 32] };
    }
    front_cached(&FRONT, name, |n| &n.name, || resolve(name))
}

/// Finds or creates the entry of `name` (the slow path: a global lock).
#[cold]
fn resolve(name: &str) -> &'static Name {
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    let mut guard = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let t = guard.get_or_insert_with(Table::default);
    if let Some(n) = t.names.get(name) {
        return n;
    }
    let own = t.series.len() - usize::from(t.other.is_some());
    let folded = own >= MAX_OPERATIONS;
    let new_series = |all: &mut Vec<&'static Series>, label: &str| {
        let s = leak(Series {
            label: Arc::from(label),
            latency: Sharded::new(),
        });
        all.push(s);
        s
    };
    let series = if folded {
        *t.other
            .get_or_insert_with(|| new_series(&mut t.series, OVERFLOW))
    } else {
        new_series(&mut t.series, name)
    };
    let n = Name {
        name: name.into(),
        series,
        folded,
    };
    // Remember folded names too, up to a bound, so they stay cheap. Past it, names share one
    // folded entry that matches no name in the threads' caches (its own name is empty), so
    // they take this slow path each time but still land in `(other)`, and memory stays bounded.
    if t.names.len() < 2 * MAX_OPERATIONS {
        let n = leak(n);
        t.names.insert(n.name.clone(), n);
        n
    } else {
        t.unremembered.get_or_insert_with(|| {
            leak(Name {
                name: "".into(),
                ..n
            })
        })
    }
}

impl Name {
    /// Records one timing under this name (into `(other)`'s series if folded).
    fn record(&self, elapsed: std::time::Duration) {
        self.series.latency.observe(elapsed, None);
        if self.folded {
            FOLDED.fetch_add(1, Relaxed);
        }
    }
}

/// Times `fut` under `name` (e.g. `"db.query"`): the histogram gets the wall time from the
/// first poll to completion. A future dropped before completing records nothing.
pub async fn timed<F: Future>(name: &str, fut: F) -> F::Output {
    let start = Instant::now();
    let out = fut.await;
    lookup(name).record(start.elapsed());
    out
}

/// A guard that records the time from [`timer`] to its drop under its name.
#[must_use = "the timer records when dropped: bind it, e.g. `let _t = diag_core::timer(\"x\");`"]
pub struct Timer {
    name: &'static Name,
    start: Instant,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("operation", &&*self.name.series.label)
            .field("start", &self.start)
            .finish()
    }
}

/// Starts timing a piece of sync code under `name`; the time is recorded when the returned
/// guard drops (`let _t = diag_core::timer("cache.get");`).
pub fn timer(name: &str) -> Timer {
    Timer {
        name: lookup(name),
        start: Instant::now(),
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.name.record(self.start.elapsed());
    }
}

/// Writes `diag_operation_duration_seconds` and `diag_operation_names_folded_total`.
#[derive(Debug)]
pub(crate) struct OperationCollector;

impl prometheus_client::collector::Collector for OperationCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        let mut series: Vec<&'static Series> = TABLE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.series.clone())
            .unwrap_or_default();
        series.sort_by(|a, b| a.label.cmp(&b.label));
        let rows: Vec<(OperationLabels, _)> = series
            .iter()
            .map(|s| {
                let labels = OperationLabels {
                    operation: s.label.clone(),
                };
                (labels, s.latency.totals())
            })
            .collect();
        latency::encode_family(
            &mut enc,
            "diag_operation_duration",
            "Duration of operations timed with diag_core::timed / diag_core::timer",
            rows.iter().map(|(labels, totals)| (labels, totals)),
        )?;
        enc.encode_descriptor(
            "diag_operation_names_folded",
            "Timings recorded under operation=\"(other)\" because the name cap was reached",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, u64, f64>(&FOLDED.load(Relaxed), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str, op: &str) -> Option<u64> {
        let key = format!("diag_operation_duration_seconds_count{{operation=\"{op}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map(|v| v.parse().unwrap())
    }

    // One test: the name table is process-global and the cap is reached on purpose.
    #[tokio::test]
    async fn timed_and_timer_record_and_names_past_the_cap_fold_into_other() {
        assert_eq!(timed("unit.async", async { 7 }).await, 7);
        assert_eq!(count(&super::super::render(), "unit.async"), Some(1));
        for i in 0..MAX_OPERATIONS + 5 {
            let _t = timer(&format!("unit.op{i}"));
        }
        let text = super::super::render();
        let own = text
            .lines()
            .filter(|l| l.starts_with("diag_operation_duration_seconds_count{"))
            .count();
        assert_eq!(own, MAX_OPERATIONS + 1, "{text}");
        assert!(count(&text, OVERFLOW).unwrap() >= 6);
        {
            let _t = timer("unit.async");
        }
        timed("unit.op0", async {}).await;
        let text = super::super::render();
        assert_eq!(count(&text, "unit.async"), Some(2));
        assert_eq!(count(&text, "unit.op0"), Some(2));
        let folded: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("diag_operation_names_folded_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(folded >= 6.0, "{folded}");
        // Past the bound on remembered names: still folded into `(other)`, still counted.
        let before = count(&super::super::render(), OVERFLOW).unwrap();
        for i in 0..3 * MAX_OPERATIONS {
            let _t = timer(&format!("unit.many{i}"));
        }
        timed("unit.many0", async {}).await;
        let text = super::super::render();
        assert_eq!(
            count(&text, OVERFLOW),
            Some(before + 3 * MAX_OPERATIONS as u64 + 1)
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("diag_operation_duration_seconds_count{"))
                .count(),
            MAX_OPERATIONS + 1,
            "no series past the cap"
        );
    }
}
