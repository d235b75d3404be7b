//! Limits on expensive endpoints: one at a time, and not more often than a minimum interval.
//! Over the limit answers 429 with `Retry-After` and a one-line reason.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::HttpError;

use crate::defaults::{
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SNAPSHOT_MIN_INTERVAL,
};

const DEFAULT_SNAPSHOT_MIN_INTERVAL_MS: u64 = DEFAULT_SNAPSHOT_MIN_INTERVAL.as_millis() as u64;

/// One kind of expensive work: at most one in flight, and a minimum interval between starts.
pub(crate) struct Gate {
    what: &'static str,
    in_flight: AtomicBool,
    last_start_ms: AtomicU64,
    min_interval_ms: AtomicU64,
}

/// Heap snapshots (`/debug/pprof/heap`, `/debug/pprof/allocs`).
pub(crate) static SNAPSHOTS: Gate = Gate::new("heap snapshot", DEFAULT_SNAPSHOT_MIN_INTERVAL_MS);
/// Profiles of recorded heap-history points (`/debug/pprof/heap?at=T`): one at a time, no
/// interval (a client fetches them in a row; each is symbolized from the same cache).
pub(crate) static HISTORY_PROFILES: Gate = Gate::new("heap history profile", 0);
/// Delta heap profiles (`?seconds=N`): one at a time (each takes two snapshots, N s apart).
pub(crate) static HEAP_DELTAS: Gate = Gate::new("heap delta profile", 0);

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

const DEFAULT_REQUEST_TIMEOUT_MS: u64 = DEFAULT_REQUEST_TIMEOUT.as_millis() as u64;

static REQUEST_TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_REQUEST_TIMEOUT_MS);
static MAX_RESPONSE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_RESPONSE_BYTES);

/// Sets the request deadline (0 is taken as 1 ms).
pub(crate) fn set_request_timeout_ms(ms: u64) {
    REQUEST_TIMEOUT_MS.store(ms.max(1), Relaxed);
}

/// Sets the largest response body served (0 is taken as 1 byte).
pub(crate) fn set_max_response_bytes(bytes: u64) {
    MAX_RESPONSE_BYTES.store(bytes.max(1), Relaxed);
}

/// How long a request to `path` (with `query`) may take: the request timeout, plus the
/// longest time the endpoint is asked to take on purpose (CPU profiles, task dumps, and a
/// delta heap profile's `seconds=`).
fn deadline_ms(path: &str, query: Option<&str>) -> u64 {
    let base = REQUEST_TIMEOUT_MS.load(Relaxed);
    let max_seconds_ms = crate::cpu::max_seconds().saturating_mul(1000);
    let on_purpose = if path.ends_with("/debug/pprof/profile") {
        max_seconds_ms
    } else if path.ends_with("/debug/pprof/heap") || path.ends_with("/debug/pprof/allocs") {
        // Only a delta profile waits, and no longer than it asks (the handler caps `seconds`).
        form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "seconds")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .map_or(0, |secs| secs.saturating_mul(1000).min(max_seconds_ms))
    } else if path.ends_with("/debug/pprof/goroutine") {
        crate::tasks::dump::MAX_TIMEOUT_SECS * 1000
    } else {
        0
    };
    base.saturating_add(on_purpose)
}

/// Middleware on every debug route: answers 503 with a one-line reason when a request runs
/// past its deadline or its response body is over the size cap.
pub(crate) async fn enforce(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::HttpBody as _;
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;

    let ms = deadline_ms(req.uri().path(), req.uri().query());
    let Ok(res) = tokio::time::timeout(std::time::Duration::from_millis(ms), next.run(req)).await
    else {
        return HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than its deadline of {ms} ms (DIAG_REQUEST_TIMEOUT_MS, plus the time a profile or dump asks for)"
            ),
        )
        .into_response();
    };
    let max = MAX_RESPONSE_BYTES.load(Relaxed);
    // Every debug response is a full buffer, so its exact size is known here; a body of
    // unknown size is measured by its lower bound.
    let size = res.body().size_hint().lower();
    if size > max {
        return HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the response would be {size} bytes, over the limit of {max} (DIAG_MAX_RESPONSE_BYTES)"
            ),
        )
        .into_response();
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_delta_heap_profile_gets_its_seconds_added() {
        let plain = deadline_ms("/debug/pprof/heap", None);
        assert_eq!(deadline_ms("/debug/pprof/heap", Some("debug=1")), plain);
        assert_eq!(
            deadline_ms("/debug/pprof/allocs", Some("gc=1&seconds=5")),
            plain + 5000
        );
        // Capped as the handler caps it; garbage adds nothing (the handler answers 400).
        assert_eq!(
            deadline_ms("/debug/pprof/heap", Some("seconds=99999999")),
            deadline_ms("/debug/pprof/profile", None)
        );
        assert_eq!(
            deadline_ms("/debug/pprof/heap", Some("seconds=soon")),
            plain
        );
        assert_eq!(deadline_ms("/debug/heap/stats", Some("seconds=5")), plain);
        // Read as the handler reads it: percent-encoded too.
        assert_eq!(
            deadline_ms("/debug/pprof/heap", Some("seconds=%35")),
            plain + 5000
        );
    }
}
