//! Readiness checks registered by the application, run by `GET /ready`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::defaults::DEFAULT_READINESS_TIMEOUT;

static TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_READINESS_TIMEOUT.as_millis() as u64);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

static CHECKS: Mutex<Vec<(Arc<str>, CheckFn)>> = Mutex::new(Vec::new());

/// Registers a readiness check: `GET /ready` answers 503 naming every check that returns
/// `Err(reason)` or does not finish within the timeout ([`DEFAULT_READINESS_TIMEOUT`], or
/// [`Builder::readiness_timeout`](crate::Builder::readiness_timeout)). Registering a name again replaces the earlier check.
///
/// ```no_run
/// diag_core::readiness("db", || async { Ok(()) });
/// ```
pub fn readiness<F, Fut>(name: &str, check: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let f: CheckFn = Arc::new(move || Box::pin(check()) as CheckFuture);
    let mut checks = CHECKS.lock().unwrap_or_else(|e| e.into_inner());
    checks.retain(|(n, _)| &**n != name);
    checks.push((Arc::from(name), f));
}

/// Sets the per-check timeout.
pub(crate) fn set_timeout(t: Duration) {
    TIMEOUT_MS.store(t.as_millis().clamp(1, u64::MAX as u128) as u64, Relaxed);
}

/// The outcome of one check.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CheckResult {
    pub(crate) name: String,
    pub(crate) ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) seconds: f64,
}

/// Runs every registered check concurrently, each under the timeout. A check that panics
/// counts as failed.
pub(crate) async fn run_all() -> Vec<CheckResult> {
    let checks: Vec<(Arc<str>, CheckFn)> = CHECKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let timeout = Duration::from_millis(TIMEOUT_MS.load(Relaxed));
    let handles: Vec<_> = checks
        .into_iter()
        .map(|(name, f)| {
            let task = tokio::spawn(async move {
                let start = Instant::now();
                let r = tokio::time::timeout(timeout, f()).await;
                (r, start.elapsed())
            });
            (name, task)
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for (name, task) in handles {
        let (ok, error, seconds) = match task.await {
            Ok((Ok(Ok(())), d)) => (true, None, d.as_secs_f64()),
            Ok((Ok(Err(e)), d)) => (false, Some(e), d.as_secs_f64()),
            Ok((Err(_), d)) => (
                false,
                Some(format!("timed out after {} ms", timeout.as_millis())),
                d.as_secs_f64(),
            ),
            Err(e) => (false, Some(format!("check failed: {e}")), 0.0),
        };
        out.push(CheckResult {
            name: name.to_string(),
            ok,
            error,
            seconds,
        });
    }
    out
}
