//! Per-thread allocator state: the sampling countdown, the re-entrancy guard and the exact
//! counters.
//!
//! The exact counters come in two sets: the application's, and diag's own (allocations made
//! while an [`IgnoreAllocs`] guard lives: the symbolizer, encoding, the debug server, the
//! history). Each thread's slot has a twin in the diag set, and the guard points the thread's
//! slot pointer at the twin, so the fast paths stay what they were (they count into whatever
//! `slot` points at) and a free counts against the set of the code that frees: diag frees what
//! diag allocated on its own threads, or under the guard. A block handed across (allocated by
//! diag and freed by the application, or the reverse) moves the two totals by its size in
//! opposite directions; diag's code keeps such hand-overs out of its long-lived state.
//!
//! Everything here runs inside `GlobalAlloc` calls, so it never allocates through the global
//! allocator, never panics and never blocks. The state lives in a `const`-initialised
//! `thread_local!` without a destructor, which stays readable during and after the thread's
//! TLS destructors; the counters live in a global array of slots so a reader can sum them.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

use crate::alloc_state as config;

/// How many threads get an uncontended counter slot; later threads share the overflow slot.
const SLOTS: usize = 1024;

/// Exact allocation counters of one thread. Only the owning thread writes (plain load + store,
/// no read-modify-write), any thread may read.
#[repr(align(64))]
pub(crate) struct Slot {
    in_use: AtomicBool,
    /// The configuration word the owning thread is taking a sample under; 0 when it is not
    /// (see [`wait_for_samples`]).
    sampling: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) alloc_objects: AtomicU64,
    pub(crate) free_bytes: AtomicU64,
    pub(crate) free_objects: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Self {
            in_use: AtomicBool::new(false),
            sampling: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            alloc_objects: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            free_objects: AtomicU64::new(0),
        }
    }
}

static SLOTS_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// Shared counters for threads without a slot (too many threads, or after TLS teardown).
static OVERFLOW: Slot = Slot::new();
/// diag's own counters: slot `i` here is the twin of `SLOTS_TABLE[i]`, written by the same
/// thread while it runs diag's code.
static OWN_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// diag's shared counters for its threads without a slot.
static OWN_OVERFLOW: Slot = Slot::new();

/// A snapshot of the exact counters, summed over all threads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_objects: u64,
    pub(crate) free_bytes: u64,
    pub(crate) free_objects: u64,
}

/// The application's exact counters (everything but diag's own allocations).
pub(crate) fn totals() -> Totals {
    sum(SLOTS_TABLE.iter().chain(std::iter::once(&OVERFLOW)))
}

/// diag's own exact counters (allocations made under [`IgnoreAllocs`]).
pub(crate) fn own_totals() -> Totals {
    sum(OWN_TABLE.iter().chain(std::iter::once(&OWN_OVERFLOW)))
}

fn sum<'a>(slots: impl Iterator<Item = &'a Slot>) -> Totals {
    let mut t = Totals::default();
    for s in slots {
        t.alloc_bytes = t.alloc_bytes.wrapping_add(s.alloc_bytes.load(Relaxed));
        t.alloc_objects = t.alloc_objects.wrapping_add(s.alloc_objects.load(Relaxed));
        t.free_bytes = t.free_bytes.wrapping_add(s.free_bytes.load(Relaxed));
        t.free_objects = t.free_objects.wrapping_add(s.free_objects.load(Relaxed));
    }
    t
}

/// Slot states kept in `Local::slot`: no slot yet, or gone (thread exiting).
const NO_SLOT: *const Slot = std::ptr::null();

