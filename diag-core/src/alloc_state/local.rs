//! Each thread's allocator state, in one `const`-initialised `thread_local!` without a
//! destructor, which stays readable during and after the thread's TLS destructors: what its
//! fast paths may do, the counts they made, the sampling countdown and the re-entrancy flags.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering::*, fence};

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
    /// The allocation fast path's one word: armed (see `thread::arm`) with
    /// `min(countdown, CAP) << OBJ_BITS | OBJ_MASK`, it loses `size << OBJ_BITS | 1` per
    /// allocation, so it counts bytes and objects and runs the sampling countdown in one
    /// subtraction, and turns negative when the countdown (or the cap) runs out.
    pub(super) alloc_word: AtomicI64,
    /// The value `alloc_word` was last armed with: `alloc_armed - alloc_word` is what the fast
    /// path counted since.
    pub(super) alloc_armed: AtomicI64,
    /// Odd while the owner folds or re-arms `alloc_word` (a sequence lock for readers).
    pub(super) seq: AtomicU32,
    /// The application's allocations and frees counted by the fast paths (only the owning
    /// thread writes; [`totals`](super::registry::totals) reads them while the thread is
    /// registered): allocations folded out of `alloc_word`, frees directly. Thread-local rather
    /// than in the slot so the fast path needs no pointer: counters behind one cost `churn` 8 %
    /// against 2 % here (`heap_ab`, over code layouts).
    pub(super) fast_alloc_bytes: AtomicU64,
    pub(super) fast_alloc_objects: AtomicU64,
    pub(super) fast_free_bytes: AtomicU64,
    pub(super) fast_free_objects: AtomicU64,
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
            alloc_word: AtomicI64::new(-1),
            alloc_armed: AtomicI64::new(-1),
            seq: AtomicU32::new(0),
            fast_alloc_bytes: AtomicU64::new(0),
            fast_alloc_objects: AtomicU64::new(0),
            fast_free_bytes: AtomicU64::new(0),
            fast_free_objects: AtomicU64::new(0),
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
                let t = Totals {
                    alloc_bytes: self.fast_alloc_bytes.load(Relaxed),
                    alloc_objects: self.fast_alloc_objects.load(Relaxed),
                    free_bytes: self.fast_free_bytes.load(Relaxed),
                    free_objects: self.fast_free_objects.load(Relaxed),
                };
                let armed = self.alloc_armed.load(Relaxed);
                let word = self.alloc_word.load(Relaxed);
                fence(Acquire);
                if self.seq.load(Relaxed) == s1 {
                    let (bytes, objects) = unpack(armed.wrapping_sub(word));
                    return Totals {
                        alloc_bytes: t.alloc_bytes.wrapping_add(bytes),
                        alloc_objects: t.alloc_objects.wrapping_add(objects),
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

/// Bits of `alloc_word` that count objects (below the bytes).
pub(super) const OBJ_BITS: u32 = 24;
/// The objects field's mask, and its value when armed.
pub(super) const OBJ_MASK: i64 = (1 << OBJ_BITS) - 1;
/// The most bytes `alloc_word` is armed for: every allocation is at least a byte, so fewer
/// than 2^24 objects are counted before it turns negative and the objects field never borrows
/// from the bytes. A longer countdown is consumed in turns of this (a fold every 16 MiB).
pub(super) const CAP: i64 = OBJ_MASK - 1;

/// (bytes, objects) of a count `d` subtracted from `alloc_word` (0 for none, or a torn read).
pub(super) fn unpack(d: i64) -> (u64, u64) {
    if d <= 0 {
        return (0, 0);
    }
    ((d >> OBJ_BITS) as u64, (d & OBJ_MASK) as u64)
}
