//! diag's own events in the application's log, through `tracing` (target `diag`; diag
//! installs no subscriber): blocking polls (warn, with the route or task, how long it had
//! blocked when caught, the thread and the application's site), heap samples or stacks
//! dropped at diag's caps (warn). Refused debug requests and CPU profiles log where they
//! happen (`http::error`, `cpu::session`).
//!
//! A blocking poll is logged from a thread of diag's (`diag-log`), not the watchdog's: naming
//! its site means symbolizing the stack, which the watchdog must not wait for. That thread
//! starts at the first blocking event, symbolizes only when a subscriber listens at warn
//! level for target `diag`, and takes events through a bounded queue (a full queue drops
//! the log line, never the event: `/debug/tasks` still has it).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::events;
use crate::alloc_state::{DROPPED_SAMPLES, DROPPED_STACKS};

/// A blocking poll the watchdog caught.
struct Blocked {
    name: Arc<str>,
    thread: Arc<str>,
    duration_ns: u64,
    frames: Vec<usize>,
}

static QUEUE: OnceLock<Option<SyncSender<Blocked>>> = OnceLock::new();

/// How often the logging thread looks at the heap profiler's drop counters.
const DROPS_EVERY: Duration = Duration::from_secs(10);

/// Starts the logging thread (at `init`, so heap drops are logged whether or not anything
/// blocks).
pub(crate) fn ensure_started() {
    QUEUE.get_or_init(start);
}

/// Logs a blocking poll (see the module docs). Never waits.
pub(crate) fn blocking_poll(
    name: &Arc<str>,
    thread: &Arc<str>,
    duration_ns: u64,
    frames: &[usize],
) {
    let Some(tx) = QUEUE.get_or_init(start) else {
        return;
    };
    let _ = tx.try_send(Blocked {
        name: name.clone(),
        thread: thread.clone(),
        duration_ns,
        frames: frames.to_vec(),
    });
}

fn start() -> Option<SyncSender<Blocked>> {
    let (tx, rx) = sync_channel::<Blocked>(64);
    std::thread::Builder::new()
        .name("diag-log".into())
        .spawn(move || {
            crate::alloc_state::ignore_this_thread();
            let mut seen = (0, 0);
            loop {
                match rx.recv_timeout(DROPS_EVERY) {
                    Ok(b) => log_blocked(&b),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                log_new_drops(&mut seen);
            }
        })
        .ok()?;
    Some(tx)
}

fn log_blocked(b: &Blocked) {
    if !tracing::enabled!(target: "diag", tracing::Level::WARN) {
        return;
    }
    let stack = events::symbolize(&b.frames);
    let site = events::user_site(&stack).map(|(name, _)| name);
    tracing::warn!(
        target: "diag",
        name = %b.name,
        thread = %b.thread,
        blocked_ms = b.duration_ns / 1_000_000,
        site = site.as_deref().unwrap_or("(no stack)"),
        "blocking poll: a poll held its runtime thread past the threshold"
    );
}

/// Warns when the heap profiler dropped samples or stacks since the last look.
fn log_new_drops(seen: &mut (u64, u64)) {
    let now = (DROPPED_SAMPLES.load(Relaxed), DROPPED_STACKS.load(Relaxed));
    if now.0 > seen.0 || now.1 > seen.1 {
        tracing::warn!(
            target: "diag",
            dropped_samples = now.0 - seen.0,
            dropped_stacks = now.1 - seen.1,
            "heap profiler dropped samples at its caps (DIAG_MAX_TRACKED_BLOCKS, the stack table)"
        );
    }
    *seen = now;
}
