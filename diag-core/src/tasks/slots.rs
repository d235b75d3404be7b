//! Per-thread poll slots: the hot path of the blocking detector.
//!
//! Each thread that runs an instrumented poll claims one slot of a static table (once, on its
//! first poll). A poll stores one packed word into its slot when it starts and zero when it
//! ends: the start time in microseconds since diag's epoch (upper 44 bits) and a wrapping
//! generation (lower 20 bits), so the watchdog reads "which poll, since when" with one atomic
//! load and never confuses two polls. No lock and no allocation per poll.
//!
//! The slot also holds the capture buffer the signal handler writes the blocked thread's stack
//! into (atomics, so the handler needs no `unsafe` to write it), and the final duration of the
//! last long poll, which the watchdog copies into its event.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Mutex, OnceLock};

/// Threads watched at once; threads past this run unwatched (counted in `UNWATCHED_THREADS`).
pub(crate) const MAX_SLOTS: usize = 256;
/// Deepest stack the signal handler keeps.
pub(crate) const MAX_FRAMES: usize = 64;

const GEN_BITS: u32 = 20;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
const TIME_MASK: u64 = (1 << (64 - GEN_BITS)) - 1;

/// Capture states of a slot, driven by the watchdog (IDLE -> REQUESTED, DONE/SKIPPED -> IDLE)
/// and the signal handler (REQUESTED -> WRITING -> DONE, or REQUESTED -> SKIPPED).
pub(crate) const IDLE: u8 = 0;
pub(crate) const REQUESTED: u8 = 1;
pub(crate) const WRITING: u8 = 2;
pub(crate) const DONE: u8 = 3;
pub(crate) const SKIPPED: u8 = 4;

/// One watched thread (on cache lines of its own: its owner writes it on every poll).
#[repr(align(128))]
pub(crate) struct Slot {
    /// 0: free; 1: claimed by a live thread.
    pub(crate) used: AtomicU8,
    /// Kernel thread id of the owner, for `tgkill`.
    pub(crate) tid: AtomicI32,
    /// The running outermost poll: `start_us << 20 | gen`, or 0 between polls.
    pub(crate) word: AtomicU64,
    /// Name id (see `health::name_of`) of the running poll.
    pub(crate) name_id: AtomicU32,
    /// The word of the poll the watchdog turned into an event (set before recording it).
    pub(crate) flagged: AtomicU64,
    /// The word and duration (ns) of the last flagged poll, written when it ends.
    pub(crate) last_word: AtomicU64,
    pub(crate) last_dur_ns: AtomicU64,
    /// Capture protocol state and the poll it is for.
    pub(crate) capture: AtomicU8,
    pub(crate) capture_word: AtomicU64,
    pub(crate) depth: AtomicUsize,
    pub(crate) frames: [AtomicUsize; MAX_FRAMES],
}

impl Slot {
    const fn new() -> Self {
        Self {
            used: AtomicU8::new(0),
            tid: AtomicI32::new(0),
            word: AtomicU64::new(0),
            name_id: AtomicU32::new(0),
            flagged: AtomicU64::new(0),
            last_word: AtomicU64::new(0),
            last_dur_ns: AtomicU64::new(0),
            capture: AtomicU8::new(IDLE),
            capture_word: AtomicU64::new(0),
            depth: AtomicUsize::new(0),
            frames: [const { AtomicUsize::new(0) }; MAX_FRAMES],
        }
    }
}

pub(crate) static SLOTS: [Slot; MAX_SLOTS] = [const { Slot::new() }; MAX_SLOTS];
/// Names of the threads owning each slot, set when claimed (slow path).
static THREAD_NAMES: Mutex<Vec<Option<std::sync::Arc<str>>>> = Mutex::new(Vec::new());
/// Threads that found no free slot.
pub(crate) static UNWATCHED_THREADS: AtomicU64 = AtomicU64::new(0);
/// Polls longer than this many ns record their final duration (the watchdog's threshold).
pub(crate) static THRESHOLD_NS: AtomicU64 = AtomicU64::new(100_000_000);

