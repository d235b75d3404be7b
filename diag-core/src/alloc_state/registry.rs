//! Which threads count in their thread-local (the fast paths' counters, see `local`): the
//! registry the sums and a rate change walk, and the exit guard that takes a thread off it.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};

use super::local::{LOCAL, Local, NO_SLOT};
use super::slots::{OVERFLOW, SLOTS, SLOTS_TABLE, Totals, add, sum};

/// The application's exact counters (everything but diag's own allocations): the slots, the
/// overflow slot and what every registered thread's fast path counted in its thread-local.
pub(crate) fn totals() -> Totals {
    with_registry(|| {
        let mut t = sum(SLOTS_TABLE.iter().chain(std::iter::once(&OVERFLOW)));
        for r in &REGISTERED {
            let l = r.load(Acquire);
            if !l.is_null() {
                // SAFETY: a registered thread's `Local` stays valid until the thread takes
                // itself off the registry, under the registry lock, which we hold.
                t.add(unsafe { &*l }.fast_totals());
            }
        }
        t
    })
}

/// Threads whose fast paths count into their thread-local (`Local::fast_*`), by slot index.
/// A thread registers when it claims its slot (before its fast paths count anything there, so
/// a reader that misses the registration misses nothing) and takes itself off, under
/// [`REGISTRY_LOCK`], when it exits, folding those counters into its slot in the same step.
static REGISTERED: [AtomicPtr<Local>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
/// Held while the registry is read (sums, a rate change telling every thread) or a thread
/// leaves it. A spin lock, hand-written because a thread takes it in a TLS destructor, inside
/// the allocator, where a `Mutex` could allocate; it is held for one pass over the slots and
/// never while allocating.
static REGISTRY_LOCK: AtomicBool = AtomicBool::new(false);

/// Runs `f` holding [`REGISTRY_LOCK`]. A holder never waits for anything, so the lock is
/// free within microseconds, except in the child of a `fork` taken while another thread held
/// it: after two seconds `f` runs without it (the registered threads of such a child are the
/// parent's, gone, their memory still mapped, so reading it is safe).
fn with_registry<R>(f: impl FnOnce() -> R) -> R {
    let mut spins = 0u32;
    let mut since: Option<std::time::Instant> = None;
    let locked = loop {
        if REGISTRY_LOCK
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_ok()
        {
            break true;
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
            continue;
        }
        std::thread::yield_now();
        let start = *since.get_or_insert_with(std::time::Instant::now);
        if start.elapsed() > std::time::Duration::from_secs(2) {
            break false;
        }
    };
    let r = f();
    if locked {
        REGISTRY_LOCK.store(false, Release);
    }
    r
}

/// After a change of the configuration word or the region's reservation: every registered
/// thread's next allocation or free takes the slow path, which reads the new word and the
/// region's bounds (see `thread::refresh`). Sequentially consistent with a thread's
/// registration and its re-reads, so a thread either is seen here or sees the change.
pub(crate) fn configuration_changed() {
    with_registry(|| {
        for r in &REGISTERED {
            let l = r.load(SeqCst);
            if !l.is_null() {
                // SAFETY: as in `totals`: registered, and we hold the registry lock.
                unsafe { &*l }.mark_slow();
            }
        }
    });
}

thread_local! {
    /// Gives the slot back when the thread exits. Registered on first use of a slot.
    static SLOT_GUARD: SlotGuard = const { SlotGuard };
}

/// Registers this thread's exit guard (which may allocate); false if TLS destructors can no
/// longer be registered on this thread (it is exiting).
pub(super) fn arm_exit_guard() -> bool {
    SLOT_GUARD.try_with(|_| ()).is_ok()
}

/// Puts this thread, which has slot `i`, on the registry. Before its fast paths count anything
/// in its thread-local (its state is still `SLOW`), so no reader can miss a count.
pub(super) fn register(i: usize, l: &Local) {
    REGISTERED[i].store(l as *const Local as *mut Local, SeqCst);
}

struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| {
            l.mark_slow();
            l.slot.set(NO_SLOT);
            l.exited.set(true);
            let i = l.index.replace(usize::MAX);
            if let Some(s) = SLOTS_TABLE.get(i) {
                // Off the registry, the thread-local counts folded into the slot, in one step
                // for readers.
                with_registry(|| {
                    let t = l.fast_totals();
                    add(&s.alloc_bytes, t.alloc_bytes);
                    add(&s.alloc_objects, t.alloc_objects);
                    add(&s.free_bytes, t.free_bytes);
                    add(&s.free_objects, t.free_objects);
                    l.write_begin();
                    for c in [
                        &l.fast_alloc_bytes,
                        &l.fast_alloc_objects,
                        &l.fast_free_bytes,
                        &l.fast_free_objects,
                        &l.frozen_free_bytes,
                        &l.frozen_free_objects,
                    ] {
                        c.store(0, Relaxed);
                    }
                    l.alloc_word.store(l.alloc_armed.load(Relaxed), Relaxed);
                    l.write_end();
                    REGISTERED[i].store(std::ptr::null_mut(), Release);
                });
                s.in_use.store(false, Release);
            }
        });
    }
}
