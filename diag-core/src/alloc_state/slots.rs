//! The exact counters' shared memory: one slot per thread (claimed by `thread`), a twin per
//! slot for diag's own allocations, and an overflow slot per set for threads without one.
//! Only a slot's owner writes its counters (plain load and store); anyone may sum them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

/// How many threads get an uncontended counter slot; later threads share the overflow slot.
pub(super) const SLOTS: usize = 1024;

/// Exact allocation counters of one thread. Only the owning thread writes (plain load + store,
/// no read-modify-write), any thread may read.
#[repr(align(64))]
pub(crate) struct Slot {
    pub(super) in_use: AtomicBool,
    /// The configuration word the owning thread is taking a sample under; 0 when it is not
    /// (see [`wait_for_samples`]).
    pub(super) sampling: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) alloc_objects: AtomicU64,
    pub(crate) free_bytes: AtomicU64,
    pub(crate) free_objects: AtomicU64,
}

impl Totals {
    pub(super) fn add(&mut self, o: Totals) {
        self.alloc_bytes = self.alloc_bytes.wrapping_add(o.alloc_bytes);
        self.alloc_objects = self.alloc_objects.wrapping_add(o.alloc_objects);
        self.free_bytes = self.free_bytes.wrapping_add(o.free_bytes);
        self.free_objects = self.free_objects.wrapping_add(o.free_objects);
    }
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

pub(super) static SLOTS_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// Shared counters for threads without a slot (too many threads, or after TLS teardown).
pub(super) static OVERFLOW: Slot = Slot::new();
/// diag's own counters: slot `i` here is the twin of `SLOTS_TABLE[i]`, written by the same
/// thread while it runs diag's code.
pub(super) static OWN_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// diag's shared counters for its threads without a slot.
pub(super) static OWN_OVERFLOW: Slot = Slot::new();

/// A snapshot of the exact counters, summed over all threads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) alloc_bytes: u64,
    pub(crate) alloc_objects: u64,
    pub(crate) free_bytes: u64,
    pub(crate) free_objects: u64,
}

/// diag's own exact counters (allocations made under [`IgnoreAllocs`](super::IgnoreAllocs)).
pub(crate) fn own_totals() -> Totals {
    sum(OWN_TABLE.iter().chain(std::iter::once(&OWN_OVERFLOW)))
}

pub(super) fn sum<'a>(slots: impl Iterator<Item = &'a Slot>) -> Totals {
    let mut t = Totals::default();
    for s in slots {
        t.alloc_bytes = t.alloc_bytes.wrapping_add(s.alloc_bytes.load(Relaxed));
        t.alloc_objects = t.alloc_objects.wrapping_add(s.alloc_objects.load(Relaxed));
        t.free_bytes = t.free_bytes.wrapping_add(s.free_bytes.load(Relaxed));
        t.free_objects = t.free_objects.wrapping_add(s.free_objects.load(Relaxed));
    }
    t
}

#[inline(always)]
pub(super) fn add(counter: &AtomicU64, v: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(v), Relaxed);
}

/// The slot of set `own` (diag's or the application's) at `index`, if the thread has one.
#[inline]
pub(super) fn slot_at(index: usize, own: bool) -> Option<&'static Slot> {
    if own {
        OWN_TABLE.get(index)
    } else {
        SLOTS_TABLE.get(index)
    }
}

/// The shared slot of the application's or diag's set.
#[inline]
pub(super) fn overflow(own: bool) -> &'static Slot {
    if own { &OWN_OVERFLOW } else { &OVERFLOW }
}
