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

/// The label that says how old a heap sample's live bytes are: one of
/// [`AGE_BUCKETS`](crate::profile::AGE_BUCKETS)' names (`<1s`, `1-10s`, ..., `>1d`). Every
/// live heap profile splits each stack's in-use values by it.
pub const AGE_LABEL: &str = "age";
/// The numeric label (unit `seconds`) that a heap sample split by [`AGE_LABEL`] carries once
/// per live sampled block in it: that block's age in whole seconds. `diag ages` reads it.
pub const AGE_SECS_LABEL: &str = "age_secs";
