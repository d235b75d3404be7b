//! The least a sampling wrapper of a global allocator can do, as a yardstick for `heap_ab`.
//!
//! Any heap profiler that wraps another allocator (rather than living inside it, as
//! jemalloc's does) needs at least two things on its fast paths: on every allocation, a
//! per-thread byte countdown to the next sample (one read-modify-write of a thread-local and a
//! sign test); on every free, a test of whether the block is a sampled one (here one range
//! compare, as diag's sampled-block region and GWP-ASan's guarded pool do). [`Floor`] does
//! exactly that and nothing else: no switch to turn it off, no exact counters, no stacks; when
//! the countdown runs out it is re-armed out of line and no sample is taken. It is written here
//! rather than in diag so that its figure depends on nothing of diag's: if it costs more than
//! jemalloc's own profiler on a workload, so does every wrapper, whatever its counters.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The mean bytes between samples the countdown is re-armed with (diag's default).
const REARM: i64 = 512 * 1024;

thread_local! {
    /// Bytes left before the next (notional) sample.
    static COUNTDOWN: Cell<i64> = const { Cell::new(REARM) };
}

/// The sampled-block range every free is compared with: start and length. Empty, so no block
/// is ever in it, but read on every free as a wrapper's would be.
static RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// `inner` behind a sampling wrapper's least fast-path work (see the module doc).
#[derive(Debug, Default)]
pub struct Floor<A>(pub A);

impl<A: GlobalAlloc> Floor<A> {
    /// True once this thread's countdown ran out (after counting `size` bytes down).
    #[inline(always)]
    fn count_down(size: usize) -> bool {
        COUNTDOWN.with(|c| {
            let left = c.get() - size as i64;
            c.set(left);
            left < 0
        })
    }

    /// The countdown ran out: re-armed out of line, like a sampler's slow path.
    #[cold]
    #[inline(never)]
    fn rearm() {
        COUNTDOWN.with(|c| c.set(REARM));
    }

    /// Whether `p` lies in the sampled-block range.
    #[inline(always)]
    fn sampled(p: *mut u8) -> bool {
        (p as usize).wrapping_sub(RANGE[0].load(Relaxed)) < RANGE[1].load(Relaxed)
    }

    #[cold]
    #[inline(never)]
    unsafe fn alloc_rearmed(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        Self::rearm();
        // SAFETY: forwarded contract.
        unsafe {
            if zeroed {
                self.0.alloc_zeroed(layout)
            } else {
                self.0.alloc(layout)
            }
        }
    }

    /// A free of a block in the sampled range (never: the range is empty).
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_sampled(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(p, layout) }
    }
}

// SAFETY: every call is forwarded to `inner` with its arguments unchanged.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Floor<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::count_down(layout.size()) {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_rearmed(layout, false) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::count_down(layout.size()) {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_rearmed(layout, true) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if Self::sampled(p) {
            // SAFETY: forwarded contract.
            return unsafe { self.dealloc_sampled(p, layout) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::count_down(new_size) | Self::sampled(p) {
            Self::rearm();
        }
        // SAFETY: forwarded contract.
        unsafe { self.0.realloc(p, layout, new_size) }
    }
}
