//! Per-thread allocator paths: the fast paths' counting and sampling countdown, the slow
//! paths (slot claim, sampling decisions, the rate-change barrier) and the re-entrancy guard.
//!
//! The exact counters come in two sets: the application's, and diag's own (allocations made
//! while an [`IgnoreAllocs`] guard lives: the symbolizer, encoding, the debug server, the
//! history). The fast paths count the application's in the thread-local (`local`), where no
//! pointer stands between the call and its counters; everything else (diag's own, threads
//! without a slot, the slow paths) counts in the thread's slot, its twin in diag's set, or an
//! overflow slot (`slots`). A guard turns the fast paths off for its thread (its state becomes
//! `SLOW`), so diag's own allocations count in the twin, and a free counts against the set of
//! the code that frees: diag frees what diag allocated on its own threads, or under the guard.
//! A block handed across (allocated by diag and freed by the application, or the reverse)
//! moves the two totals by its size in opposite directions; diag's code keeps such hand-overs
//! out of its long-lived state.
//!
//! Everything here runs inside `GlobalAlloc` calls, so it never allocates through the global
//! allocator and never panics; the only wait is the registry's lock (`registry`), which its
//! holders keep for one pass over the slots.

use std::sync::atomic::{AtomicU64, Ordering::*};

use super::local::{CAP, LOCAL, Local, SLOW, counted};
pub(crate) use super::local::{GO, OFF};
use super::registry;
use crate::alloc_state as config;
use crate::alloc_state::slots::{
    OVERFLOW, OWN_OVERFLOW, SLOTS_TABLE, Slot, Totals, add, overflow, slot_at, sum,
};

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
    if l.exited.get() || l.unslotted.get() || l.claiming.get() {
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
    match claimed {
        Some(i) if registry::arm_exit_guard() => {
            l.index.set(i);
            slot = slot_at(i, own).unwrap_or(slot);
            l.slot.set(slot);
            registry::register(i, l);
        }
        Some(i) => SLOTS_TABLE[i].in_use.store(false, Release),
        // Every slot taken: this thread stays on the overflow slot, without scanning again.
        None => l.unslotted.set(true),
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
    /// Counted; the countdown (or its turn of `CAP` bytes) ran out: call [`decide`].
    Decide,
    /// Nothing done (the thread's state is not [`GO`], or its TLS is gone, or the block is
    /// large): call [`on_alloc`].
    Slow,
}

/// What the fast paths may do on this thread now: [`GO`], [`OFF`] or [`SLOW`]. One
/// thread-local load, which stands for the configuration word's (sampling off, a rate change)
/// as well as for the thread's own state.
#[inline(always)]
pub(crate) fn state() -> u8 {
    LOCAL.try_with(|l| l.state.load(Relaxed)).unwrap_or(SLOW)
}

/// The allocation fast path, after [`state`] said [`GO`], for a block under
/// [`CHECKED_SIZE`](crate::heap::CHECKED_SIZE) bytes: counts the object and decides with
/// one subtraction from the byte countdown, both thread-local, no call, no lock and no spill,
/// so the allocator can tail-call the inner allocator.
#[inline(always)]
pub(crate) fn fast_alloc(size: usize) -> Fast {
    fast::<false>(0, size)
}

/// [`fast_alloc`] for a realloc: counts the free of `old` bytes and the allocation of `new`
/// bytes, and decides for the new block.
#[inline(always)]
pub(crate) fn fast_realloc(old: usize, new: usize) -> Fast {
    fast::<true>(old, new)
}

#[inline(always)]
fn fast<const FREED: bool>(freed: usize, size: usize) -> Fast {
    LOCAL
        .try_with(|l| {
            if FREED {
                add(&l.fast_free_bytes, freed as u64);
                add(&l.fast_free_objects, 1);
            }
            add(&l.fast_alloc_objects, 1);
            let w = l.alloc_word.load(Relaxed).wrapping_sub(size as i64);
            l.alloc_word.store(w, Relaxed);
            if w >= 0 { Fast::Pass } else { Fast::Decide }
        })
        .unwrap_or(Fast::Slow)
}

/// The free fast path: on a [`GO`] or [`OFF`] thread (whose counts readers then do not see:
/// `Local::frozen`), for a block `p` outside the sampled-block region, counts a free of `size`
/// bytes and returns true; otherwise does nothing and returns false (call the slow path). One
/// compare stands for both tests (see `Local::free_len`).
#[inline(always)]
pub(crate) fn fast_free(p: *mut u8, size: usize) -> bool {
    LOCAL
        .try_with(|l| {
            if (p as usize).wrapping_sub(l.free_base.get()) < l.free_len.load(Relaxed) {
                return false;
            }
            add(&l.fast_free_bytes, size as u64);
            add(&l.fast_free_objects, 1);
            true
        })
        .unwrap_or(false)
}

/// Folds what the fast path counted in `alloc_word` since it was armed into the thread-local
/// totals, and charges the bytes to the countdown. Every slow path that reads or sets the
/// countdown calls this first and [`arm`] after.
fn settle(l: &Local) {
    let armed = l.alloc_armed.load(Relaxed);
    let bytes = counted(armed, l.alloc_word.load(Relaxed));
    if bytes == 0 {
        return;
    }
    l.write_begin();
    add(&l.fast_alloc_bytes, bytes);
    l.alloc_word.store(armed, Relaxed);
    l.write_end();
    l.countdown
        .set(l.countdown.get().wrapping_sub(bytes as i64));
}

/// Arms `alloc_word` for the countdown (at most [`CAP`] bytes at a time; a countdown below
/// zero arms it so the next allocation takes the slow path).
fn arm(l: &Local) {
    settle(l);
    let w = l.countdown.get().clamp(0, CAP);
    l.write_begin();
    l.alloc_armed.store(w, Relaxed);
    l.alloc_word.store(w, Relaxed);
    l.write_end();
}

/// Brings this thread's fast-path state up to date with the configuration word (claiming a
/// slot first if it has none) and returns what this call may do: [`GO`] (count), [`OFF`]
/// (sampling off: count nothing) or [`SLOW`] (count through the slot or the overflow slot).
/// A rate change sets a registered thread's state to [`SLOW`] after it changes the word; the
/// state is only ever cleared here, by a compare-exchange from the value read before the
/// word, and kept only if the word has not changed since: so a change is never missed.
#[cold]
fn refresh(l: &Local) -> u8 {
    if l.index.get() == usize::MAX && !(l.exited.get() || l.unslotted.get() || l.claiming.get()) {
        claim_slot(l);
    }
    if l.index.get() == usize::MAX {
        // Unregistered: no rate change reaches this thread, so its state stays SLOW and each
        // call reads the word itself.
        return if config::rate(config::load_fresh()) == 0 {
            OFF
        } else {
            SLOW
        };
    }
    loop {
        let st = l.state.load(SeqCst);
        let cfg = config::load_fresh();
        let want = if config::rate(cfg) == 0 {
            OFF
        } else if l.own.get() {
            SLOW
        } else {
            GO
        };
        let region = l.set_free_test(want != SLOW);
        if st != want && l.state.compare_exchange(st, want, SeqCst, SeqCst).is_err() {
            continue;
        }
        if config::load_fresh() == cfg && config::HOT.region_len.load(SeqCst) == region {
            l.freeze_frees(want == OFF);
            if want == GO && l.config.get() != cfg {
                // Drawn under another word: the next allocation draws afresh (`arm` folds
                // what the word counted first).
                l.countdown.set(-1);
                arm(l);
            }
            return want;
        }
    }
}

/// After [`Fast::Decide`]: whether to sample this allocation of `size` bytes.
#[cold]
#[inline(never)]
pub(crate) fn decide(size: usize) -> Decision {
    let cfg = config::load();
    LOCAL
        .try_with(|l| {
            // The allocation is counted and charged: the countdown ran out, or only its turn
            // of `CAP` bytes did.
            settle(l);
            let d = if config::rate(cfg) == 0 || (l.countdown.get() >= 0 && l.config.get() == cfg) {
                Decision::Pass
            } else {
                slow_decide(l, cfg, size)
            };
            arm(l);
            d
        })
        .unwrap_or(Decision::Pass)
}

/// Counts an allocation of `size` bytes and decides whether to sample it (the full path).
#[inline]
pub(crate) fn on_alloc(size: usize) -> Decision {
    match LOCAL.try_with(|l| {
        if refresh(l) == OFF {
            return Decision::Pass;
        }
        let cfg = config::load();
        count::<true>(l, size as u64);
        if config::rate(cfg) == 0 || l.own.get() {
            // diag's own allocations (counted in the twin slot) are never sampled: the guard
            // keeps the thread busy, and forces a fresh draw when it ends.
            return Decision::Pass;
        }
        settle(l);
        let c = l.countdown.get() - size as i64;
        l.countdown.set(c);
        let d = if c >= 0 && l.config.get() == cfg {
            Decision::Pass
        } else {
            slow_decide(l, cfg, size)
        };
        arm(l);
        d
    }) {
        Ok(d) => d,
        Err(_) => {
            OVERFLOW.alloc_bytes.fetch_add(size as u64, Relaxed);
            OVERFLOW.alloc_objects.fetch_add(1, Relaxed);
            Decision::Pass
        }
    }
}

#[cold]
#[inline(never)]
fn slow_decide(l: &Local, cfg: u64, size: usize) -> Decision {
    let rate = config::rate(cfg);
    if l.busy.get() || l.exited.get() {
        // diag's own work (or a thread being torn down): never sampled. The next allocation
        // takes the slow path, which draws afresh once the thread is no longer busy.
        l.countdown.set(i64::MAX / 2);
        l.config.set(u64::MAX);
        l.state.store(SLOW, Relaxed);
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

/// Counts a free of `size` bytes (none with sampling off: the counters pause).
#[inline(always)]
pub(crate) fn on_free(size: usize) {
    let counted = LOCAL.try_with(|l| {
        if refresh(l) != OFF {
            count::<false>(l, size as u64);
        }
    });
    if counted.is_err() {
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
                // diag's own allocations and frees go the slow path, which counts them in the
                // twin slot.
                l.mark_slow();
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
            l.state.store(SLOW, Release);
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
            let mut t = sum(std::iter::once(slot_at(l.index.get(), own)?));
            if !own {
                t.add(l.fast_totals());
            }
            Some(t)
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
