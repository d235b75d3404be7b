//! The labels of a sampled allocation: the OS thread's name, and the route or task being
//! polled (read from the watchdog's per-thread poll slot, which diag's poll wrappers set).
//!
//! Read only when a sample is taken, so the unsampled allocation path never touches them.
//! Everything here runs inside the allocator: no allocation, no panic; the only lock is the
//! thread-name table's, taken the first time a thread samples under a new name.
//!
//! A label is two small integers stored with the stack in the stack table (the table keys on
//! stack and labels together): the poll's name id (`tasks::poll_label` names it) and an index
//! into a fixed table of thread names, interned here, at most [`MAX_THREAD_NAMES`] of them;
//! later names share the `(other)` entry and are counted in [`DROPPED_LABELS`].

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::names::{OVERFLOW, THREAD_LABEL};

/// Distinct thread names kept (index 0 is `(other)`).
pub(crate) const MAX_THREAD_NAMES: usize = 1024;
/// No instrumented poll was running (no `route`/`task` label).
pub(crate) const NO_POLL: u32 = u32::MAX;
/// The thread name was not read (allocation during thread teardown).
pub(crate) const NO_THREAD: u16 = u16::MAX;

/// Samples whose thread name went to `(other)` because the table was full.
pub(crate) static DROPPED_LABELS: AtomicU64 = AtomicU64::new(0);

/// The labels of one sample, as stored in the stack table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Labels {
    /// The running poll's name id, or [`NO_POLL`].
    pub(crate) poll: u32,
    /// Index of the thread's name in the name table, or [`NO_THREAD`].
    pub(crate) thread: u16,
}

impl Labels {
    /// No labels (the stack table's overflow entry, tests).
    pub(crate) const NONE: Self = Self {
        poll: NO_POLL,
        thread: NO_THREAD,
    };
}

struct Names {
    len: usize,
    names: [[u8; 16]; MAX_THREAD_NAMES],
}

static NAMES: Mutex<Names> = Mutex::new(Names {
    len: 1, // index 0: (other)
    names: [[0; 16]; MAX_THREAD_NAMES],
});

thread_local! {
    /// This thread's name's index once read (const, no destructor: readable in the allocator
    /// during thread exit).
    static LAST: Cell<u16> = const { Cell::new(NO_THREAD) };
}

/// The labels of an allocation sampled now on this thread.
pub(crate) fn current() -> Labels {
    #[cfg(feature = "server")]
    let poll = crate::tasks::running_poll().unwrap_or(NO_POLL);
    #[cfg(not(feature = "server"))]
    let poll = NO_POLL;
    Labels {
        poll,
        thread: thread_index(),
    }
}

/// This thread's name, interned: read (one `prctl`) the first time the thread samples, then
/// taken from the thread's cache. A thread that renames itself after its first sample keeps
/// its first name (runtimes name their threads before running anything on them); the cache
/// keeps the syscall off every later sample (measured: +1.5 points of `heap_ab` `json` at
/// 128 KiB with a `prctl` per sample).
fn thread_index() -> u16 {
    if let Ok(index) = LAST.try_with(Cell::get)
        && index != NO_THREAD
    {
        return index;
    }
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL included) into `name`.
    if unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) } != 0 {
        return NO_THREAD;
    }
    let index = intern(&name);
    let _ = LAST.try_with(|l| l.set(index));
    index
}

fn intern(name: &[u8; 16]) -> u16 {
    let Ok(mut t) = NAMES.lock() else {
        return NO_THREAD;
    };
    let len = t.len;
    if let Some(i) = t.names[1..len].iter().position(|n| n == name) {
        return (i + 1) as u16;
    }
    if len >= MAX_THREAD_NAMES {
        DROPPED_LABELS.fetch_add(1, Relaxed);
        return 0;
    }
    t.names[len] = *name;
    t.len = len + 1;
    len as u16
}

/// This thread's name as its samples' `thread` label carries it.
pub(crate) fn this_thread_name() -> Option<String> {
    thread_name(thread_index())
}

/// The name at `index` (from [`Labels::thread`]), `None` for [`NO_THREAD`].
pub(crate) fn thread_name(index: u16) -> Option<String> {
    if index == NO_THREAD {
        return None;
    }
    if index == 0 {
        return Some(OVERFLOW.to_owned());
    }
    // Copied out first: nothing allocates while the lock is held (an allocation sampled on
    // this thread would take it again).
    let raw = *NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .names
        .get(index as usize)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// `folded_names=N`: route and task names registered past the watchdog's cap, whose samples
/// carry `(other)`.
pub(crate) fn folded_names_comment() -> Option<String> {
    #[cfg(feature = "server")]
    {
        Some(format!(
            "folded_names={}",
            crate::tasks::FOLDED_NAMES.load(Relaxed)
        ))
    }
    #[cfg(not(feature = "server"))]
    {
        None
    }
}

/// The pprof labels of a stack-table entry: `thread` always (when read), and `route` or `task`
/// when an instrumented poll was running.
pub(crate) fn pprof_labels(l: Labels) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(2);
    if let Some(name) = thread_name(l.thread) {
        out.push((THREAD_LABEL.to_owned(), name));
    }
    #[cfg(feature = "server")]
    if l.poll != NO_POLL
        && let Some((key, value)) = crate::tasks::poll_label(l.poll)
    {
        out.push((key.to_owned(), value.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_intern_once_and_read_back() {
        let mut a = [0u8; 16];
        a[..7].copy_from_slice(b"worker1");
        let i = intern(&a);
        assert_ne!(i, NO_THREAD);
        assert_ne!(i, 0);
        assert_eq!(intern(&a), i);
        assert_eq!(thread_name(i).as_deref(), Some("worker1"));
        assert_eq!(thread_name(0).as_deref(), Some(OVERFLOW));
        assert_eq!(thread_name(NO_THREAD), None);
    }

    #[test]
    fn this_threads_name_is_read() {
        let h = std::thread::Builder::new()
            .name("labels-test".into())
            .spawn(|| thread_name(thread_index()))
            .unwrap();
        assert_eq!(h.join().unwrap().as_deref(), Some("labels-test"));
    }
}