struct Local {
    /// Bytes left before the next sample; below zero means "take the slow path".
    countdown: Cell<i64>,
    /// The `HOT.config` word (see `alloc_state::Hot`) the countdown was drawn for.
    config: Cell<u64>,
    /// xorshift state for the exponential draws (0 = not seeded).
    rng: Cell<u64>,
    /// Set while diag itself runs on this thread (sampling, snapshots, the debug server).
    busy: Cell<bool>,
    /// Set while an [`IgnoreAllocs`] guard lives: allocations and frees count as diag's.
    own: Cell<bool>,
    /// Set while this thread claims its slot (the claim may allocate).
    claiming: Cell<bool>,
    /// Set once this thread's slot was given back (thread exit): use the overflow slot.
    exited: Cell<bool>,
    /// The slot the fast paths count into: `SLOTS_TABLE[index]`, or its twin in `OWN_TABLE`
    /// while `own`; null without a slot.
    slot: Cell<*const Slot>,
    /// This thread's slot index; `usize::MAX` without one.
    index: Cell<usize>,
    /// The slot index a sample in progress is marked in (`usize::MAX`: the shared count).
    sampling_at: Cell<usize>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            countdown: Cell::new(-1),
            config: Cell::new(u64::MAX),
            rng: Cell::new(0),
            busy: Cell::new(false),
            own: Cell::new(false),
            claiming: Cell::new(false),
            exited: Cell::new(false),
            slot: Cell::new(NO_SLOT),
            index: Cell::new(usize::MAX),
            sampling_at: Cell::new(usize::MAX),
        }
    };
    /// Gives the slot back when the thread exits. Registered on first use of a slot.
    static SLOT_GUARD: SlotGuard = const { SlotGuard };
}

struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| {
            l.slot.set(NO_SLOT);
            l.exited.set(true);
            if let Some(s) = SLOTS_TABLE.get(l.index.replace(usize::MAX)) {
                s.in_use.store(false, Release);
            }
        });
    }
}

#[inline(always)]
fn add(counter: &AtomicU64, v: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(v), Relaxed);
}

/// Adds one allocation (`ALLOC`) or free of `size` bytes to this thread's own slot, or to the
/// shared overflow slot (atomically) if it has none.
#[inline(always)]
fn count<const ALLOC: bool>(l: &Local, size: u64) {
    let s = l.slot.get();
    if !s.is_null() {
        // SAFETY: non-null slot pointers only ever point into the static SLOTS_TABLE.
        let s = unsafe { &*s };
        if ALLOC {
            add(&s.alloc_bytes, size);
            add(&s.alloc_objects, 1);
        } else {
            add(&s.free_bytes, size);
            add(&s.free_objects, 1);
        }
    } else {
        count_slow::<ALLOC>(l, size);
    }
}

/// The slot of set `own` (diag's or the application's) at `index`, if the thread has one.
#[inline]
fn slot_at(index: usize, own: bool) -> Option<&'static Slot> {
    if own {
        OWN_TABLE.get(index)
    } else {
        SLOTS_TABLE.get(index)
    }
}

/// The shared slot of the application's or diag's set.
#[inline]
fn overflow(own: bool) -> &'static Slot {
    if own { &OWN_OVERFLOW } else { &OVERFLOW }
}

#[cold]
#[inline(never)]
fn count_slow<const ALLOC: bool>(l: &Local, size: u64) {
    let s = claim_slot(l);
    let (bytes, objects) = if ALLOC {
        (&s.alloc_bytes, &s.alloc_objects)
    } else {
        (&s.free_bytes, &s.free_objects)
    };
    if std::ptr::eq(s, &OVERFLOW) || std::ptr::eq(s, &OWN_OVERFLOW) {
        bytes.fetch_add(size, Relaxed);
        objects.fetch_add(1, Relaxed);
    } else {
        add(bytes, size);
        add(objects, 1);
    }
}

#[cold]
fn claim_slot(l: &Local) -> &'static Slot {
    let own = l.own.get();
    if l.exited.get() || l.claiming.get() {
        return overflow(own);
    }
    l.claiming.set(true);
    // Registering the TLS destructor may allocate: never sample that.
    let was_busy = l.busy.replace(true);
    let mut claimed = None;
    for (i, s) in SLOTS_TABLE.iter().enumerate() {
        if !s.in_use.load(Relaxed)
            && s.in_use
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
        {
            claimed = Some(i);
            break;
        }
    }
    let mut slot = overflow(own);
    if let Some(i) = claimed {
        if SLOT_GUARD.try_with(|_| ()).is_ok() {
            l.index.set(i);
            slot = slot_at(i, own).unwrap_or(slot);
            l.slot.set(slot);
        } else {
            SLOTS_TABLE[i].in_use.store(false, Release);
        }
    }
    l.busy.set(was_busy);
    l.claiming.set(false);
    slot
}

