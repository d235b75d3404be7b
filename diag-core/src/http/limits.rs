//! Limits on expensive endpoints: one at a time, and not more often than a minimum interval.
//! Over the limit answers 429 with `Retry-After` and a one-line reason.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::HttpError;

/// Default minimum time between two heap snapshots.
pub(crate) const DEFAULT_SNAPSHOT_MIN_INTERVAL_MS: u64 = 200;

/// One kind of expensive work: at most one in flight, and a minimum interval between starts.
pub(crate) struct Gate {
    what: &'static str,
    in_flight: AtomicBool,
    last_start_ms: AtomicU64,
    min_interval_ms: AtomicU64,
}

/// Heap snapshots (`/debug/pprof/heap`, `/debug/pprof/allocs`).
pub(crate) static SNAPSHOTS: Gate = Gate::new("heap snapshot", DEFAULT_SNAPSHOT_MIN_INTERVAL_MS);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Holds the gate while the work runs.
pub(crate) struct Pass(&'static Gate);

impl Drop for Pass {
    fn drop(&mut self) {
        self.0.in_flight.store(false, Release);
    }
}

impl Gate {
    const fn new(what: &'static str, min_interval_ms: u64) -> Self {
        Self {
            what,
            in_flight: AtomicBool::new(false),
            last_start_ms: AtomicU64::new(0),
            min_interval_ms: AtomicU64::new(min_interval_ms),
        }
    }

    /// Sets the minimum interval between starts (0: only the one-at-a-time rule).
    pub(crate) fn set_min_interval_ms(&self, ms: u64) {
        self.min_interval_ms.store(ms, Relaxed);
    }

    /// Lets one request through, or answers why not.
    pub(crate) fn enter(&'static self) -> Result<Pass, HttpError> {
        let min = self.min_interval_ms.load(Relaxed);
        let now = now_ms();
        let last = self.last_start_ms.load(Relaxed);
        let wait = (last + min).saturating_sub(now);
        if wait > 0 {
            return Err(HttpError::too_many(
                format!(
                    "{} rate limit: at most one every {min} ms; retry in {wait} ms",
                    self.what
                ),
                wait,
            ));
        }
        if self
            .in_flight
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_err()
        {
            return Err(HttpError::too_many(
                format!("another {} is being built; retry shortly", self.what),
                min.max(100),
            ));
        }
        self.last_start_ms.store(now, Relaxed);
        Ok(Pass(self))
    }
}