const NO_SLOT: u32 = u32::MAX;
const FULL: u32 = u32::MAX - 1;

thread_local! {
    /// This thread's slot index (const-initialized, no destructor: readable from the signal
    /// handler and during thread exit).
    pub(crate) static MY_SLOT: Cell<u32> = const { Cell::new(NO_SLOT) };
    /// Nesting depth of instrumented polls on this thread: only the outermost is timed.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static GEN: Cell<u64> = const { Cell::new(0) };
    /// Frees the slot when the thread exits.
    static RELEASE: ReleaseSlot = const { ReleaseSlot };
}

struct ReleaseSlot;

impl Drop for ReleaseSlot {
    fn drop(&mut self) {
        let i = MY_SLOT.with(|s| s.replace(FULL));
        if let Some(slot) = SLOTS.get(i as usize) {
            slot.word.store(0, Release);
            slot.tid.store(0, Release);
            slot.used.store(0, Release);
        }
    }
}

/// diag's clock and its epoch. A `Clock` of our own rather than `quanta::Instant::now`, which
/// first checks a thread-local mock override on every call.
#[inline]
fn clock() -> &'static (quanta::Clock, quanta::Instant) {
    static CLOCK: OnceLock<(quanta::Clock, quanta::Instant)> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock = quanta::Clock::new();
        let epoch = clock.now();
        (clock, epoch)
    })
}

/// Microseconds since diag's epoch, from `quanta`'s clock: the TSC where the CPU's is
/// invariant, calibrated against the OS's monotonic clock (one read costs about half of
/// `std::time::Instant::now` on the machines in `BENCHMARKS.md`), else the OS clock itself.
/// Two reads are taken per instrumented request; the first call calibrates (under a
/// millisecond).
#[inline]
pub(crate) fn now_us() -> u64 {
    let (clock, epoch) = clock();
    clock.now().saturating_duration_since(*epoch).as_micros() as u64
}

/// Start time (µs since epoch, 44 bits) of a packed word.
#[inline]
pub(crate) fn start_us(word: u64) -> u64 {
    word >> GEN_BITS
}

/// Microseconds from `word`'s start to `now`, modulo the 44-bit clock.
pub(crate) fn elapsed_us(word: u64, now: u64) -> u64 {
    now.wrapping_sub(start_us(word)) & TIME_MASK
}

#[cold]
#[inline(never)]
fn claim() -> u32 {
    for (i, s) in SLOTS.iter().enumerate() {
        if s.used.compare_exchange(0, 1, AcqRel, Relaxed).is_ok() {
            s.tid.store(crate::tasks::signal::current_tid(), Release);
            s.capture.store(IDLE, Release);
            let name: std::sync::Arc<str> =
                std::thread::current().name().unwrap_or("<unnamed>").into();
            {
                let mut names = THREAD_NAMES.lock().unwrap_or_else(|e| e.into_inner());
                if names.len() < MAX_SLOTS {
                    names.resize(MAX_SLOTS, None);
                }
                names[i] = Some(name);
            }
            // The signal handler's unwinder needs this thread's stack bounds, which only
            // normal context can look up.
            crate::stack::prepare_thread();
            MY_SLOT.with(|c| c.set(i as u32));
            // Registers the destructor that frees the slot at thread exit.
            RELEASE.with(|_| {});
            return i as u32;
        }
    }
    UNWATCHED_THREADS.fetch_add(1, Relaxed);
    MY_SLOT.with(|c| c.set(FULL));
    FULL
}