/// What the allocator should do with one allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Pass it to the inner allocator.
    Pass,
    /// Sample it; the thread is marked busy until [`end_sample`].
    Sample,
}

/// Outcome of [`fast_alloc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// Counted, not sampled: pass it to the inner allocator.
    Pass,
    /// Counted; the countdown ran out or the configuration changed: call [`decide`].
    Decide,
    /// Nothing done (no counter slot yet, or TLS gone): call [`on_alloc`].
    Slow,
}

/// The allocation fast path: counts and decides with no call, no lock and no spill, so the
/// allocator can tail-call the inner allocator. Anything unusual is left to the slow path.
/// `cfg` is the `HOT.config` word the caller loaded, with a non-zero rate (sampling off
/// never gets here).
#[inline(always)]
pub(crate) fn fast_alloc(cfg: u64, size: usize) -> Fast {
    fast::<false>(cfg, 0, size)
}

/// [`fast_alloc`] for a realloc: counts the free of `old` bytes and the allocation of `new`
/// bytes, and decides for the new block. [`Fast::Slow`] means nothing was counted.
#[inline(always)]
pub(crate) fn fast_realloc(cfg: u64, old: usize, new: usize) -> Fast {
    fast::<true>(cfg, old, new)
}

#[inline(always)]
fn fast<const FREED: bool>(cfg: u64, freed: usize, size: usize) -> Fast {
    LOCAL
        .try_with(|l| {
            let s = l.slot.get();
            if s.is_null() {
                return Fast::Slow;
            }
            // SAFETY: non-null slot pointers only ever point into the static SLOTS_TABLE.
            let s = unsafe { &*s };
            if FREED {
                add(&s.free_bytes, freed as u64);
                add(&s.free_objects, 1);
            }
            add(&s.alloc_bytes, size as u64);
            add(&s.alloc_objects, 1);
            let c = l.countdown.get() - size as i64;
            l.countdown.set(c);
            if c >= 0 && l.config.get() == cfg {
                Fast::Pass
            } else {
                Fast::Decide
            }
        })
        .unwrap_or(Fast::Slow)
}

/// After [`Fast::Decide`]: whether to sample this allocation of `size` bytes.
#[cold]
#[inline(never)]
pub(crate) fn decide(size: usize) -> Decision {
    let cfg = config::load();
    LOCAL
        .try_with(|l| {
            if config::rate(cfg) == 0 {
                Decision::Pass
            } else {
                slow_decide(l, cfg, size)
            }
        })
        .unwrap_or(Decision::Pass)
}

/// Counts an allocation of `size` bytes and decides whether to sample it (the full path).
#[inline]
pub(crate) fn on_alloc(size: usize) -> Decision {
    let cfg = config::load();
    match LOCAL.try_with(|l| {
        count::<true>(l, size as u64);
        if config::rate(cfg) == 0 {
            return Decision::Pass;
        }
        let c = l.countdown.get() - size as i64;
        l.countdown.set(c);
        if c >= 0 && l.config.get() == cfg {
            return Decision::Pass;
        }
        slow_decide(l, cfg, size)
    }) {
        Ok(d) => d,
        Err(_) => {
            OVERFLOW.alloc_bytes.fetch_add(size as u64, Relaxed);
            OVERFLOW.alloc_objects.fetch_add(1, Relaxed);
            Decision::Pass
        }
    }
}

/// The free fast path: counts a free of `size` bytes if this thread has its slot; false if
/// the caller must call [`on_free`] instead.
#[inline(always)]
pub(crate) fn fast_free(size: usize) -> bool {
    LOCAL
        .try_with(|l| {
            let s = l.slot.get();
            if s.is_null() {
                return false;
            }
            // SAFETY: non-null slot pointers only ever point into the static SLOTS_TABLE.
            let s = unsafe { &*s };
            add(&s.free_bytes, size as u64);
            add(&s.free_objects, 1);
            true
        })
        .unwrap_or(false)
}

