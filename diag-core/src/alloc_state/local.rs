//! Each thread's allocator state, in one `const`-initialised `thread_local!` without a
//! destructor, which stays readable during and after the thread's TLS destructors: what its
//! fast paths may do, the counts they made, the sampling countdown and the re-entrancy flags.

use std::cell::Cell;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::*, fence,
};

use super::HOT;
use super::slots::{Slot, Totals};

/// Slot states kept in `Local::slot`: no slot yet, or gone (thread exiting).
pub(super) const NO_SLOT: *const Slot = std::ptr::null();

/// What the fast paths may do on this thread (`Local::state`): count into the thread-local
/// and decide by the countdown; pass everything through (sampling off); or nothing, go to
/// the slow path (no slot yet or any more, diag's own allocations, or the configuration
/// changed since the thread last read it).
pub(crate) const GO: u8 = 0;
/// See [`GO`].
pub(crate) const OFF: u8 = 1;
/// See [`GO`].
pub(crate) const SLOW: u8 = 2;

pub(super) struct Local {
    /// [`GO`], [`OFF`] or [`SLOW`]. Written by the owning thread, and set to [`SLOW`] by
    /// [`configuration_changed`](super::registry::configuration_changed) from any thread.
    pub(super) state: AtomicU8,
    /// The free fast path's one test: a block whose address, less `free_base`, is below
    /// `free_len` takes the slow path. On a [`GO`] or [`OFF`] thread these are the
    /// sampled-block region's bounds, so the test is the region check; on a [`SLOW`] one
    /// `free_len` is `usize::MAX`, so every free takes the slow path, and the test stands for
    /// the state's as well (one compare instead of a load and two more branches on each free).
    /// Written by the owning thread, and `free_len` set to `usize::MAX` from any thread (a
    /// configuration change, the region's reservation: see `registry`); `free_base` is the
    /// owner's alone, a plain cell, which the compiler reads as the subtraction's operand.
    pub(super) free_base: Cell<usize>,
    pub(super) free_len: AtomicUsize,
    /// The allocation fast path's byte countdown: armed (see `thread::arm`) with
    /// `min(countdown, CAP)`, it loses each allocation's size, so it counts bytes and runs
    /// the sampling countdown in one subtraction, and turns negative when the countdown (or
    /// the cap) runs out. Objects are counted beside it (`fast_alloc_objects`, one `inc` on
    /// memory): five instructions in all, where one word packing both took seven (a shift and
    /// an add more).
    pub(super) alloc_word: AtomicI64,
    /// The value `alloc_word` was last armed with: `alloc_armed - alloc_word` is what the fast
    /// path counted since.
    pub(super) alloc_armed: AtomicI64,
    /// Odd while the owner folds or re-arms `alloc_word` (a sequence lock for readers).
    pub(super) seq: AtomicU32,
    /// The application's allocations and frees counted by the fast paths (only the owning
    /// thread writes; [`totals`](super::registry::totals) reads them while the thread is
    /// registered): allocated bytes folded out of `alloc_word`, objects and frees directly.
    /// Thread-local rather than in the slot so the fast path needs no pointer: counters behind
    /// one cost `churn` 8 % against 2 % here (`heap_ab`, over code layouts).
    pub(super) fast_alloc_bytes: AtomicU64,
    pub(super) fast_alloc_objects: AtomicU64,
    pub(super) fast_free_bytes: AtomicU64,
    pub(super) fast_free_objects: AtomicU64,
    /// Set while the thread is [`OFF`] (sampling off: the counters pause). Its free fast path
    /// still counts, into `fast_free_*`, so that it needs no test of the state; readers take
    /// `frozen_free_*`, the counts as they stood when the thread went off, and the owner puts
    /// those back when it goes on again (`freeze_frees`).
    pub(super) frozen: AtomicBool,
    pub(super) frozen_free_bytes: AtomicU64,
    pub(super) frozen_free_objects: AtomicU64,
    /// Bytes left before the next sample as of `alloc_word`'s arming; below zero means "take
    /// the slow path". What the fast path consumed since is charged by `thread::settle`.
    pub(super) countdown: Cell<i64>,
    /// The `HOT.config` word (see `alloc_state::Hot`) the countdown was drawn for.
    pub(super) config: Cell<u64>,
    /// xorshift state for the exponential draws (0 = not seeded).
    pub(super) rng: Cell<u64>,
    /// Set while diag itself runs on this thread (sampling, snapshots, the debug server).
    pub(super) busy: Cell<bool>,
    /// Set while an [`IgnoreAllocs`](super::IgnoreAllocs) guard lives: allocations and frees count as diag's.
    pub(super) own: Cell<bool>,
    /// Set while this thread claims its slot (the claim may allocate).
    pub(super) claiming: Cell<bool>,
    /// Set once this thread's slot was given back (thread exit): use the overflow slot.
    pub(super) exited: Cell<bool>,
    /// Set when every slot was taken at this thread's claim: use the overflow slot.
    pub(super) unslotted: Cell<bool>,
    /// The slot the fast paths count into: `SLOTS_TABLE[index]`, or its twin in `OWN_TABLE`
    /// while `own`; null without a slot.
    pub(super) slot: Cell<*const Slot>,
    /// This thread's slot index; `usize::MAX` without one.
    pub(super) index: Cell<usize>,
    /// The slot index a sample in progress is marked in (`usize::MAX`: the shared count).
    pub(super) sampling_at: Cell<usize>,
}