/// The instrumented poll that has been running longest right now, if any: (slot, µs so far,
/// name id).
#[allow(dead_code)] // Only task dumps use it (the `taskdump` feature with `--cfg tokio_unstable`).
pub(crate) fn longest_running() -> Option<(usize, u64, u32)> {
    let now = now_us();
    SLOTS
        .iter()
        .enumerate()
        .filter(|(_, s)| s.used.load(Acquire) != 0)
        .filter_map(|(i, s)| {
            let word = s.word.load(Acquire);
            (word != 0).then(|| (i, elapsed_us(word, now), s.name_id.load(Relaxed)))
        })
        .max_by_key(|&(_, us, _)| us)
}

/// The name of the thread owning slot `i` when it was claimed.
pub(crate) fn thread_name(i: usize) -> std::sync::Arc<str> {
    THREAD_NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or_else(|| "<unknown>".into())
}

/// The name id of the instrumented poll running on this thread now, if any. Async-signal-safe
/// (a const thread-local and atomic loads): the CPU sampler's handler labels its samples with
/// it.
pub(crate) fn running_poll() -> Option<u32> {
    let i = MY_SLOT.try_with(Cell::get).ok()?;
    let slot = SLOTS.get(i as usize)?;
    (slot.word.load(Acquire) != 0).then(|| slot.name_id.load(Relaxed))
}

/// Marks the start of an instrumented poll; returns what [`exit`] needs, or `None` for a nested
/// poll or an unwatched thread.
#[inline]
pub(crate) fn enter(name_id: u32) -> Option<(u32, u64)> {
    let depth = DEPTH.with(|d| {
        let v = d.get();
        d.set(v + 1);
        v
    });
    if depth != 0 {
        return None;
    }
    let mut i = MY_SLOT.with(Cell::get);
    if i == NO_SLOT {
        i = claim();
    }
    let slot = SLOTS.get(i as usize)?;
    let generation = GEN.with(|g| {
        let mut v = (g.get() + 1) & GEN_MASK;
        if v == 0 {
            v = 1;
        }
        g.set(v);
        v
    });
    let word = ((now_us() & TIME_MASK) << GEN_BITS) | generation;
    slot.name_id.store(name_id, Relaxed);
    slot.word.store(word, Release);
    Some((i, word))
}

/// Marks the end of the poll [`enter`] started. Always call it (even for `None`): it keeps the
/// nesting depth.
#[inline]
pub(crate) fn exit(token: Option<(u32, u64)>) {
    DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    let Some((i, word)) = token else { return };
    let slot = &SLOTS[i as usize];
    // Only a poll the watchdog flagged reads the clock again: its final duration is published
    // before `word` clears, so a watchdog that sees the poll gone sees its duration.
    if slot.flagged.load(Relaxed) == word {
        let dur_ns = elapsed_us(word, now_us()).saturating_mul(1000);
        slot.last_dur_ns.store(dur_ns, Relaxed);
        slot.last_word.store(word, Release);
    }
    slot.word.store(0, Release);
}

/// Keeps the nesting depth right if a poll panics.
pub(crate) struct PollGuard(pub(crate) Option<(u32, u64)>);

impl Drop for PollGuard {
    #[inline]
    fn drop(&mut self) {
        exit(self.0.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_polls_time_only_the_outermost() {
        let outer = enter(1);
        let (i, word) = outer.expect("slot");
        assert_eq!(SLOTS[i as usize].word.load(Relaxed), word);
        let inner = enter(2);
        assert!(inner.is_none());
        exit(inner);
        assert_eq!(SLOTS[i as usize].word.load(Relaxed), word);
        exit(outer);
        assert_eq!(SLOTS[i as usize].word.load(Relaxed), 0);
        let again = enter(1).expect("slot");
        assert_ne!(again.1 & GEN_MASK, word & GEN_MASK, "generation advances");
        exit(Some(again));
    }

    #[test]
    fn elapsed_wraps_with_the_44_bit_clock() {
        let word = (TIME_MASK << GEN_BITS) | 5;
        assert_eq!(elapsed_us(word, TIME_MASK + 11), 11);
    }
}