#[cold]
#[inline(never)]
fn slow_decide(l: &Local, cfg: u64, size: usize) -> Decision {
    let rate = config::rate(cfg);
    if l.busy.get() || l.exited.get() {
        // diag's own work (or a thread being torn down): never sampled.
        l.countdown.set(i64::MAX / 2);
        l.config.set(u64::MAX);
        return Decision::Pass;
    }
    if l.config.get() != cfg {
        // First allocation on this thread, or the rate changed: draw afresh for this one.
        l.config.set(cfg);
        let c = draw(l, rate) - size as i64;
        l.countdown.set(c);
        if c >= 0 && rate != 1 {
            return Decision::Pass;
        }
    }
    l.countdown.set(draw(l, rate));
    l.busy.set(true);
    if enter_sample(l, cfg) {
        Decision::Sample
    } else {
        l.busy.set(false);
        Decision::Pass
    }
}

/// Samples in progress on threads without a slot of their own.
static SHARED_SAMPLING: AtomicU64 = AtomicU64::new(0);

/// Marks this thread as sampling under `cfg`, then checks that `cfg` is still the
/// configuration; if not (the rate changed since it was read), unmarks and returns false: the
/// allocation is not sampled. With [`wait_for_samples`] this makes a rate change a barrier:
/// the mark and the check are sequentially consistent, as are the change and the scan, so
/// either this thread sees the new word or the changing thread sees the mark.
fn enter_sample(l: &Local, cfg: u64) -> bool {
    let at = l.index.get();
    match SLOTS_TABLE.get(at) {
        Some(s) => s.sampling.store(cfg, SeqCst),
        None => {
            SHARED_SAMPLING.fetch_add(1, SeqCst);
        }
    }
    l.sampling_at.set(at);
    if config::load_fresh() == cfg {
        true
    } else {
        leave_sample(l);
        false
    }
}

fn leave_sample(l: &Local) {
    match SLOTS_TABLE.get(l.sampling_at.replace(usize::MAX)) {
        Some(s) => s.sampling.store(0, Release),
        None => {
            SHARED_SAMPLING.fetch_sub(1, Release);
        }
    }
}

/// Ends the sampled-allocation section started by [`Decision::Sample`].
#[inline]
pub(crate) fn end_sample() {
    let _ = LOCAL.try_with(|l| {
        leave_sample(l);
        l.busy.set(false);
    });
}

/// After the configuration word became `now`: waits until no thread is still taking a sample
/// decided under an earlier word (one scan of the slots; a sample takes microseconds). Samples
/// under `now` do not hold it up, except on threads past the slots, which are waited for as
/// one count. Gives up after `limit` (returns false), so a caller is never held by a thread
/// stopped mid-sample (a debugger, a stopped process group).
pub(crate) fn wait_for_samples(now: u64, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let settled = |done: &dyn Fn() -> bool| {
        while !done() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    };
    // Not this thread's own mark, if it were inside a sample (it cannot be: samples never
    // call out), so a caller can never wait for itself.
    let own = LOCAL
        .try_with(|l| l.sampling_at.get())
        .unwrap_or(usize::MAX);
    for (i, s) in SLOTS_TABLE.iter().enumerate() {
        if i != own
            && !settled(&|| {
                let v = s.sampling.load(SeqCst);
                v == 0 || v == now
            })
        {
            return false;
        }
    }
    settled(&|| SHARED_SAMPLING.load(SeqCst) == 0)
}

/// An exponential draw with mean `rate` bytes (`rate` 1 = exact: sample everything).
fn draw(l: &Local, rate: u64) -> i64 {
    if rate <= 1 {
        return 0;
    }
    let mut x = l.rng.get();
    if x == 0 {
        static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
        x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed) ^ (l as *const Local as u64);
        x |= 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    l.rng.set(x);
    let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    let u = (bits + 1) as f64 / (1u64 << 53) as f64; // (0, 1]
    let v = -u.ln() * rate as f64;
    v.min((i64::MAX / 4) as f64) as i64
}

