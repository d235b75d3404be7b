//! Captures when it matters: with a capture directory set (`DIAG_CAPTURE_DIR`), the heap is
//! written there when a site becomes a leak suspect and when the process nears its memory
//! limit, so the profile of the moment is on disk before anyone asks (and before an OOM kill
//! takes it away).
//!
//! A capture is two gzip'd pprof files, the same bytes `GET /debug/pprof/heap` and `?at=T`
//! serve: the heap now (`...-current.pb.gz`) and the heap history's oldest point
//! (`...-oldest.pb.gz`, if the history holds one), and one JSON line appended to
//! `index.jsonl` ([`CaptureEntry`](crate::wire::CaptureEntry)). `diag diff DIR` compares the
//! two files of the latest capture.
//!
//! - **Memory**: [`memory`] reads usage and limit: the process's cgroup (v2 or v1), or with
//!   a limit given in bytes, the process's resident set against it. Usage at or above the
//!   threshold percentage captures when it gets there, and again every
//!   [`CAPTURE_MIN_INTERVAL`] while it stays there.
//! - **Suspects**: the leak alarm calls [`suspect`] when a site becomes one.
//! - **Rate**: at most one capture per [`CAPTURE_MIN_INTERVAL`] (failed attempts count, so a
//!   read-only directory is not retried every second); reasons within it are counted
//!   (`diag_capture_skipped_total`), not written. Changing the settings starts over.
//! - **Files**: at most the configured number are kept, the oldest captures removed first
//!   ([`files`]).
//! - **Failure is soft**: a capture that cannot be written (missing or read-only directory,
//!   full disk) is a `tracing` warning (target `diag`) and `diag_capture_failures_total`.
//!
//! Everything runs on diag's own thread (`diag-capture`), whose allocations are never
//! sampled; it reads the memory files once a second ([`CHECK_EVERY`]) and wakes at once for a
//! new suspect. Nothing here runs on the allocator path.

mod files;
mod memory;

pub use files::INDEX_FILE;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::defaults::{
    CAPTURE_MIN_INTERVAL, DEFAULT_CAPTURE_AT_PERCENT, DEFAULT_CAPTURE_MAX_FILES,
};

/// How often the capture thread reads the memory usage.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Why a capture was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A site became a leak suspect.
    Suspect,
    /// Memory reached the threshold share of the limit.
    MemoryLimit,
}

impl Reason {
    /// The name in the index, the files' names and the metrics' `reason` label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reason::Suspect => "suspect",
            Reason::MemoryLimit => "memory_limit",
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    dir: Option<PathBuf>,
    at_percent: u8,
    max_files: usize,
    memory_limit: Option<u64>,
    /// Bumped by every [`set_capture`].
    generation: u64,
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    dir: None,
    at_percent: DEFAULT_CAPTURE_AT_PERCENT,
    max_files: DEFAULT_CAPTURE_MAX_FILES,
    memory_limit: None,
    generation: 0,
});
/// The site of a suspect not yet captured.
static PENDING: Mutex<Option<String>> = Mutex::new(None);
static STARTED: AtomicBool = AtomicBool::new(false);
static THREAD: OnceLock<std::thread::Thread> = OnceLock::new();
static CGROUP: OnceLock<memory::Cgroup> = OnceLock::new();

/// Captures written, failed and skipped, by reason (`[suspect, memory_limit]`).
static CAPTURES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static SKIPPED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static FAILURES: AtomicU64 = AtomicU64::new(0);

fn slot(r: Reason) -> usize {
    match r {
        Reason::Suspect => 0,
        Reason::MemoryLimit => 1,
    }
}

/// What the capture has done since the start (`/metrics`: `diag_captures_total{reason}`,
/// `diag_capture_failures_total`, `diag_capture_skipped_total{reason}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaptureStats {
    /// Captures written because a site became a leak suspect.
    pub suspect: u64,
    /// Captures written because memory neared its limit.
    pub memory_limit: u64,
    /// Captures that could not be written.
    pub failures: u64,
    /// Suspects that came within the minimum interval of the last capture.
    pub skipped_suspect: u64,
    /// Crossings of the memory threshold within the minimum interval of the last capture.
    pub skipped_memory_limit: u64,
}

/// The capture's counters.
pub fn capture_stats() -> CaptureStats {
    CaptureStats {
        suspect: CAPTURES[0].load(Relaxed),
        memory_limit: CAPTURES[1].load(Relaxed),
        failures: FAILURES.load(Relaxed),
        skipped_suspect: SKIPPED[0].load(Relaxed),
        skipped_memory_limit: SKIPPED[1].load(Relaxed),
    }
}

/// Captures the heap into `dir` (`None`: never, the default) when a site becomes a leak
/// suspect and when memory reaches `at_percent` of the limit (1 to 100, default
/// [`DEFAULT_CAPTURE_AT_PERCENT`](crate::heap::DEFAULT_CAPTURE_AT_PERCENT)), keeping at most
/// `max_files` files (at least 2, default
/// [`DEFAULT_CAPTURE_MAX_FILES`](crate::heap::DEFAULT_CAPTURE_MAX_FILES)). The limit is
/// `memory_limit` bytes against the process's resident set if given, else the process's
/// cgroup's. Starts the capture thread on first use; new settings start over (the next
/// reason captures at once).
pub fn set_capture(
    dir: Option<PathBuf>,
    at_percent: u8,
    max_files: usize,
    memory_limit: Option<u64>,
) {
    let on = dir.is_some();
    if let Some(d) = &dir
        && !d.is_dir()
    {
        warn_dir(d);
    }
    {
        let mut s = lock(&SETTINGS);
        s.dir = dir;
        s.at_percent = at_percent.clamp(1, 100);
        s.max_files = max_files.max(2);
        s.memory_limit = memory_limit.filter(|l| *l > 0);
        s.generation += 1;
    }
    if let Some(t) = THREAD.get() {
        t.unpark();
        return;
    }
    if !on || STARTED.swap(true, Relaxed) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("diag-capture".into())
        .spawn(run);
    if spawned.is_err() {
        STARTED.store(false, Relaxed);
    }
}