thread_local! {
    pub(super) static LOCAL: Local = const {
        Local {
            state: AtomicU8::new(SLOW),
            free_base: Cell::new(0),
            free_len: AtomicUsize::new(usize::MAX),
            alloc_word: AtomicI64::new(-1),
            alloc_armed: AtomicI64::new(-1),
            seq: AtomicU32::new(0),
            fast_alloc_bytes: AtomicU64::new(0),
            fast_alloc_objects: AtomicU64::new(0),
            fast_free_bytes: AtomicU64::new(0),
            fast_free_objects: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            frozen_free_bytes: AtomicU64::new(0),
            frozen_free_objects: AtomicU64::new(0),
            countdown: Cell::new(-1),
            config: Cell::new(u64::MAX),
            rng: Cell::new(0),
            busy: Cell::new(false),
            own: Cell::new(false),
            claiming: Cell::new(false),
            exited: Cell::new(false),
            unslotted: Cell::new(false),
            slot: Cell::new(NO_SLOT),
            index: Cell::new(usize::MAX),
            sampling_at: Cell::new(usize::MAX),
        }
    };
}

impl Local {
    /// What the fast paths counted here. Consistent against the owner's folds (a sequence
    /// lock: retried while one is under way, which takes a few instructions).
    pub(super) fn fast_totals(&self) -> Totals {
        let mut spins = 0u32;
        loop {
            let s1 = self.seq.load(Acquire);
            if s1 & 1 == 0 {
                let (free_bytes, free_objects) = if self.frozen.load(Relaxed) {
                    (&self.frozen_free_bytes, &self.frozen_free_objects)
                } else {
                    (&self.fast_free_bytes, &self.fast_free_objects)
                };
                let t = Totals {
                    alloc_bytes: self.fast_alloc_bytes.load(Relaxed),
                    alloc_objects: self.fast_alloc_objects.load(Relaxed),
                    free_bytes: free_bytes.load(Relaxed),
                    free_objects: free_objects.load(Relaxed),
                };
                let armed = self.alloc_armed.load(Relaxed);
                let word = self.alloc_word.load(Relaxed);
                fence(Acquire);
                if self.seq.load(Relaxed) == s1 {
                    return Totals {
                        alloc_bytes: t.alloc_bytes.wrapping_add(counted(armed, word)),
                        ..t
                    };
                }
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Pauses (`off`) or resumes the free counts readers see, as the thread goes [`OFF`] or
    /// comes back (owner only; see `frozen`).
    pub(super) fn freeze_frees(&self, off: bool) {
        if self.frozen.load(Relaxed) == off {
            return;
        }
        let copy = |from: &AtomicU64, to: &AtomicU64| to.store(from.load(Relaxed), Relaxed);
        self.write_begin();
        if off {
            copy(&self.fast_free_bytes, &self.frozen_free_bytes);
            copy(&self.fast_free_objects, &self.frozen_free_objects);
        } else {
            copy(&self.frozen_free_bytes, &self.fast_free_bytes);
            copy(&self.frozen_free_objects, &self.fast_free_objects);
        }
        self.frozen.store(off, Relaxed);
        self.write_end();
    }

    /// Sets the free fast path's test (`free_base`, `free_len`) for a thread whose frees the
    /// fast path counts (`fast`: [`GO`] or [`OFF`]; the region's bounds) or not (every free
    /// slow). Owner only. Returns the region's length it read: the caller re-reads it after
    /// publishing its state, and starts over if it changed (the region is reserved once, on
    /// the first sample, and [`configuration_changed`](super::registry::configuration_changed)
    /// then marks every registered thread slow; so either this thread's re-read sees the
    /// reservation, or that later store replaces these bounds). Stores `free_len` only if it
    /// changes.
    pub(super) fn set_free_test(&self, fast: bool) -> usize {
        // The length first: once it is non-zero, the base stored before it is the region's.
        let region_len = HOT.region_len.load(SeqCst);
        let len = if fast {
            self.free_base.set(HOT.region_base.load(SeqCst));
            region_len
        } else {
            usize::MAX
        };
        if self.free_len.load(Relaxed) != len {
            self.free_len.store(len, SeqCst);
        }
        region_len
    }

    /// Sends this thread's allocations, and every free, to the slow path until it next
    /// refreshes (`thread::refresh`): from the owner or, registered, from any thread. The
    /// state first, then the free test, so that a refresh racing with this either fails its
    /// compare-exchange or has its bounds replaced (see [`set_free_test`](Self::set_free_test)).
    pub(super) fn mark_slow(&self) {
        self.state.store(SLOW, SeqCst);
        self.free_len.store(usize::MAX, SeqCst);
    }

    /// Starts a change of `alloc_word`, `alloc_armed` and the folded counters (owner only).
    pub(super) fn write_begin(&self) {
        self.seq
            .store(self.seq.load(Relaxed).wrapping_add(1), Relaxed);
        fence(Release);
    }

    /// Ends it.
    pub(super) fn write_end(&self) {
        self.seq
            .store(self.seq.load(Relaxed).wrapping_add(1), Release);
    }
}

/// The most bytes `alloc_word` is armed for: a longer countdown is consumed in turns of this
/// (a fold every 16 MiB), so a thread's fast-path count is never far from its totals.
pub(super) const CAP: i64 = 16 << 20;

/// The bytes the fast path counted in `alloc_word` since it was `armed` (0 for a torn read).
pub(super) fn counted(armed: i64, word: i64) -> u64 {
    armed.wrapping_sub(word).max(0) as u64
}