/// Counts a free of `size` bytes.
#[inline(always)]
pub(crate) fn on_free(size: usize) {
    if LOCAL.try_with(|l| count::<false>(l, size as u64)).is_err() {
        OVERFLOW.free_bytes.fetch_add(size as u64, Relaxed);
        OVERFLOW.free_objects.fetch_add(1, Relaxed);
    }
}

/// Takes back the counts of an allocation of `alloc_size` bytes that failed (the inner
/// allocator returned null) and, for a failed realloc, of the free of `freed_size` bytes.
#[cold]
#[inline(never)]
pub(crate) fn failed(alloc_size: usize, freed_size: usize) {
    // Always through a shared slot, atomically: rare, and any slot of the set will do for a sum.
    let own = LOCAL.try_with(|l| l.own.get()).unwrap_or(false);
    let o = overflow(own);
    o.alloc_bytes.fetch_sub(alloc_size as u64, Relaxed);
    o.alloc_objects.fetch_sub(1, Relaxed);
    if freed_size > 0 {
        o.free_bytes.fetch_sub(freed_size as u64, Relaxed);
        o.free_objects.fetch_sub(1, Relaxed);
    }
}

/// Marks the current thread as diag's own for as long as the guard lives: its allocations are
/// never sampled, and they (and its frees) count as diag's own (`HeapStats::self_live_bytes`),
/// not the application's. Nested guards are fine.
pub struct IgnoreAllocs {
    was_busy: bool,
    was_own: bool,
}

impl IgnoreAllocs {
    /// Starts ignoring this thread's allocations.
    pub fn new() -> Self {
        let (was_busy, was_own) = LOCAL
            .try_with(|l| {
                let was = (l.busy.replace(true), l.own.replace(true));
                if let Some(s) = slot_at(l.index.get(), true) {
                    l.slot.set(s);
                }
                was
            })
            .unwrap_or((true, true));
        Self { was_busy, was_own }
    }
}

impl Default for IgnoreAllocs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IgnoreAllocs {
    fn drop(&mut self) {
        let (was_busy, was_own) = (self.was_busy, self.was_own);
        let _ = LOCAL.try_with(|l| {
            l.busy.set(was_busy);
            l.own.set(was_own);
            if let Some(s) = slot_at(l.index.get(), was_own) {
                l.slot.set(s);
            }
            // Re-draw on the next allocation so the ignored stretch leaves no bias.
            l.config.set(u64::MAX);
            l.countdown.set(-1);
        });
    }
}

/// This thread's counters of the application's set (`own` false) or, while it runs under
/// [`IgnoreAllocs`], of diag's (`own` true), while the counters count (sampling on) and the
/// thread has a slot of its own; `None` otherwise. The symbolizer measures what it keeps with
/// two readings of diag's; `testing::measure` reads the application's around its closure.
pub(crate) fn thread_totals(own: bool) -> Option<Totals> {
    if config::rate(config::load()) == 0 {
        return None;
    }
    LOCAL
        .try_with(|l| {
            if own && !l.own.get() {
                return None;
            }
            Some(sum(std::iter::once(slot_at(l.index.get(), own)?)))
        })
        .ok()
        .flatten()
}

/// Marks the current thread as diag's own for the rest of its life (debug-server threads).
#[cfg(feature = "server")]
pub(crate) fn ignore_this_thread() {
    std::mem::forget(IgnoreAllocs::new());
}

/// True while this thread is inside the sampler (capturing a stack) or ignoring its own
/// allocations. Async-signal-safe (a const thread-local without destructor): the blocking
/// watchdog's signal handler checks it so it never unwinds while this thread is already
/// unwinding.
#[cfg(feature = "server")]
pub(crate) fn thread_in_sampler() -> bool {
    LOCAL.try_with(|l| l.busy.get()).unwrap_or(true)
}