/// Called by the leak alarm when the stack of `site` becomes a suspect: captures (on the
/// capture thread) if a directory is set.
pub(crate) fn suspect(site: &str) {
    if lock(&SETTINGS).dir.is_none() {
        return;
    }
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    lock(&PENDING).get_or_insert_with(|| site.to_owned());
    if let Some(t) = THREAD.get() {
        t.unpark();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The capture thread: reads memory every [`CHECK_EVERY`], takes pending suspects, captures.
fn run() {
    std::mem::forget(crate::alloc_state::IgnoreAllocs::new());
    let _ = THREAD.set(std::thread::current());
    let mut generation = u64::MAX;
    let mut last: Option<Instant> = None;
    let mut was_above = false;
    loop {
        let s = lock(&SETTINGS).clone();
        if s.generation != generation {
            (generation, last, was_above) = (s.generation, None, false);
        }
        let Some(dir) = s.dir.clone() else {
            *lock(&PENDING) = None;
            std::thread::park();
            continue;
        };
        let cgroup = CGROUP.get_or_init(memory::find_cgroup);
        let mem = memory::read(s.memory_limit, cgroup);
        let above = mem.is_some_and(|m| m.percent() >= f64::from(s.at_percent));
        let due = last.is_none_or(|t| t.elapsed() >= CAPTURE_MIN_INTERVAL);
        let site = lock(&PENDING).take();
        // Memory captures when it crosses the threshold, and again each interval it stays.
        let reason = if above && (!was_above || due) {
            Some(Reason::MemoryLimit)
        } else {
            site.as_ref().map(|_| Reason::Suspect)
        };
        was_above = above;
        if let Some(reason) = reason {
            if due {
                last = Some(Instant::now());
                capture(&dir, reason, site.as_deref(), mem, s.max_files);
            } else {
                SKIPPED[slot(reason)].fetch_add(1, Relaxed);
            }
        }
        // Waits for the next reading, a new suspect or new settings.
        std::thread::park_timeout(CHECK_EVERY);
    }
}

/// Takes one capture into `dir` and counts it.
fn capture(
    dir: &std::path::Path,
    reason: Reason,
    site: Option<&str>,
    mem: Option<memory::Memory>,
    max_files: usize,
) {
    let time_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    // A directory that is not there fails before any profile is built.
    if let Err(e) = files::usable(dir) {
        FAILURES.fetch_add(1, Relaxed);
        failed(reason, &e);
        return;
    }
    let encode = crate::profile::pprof_codec::encode_gzip;
    let current = encode(&super::profile(super::INUSE_SPACE));
    let oldest = super::history_points().first().and_then(|p| {
        super::profile_at(p.time_nanos, super::INUSE_SPACE).map(|o| (p.time_nanos, encode(&o)))
    });
    crate::stack::resolve::trim_after_request();
    let c = files::Capture {
        time_nanos,
        reason: reason.name(),
        site,
        memory: mem.map(|m| (m.usage, m.limit, m.source.name())),
        current: &current,
        oldest: oldest.as_ref().map(|(t, b)| (*t, b.as_slice())),
    };
    match files::write(dir, &c, max_files) {
        Ok(entry) => {
            CAPTURES[slot(reason)].fetch_add(1, Relaxed);
            captured(dir, &entry, mem);
        }
        Err(e) => {
            FAILURES.fetch_add(1, Relaxed);
            failed(reason, &e);
        }
    }
}

#[cfg(feature = "server")]
fn captured(dir: &std::path::Path, e: &crate::wire::CaptureEntry, mem: Option<memory::Memory>) {
    let near = mem.map_or_else(String::new, |m| {
        format!(
            "; memory {} of {} ({}, {})",
            crate::units::bytes(m.usage as i64),
            crate::units::bytes(m.limit as i64),
            crate::units::percent(m.percent()),
            m.source.name()
        )
    });
    tracing::warn!(
        target: "diag",
        reason = %e.reason,
        site = e.site.as_deref().unwrap_or(""),
        dir = %dir.display(),
        current = %e.files.current,
        oldest = e.files.oldest.as_deref().unwrap_or(""),
        "heap captured ({}){near}: {} in {}; `diag diff {}` shows the growth",
        e.reason,
        e.files.current,
        dir.display(),
        dir.display(),
    );
}

#[cfg(not(feature = "server"))]
fn captured(_: &std::path::Path, _: &crate::wire::CaptureEntry, _: Option<memory::Memory>) {}

#[cfg(feature = "server")]
fn failed(reason: Reason, e: &str) {
    tracing::warn!(
        target: "diag",
        reason = reason.name(),
        "heap capture failed ({}): {e}; the next is tried after {} min",
        reason.name(),
        CAPTURE_MIN_INTERVAL.as_secs() / 60,
    );
}

#[cfg(not(feature = "server"))]
fn failed(_: Reason, _: &str) {}

#[cfg(feature = "server")]
fn warn_dir(d: &std::path::Path) {
    tracing::warn!(
        target: "diag",
        dir = %d.display(),
        "the capture directory {} is not a directory (missing?): captures will fail until it is",
        d.display()
    );
}

#[cfg(not(feature = "server"))]
fn warn_dir(_: &std::path::Path) {}
