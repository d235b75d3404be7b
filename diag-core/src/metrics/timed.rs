//! Named operation timings: `timed("db.query", fut).await` for async code, a [`Timer`] guard
//! for sync code. Both record into `diag_operation_duration_seconds{operation="..."}`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;

/// At most this many distinct operation names get their own series; timings under later
/// names are recorded as `operation="other"` and counted in
/// `diag_operation_names_folded_total`.
pub const MAX_OPERATIONS: usize = 64;

/// The label value that names past [`MAX_OPERATIONS`] fold into.
const OTHER: &str = "other";

/// Labels of the operation histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OperationLabels {
    pub(crate) operation: Arc<str>,
}

/// Name -> histogram handle and whether the name was folded into `other`.
type NameTable = HashMap<Box<str>, (Histogram, bool)>;

/// The name table, so recording is a read-locked lookup.
static NAMES: RwLock<Option<NameTable>> = RwLock::new(None);

fn handle(name: &str) -> (Histogram, bool) {
    if let Some(h) = NAMES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(name))
    {
        return h.clone();
    }
    let _ignore = crate::heap::IgnoreAllocs::new();
    let m = super::global();
    let mut guard = NAMES.write().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(h) = map.get(name) {
        return h.clone();
    }
    let own = map.values().filter(|(_, folded)| !folded).count();
    let folded = own >= MAX_OPERATIONS;
    let label = if folded { OTHER } else { name };
    let h = m.operations.get_or_create_owned(&OperationLabels {
        operation: Arc::from(label),
    });
    // Remember folded names too (bounded by the same cap) so they stay cheap; past that,
    // unknown names take the slow path but still land in `other`.
    if !folded || map.len() < 2 * MAX_OPERATIONS {
        map.insert(name.into(), (h.clone(), folded));
    }
    (h, folded)
}

fn record(name: &str, seconds: f64) {
    let (h, folded) = handle(name);
    h.observe(seconds);
    if folded {
        super::global().operations_folded.inc();
    }
}

/// Times `fut` under `name` (e.g. `"db.query"`): the histogram gets the wall time from the
/// first poll to completion. A future dropped before completing records nothing.
pub async fn timed<F: Future>(name: &str, fut: F) -> F::Output {
    let start = Instant::now();
    let out = fut.await;
    record(name, start.elapsed().as_secs_f64());
    out
}

/// A guard that records the time from [`timer`] to its drop under its name.
#[must_use = "the timer records when dropped: bind it, e.g. `let _t = diag_core::timer(\"x\");`"]
#[derive(Debug)]
pub struct Timer {
    histogram: Histogram,
    folded: bool,
    start: Instant,
}

/// Starts timing a piece of sync code under `name`; the time is recorded when the returned
/// guard drops (`let _t = diag_core::timer("cache.get");`).
pub fn timer(name: &str) -> Timer {
    let (histogram, folded) = handle(name);
    Timer {
        histogram,
        folded,
        start: Instant::now(),
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
        if self.folded {
            super::global().operations_folded.inc();
        }
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
        assert!(count(&text, "other").unwrap() >= 6);
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
    }
}
