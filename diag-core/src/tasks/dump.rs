//! Task dumps (`taskdump` feature): where every task of the application's runtime is waiting,
//! from tokio's `Handle::dump`.
//!
//! A dump pauses the runtime's workers and re-polls every task in tracing mode, and it never
//! finishes while a worker is blocked. So: one dump at a time, always under a timeout, and a
//! dump that timed out keeps its slot until tokio gives it up (a second request answers
//! "busy" rather than piling up paused tracer threads).

// `tokio_unstable` is set by the application's RUSTFLAGS, not a cargo feature.
#![allow(unexpected_cfgs)]

use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The application's runtime, as first seen by an instrumented poll or `init()`.
static APP: Mutex<Option<tokio::runtime::Handle>> = Mutex::new(None);

/// Remembers `handle` as the runtime to dump (the first one seen wins).
pub(crate) fn remember(handle: &tokio::runtime::Handle) {
    let mut g = APP.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(handle.clone());
    }
}

/// Default and largest timeout of a dump.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 5;
/// Largest timeout a request may ask for.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 30;

/// One task of a dump.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TaskTrace {
    /// tokio's task id.
    pub(crate) id: String,
    /// Where the task awaits, as tokio renders it (a tree of `async fn` frames).
    pub(crate) trace: String,
}

/// Why dumps are not available in this build, if they are not.
pub(crate) fn unavailable_reason() -> Option<&'static str> {
    if !cfg!(feature = "taskdump") {
        return Some("task dumps need diag-core's `taskdump` cargo feature");
    }
    if !cfg!(tokio_unstable) {
        return Some(
            "task dumps need the application built with RUSTFLAGS=\"--cfg tokio_unstable\" (tokio's taskdump is unstable)",
        );
    }
    if !cfg!(all(
        target_os = "linux",
        any(
            target_arch = "x86",
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "s390x"
        )
    )) {
        return Some("tokio's task dumps only exist on Linux x86, x86_64, aarch64 and s390x");
    }
    None
}

/// Dumps the application's runtime, waiting at most `timeout`.
pub(crate) async fn dump(timeout: Duration) -> Result<Vec<TaskTrace>> {
    if let Some(reason) = unavailable_reason() {
        return Err(Error::new(ErrorKind::Unsupported, reason));
    }
    imp::dump(timeout).await
}

#[cfg(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "s390x"
    )
))]
mod imp {
    use std::time::Duration;

    use super::{APP, TaskTrace};
    use crate::error::{Error, ErrorKind, Result};

    /// How long a timed-out dump may keep the in-flight slot.
    const ABANDON_AFTER: Duration = Duration::from_secs(60);
    /// A watched poll running this long means a blocked worker: no dump is started then.
    /// (tokio's workers wait 250 ms for each other at the dump's barrier.)
    const BLOCKED_AFTER_US: u64 = 50_000;

    /// Held by the dump in flight (and by a timed-out one until tokio finishes it).
    static IN_FLIGHT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    pub(super) async fn dump(timeout: Duration) -> Result<Vec<TaskTrace>> {
        let handle = APP.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(handle) = handle else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "no application runtime seen yet: call diag_core::init() inside the runtime, or serve one request through diag_core::layer()",
            ));
        };
        if matches!(
            handle.runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        ) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "tokio only dumps a current-thread runtime from inside it; the debug listener runs on its own thread",
            ));
        }
        // A dump cannot finish while a worker is blocked, and one that times out there leaves
        // tokio's trace barrier miscounted (tokio-rs/tokio#8370): a later dump can then park a
        // worker for good. The watchdog knows about blocked instrumented polls: refuse now.
        if let Some((slot, us, name)) = crate::tasks::slots::longest_running()
            && us >= BLOCKED_AFTER_US
        {
            return Err(Error::new(
                ErrorKind::TimedOut,
                format!(
                    "a worker of the application's runtime is blocked: a poll of {} on thread {} has run for {} ms (see /debug/tasks); no dump started, as it could not finish and a dump that times out on a blocked worker can leave a worker stuck inside tokio (tokio-rs/tokio#8370)",
                    crate::tasks::health::name_of(name),
                    crate::tasks::slots::thread_name(slot),
                    us / 1000
                ),
            ));
        }
        let Ok(guard) = IN_FLIGHT.try_lock() else {
            return Err(Error::new(
                ErrorKind::Busy,
                "a task dump is already running (or an earlier one is still waiting for a blocked worker)",
            ));
        };
        // The dump runs as its own task on diag's runtime so that a timed-out dump keeps the
        // in-flight guard until tokio finishes or drops it.
        let task = tokio::spawn(async move {
            let _held = guard;
            // A dump tokio never finishes (a worker blocked for good) gives the slot back
            // after a while; its tracer thread stays parked inside tokio.
            tokio::time::timeout(ABANDON_AFTER, handle.dump()).await
        });
        let dump = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(d))) => d,
            Ok(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("the task dump failed: {e}"),
                ));
            }
            // The request's deadline, or (never first: it is at most 30 s) the abandon one.
            Ok(Ok(Err(_))) | Err(_) => {
                return Err(Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "the task dump did not finish within {} s: a worker of the application's runtime is blocked (see /debug/tasks)",
                        timeout.as_secs()
                    ),
                ));
            }
        };
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        Ok(dump
            .tasks()
            .iter()
            .map(|t| TaskTrace {
                id: t.id().to_string(),
                trace: t.trace().to_string(),
            })
            .collect())
    }
}

#[cfg(not(all(
    feature = "taskdump",
    tokio_unstable,
    target_os = "linux",
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "s390x"
    )
)))]
mod imp {
    use std::time::Duration;

    use super::TaskTrace;
    use crate::error::{Error, ErrorKind, Result};

    pub(super) async fn dump(_timeout: Duration) -> Result<Vec<TaskTrace>> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "task dumps are not available in this build",
        ))
    }
}
