//! Names every floor shares: the pprof label keys that heap, CPU and block profiles carry, and
//! [`OVERFLOW`], the one name of everything past a cap (thread names, route and task names,
//! operation names).

/// The label that names the sampled thread (`tokio-runtime-worker`, `my-worker-3`, ...).
pub const THREAD_LABEL: &str = "thread";
/// The label that names the route (its template, `/users/{id}`) whose request was being
/// polled under `diag_core::layer()` when the sample was taken.
pub const ROUTE_LABEL: &str = "route";
/// The label that names the task (`diag_core::spawn(name, ..)`) being polled when the sample
/// was taken.
pub const TASK_LABEL: &str = "task";

/// The start of the name of every thread diag starts (`diag-http`, `diag-blocking`,
/// `diag-cpu`, `diag-watchdog`, ...): CPU and heap samples whose `thread` label starts with it
/// are diag's own work, which the CLI leaves out unless asked (`--include-diag`).
pub const DIAG_THREAD_PREFIX: &str = "diag-";

/// The name that every name past a cap folds into: a thread name past the heap profiler's
/// table, a route or task name past the watchdog's, an operation name past
/// `MAX_OPERATIONS`.
#[cfg(feature = "heap")]
pub(crate) const OVERFLOW: &str = "(other)";
