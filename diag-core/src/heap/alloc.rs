//! `DiagAlloc`: the sampling global allocator.
//!
//! The unsampled path of `alloc` is a layout check, the thread's state (one thread-local
//! byte: count, pass through, or take the slow path), an object count and a byte countdown,
//! both thread-local, and, below [`CHECKED_SIZE`], a tail call to the inner allocator; of
//! `dealloc`, one compare of the block's address with thread-local bounds (which stands for
//! the thread's state and the sampled-block check) and two counter bumps; of `realloc`, both.
//! Every path of the three is a tail call, so none sets up a stack frame (layouts `malloc`
//! cannot serve directly go out of line). With sampling off (rate 0) they are a pass-through
//! (the exact counters then pause): `alloc` loads the state and branches, `dealloc` keeps its
//! compare and bumps counters no reader sees, which costs less than telling the states apart
//! there. A sampled block is placed in the
//! sampled-block [`region`](super::region) behind a small header that names its stack, the
//! weights it was counted with and its allocation time, and links it into the list of live
//! sampled blocks ([`live`](super::live)), so freeing it needs no lookup and a snapshot can
//! tell every live block's age.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::live::{self, HEADER, Header};
use super::stacks::{self, FP};
use super::{config, labels, region};
use crate::alloc_state::thread::{self, Decision, Fast, GO, OFF};
use crate::alloc_state::{DROPPED_BYTES, DROPPED_SAMPLES};
use crate::defaults::{DEFAULT_MAX_TRACKED_BLOCKS, MAX_FRAMES};
use crate::stack::unwind;

/// Allocations from this size up take the slow path, which counts them, decides, and checks
/// the inner allocator's result, so a refusal (null) takes its count back. Smaller ones are
/// counted inline and handed on as a tail call, which keeps the sampling fast path free of a
/// stack frame (about 5 % of a 14 ns malloc/free pair, measured with
/// `benches/benches/heap_ab.rs`). The cost: a refused allocation below 64 KiB stays counted in
/// the exact totals. The inner allocator refuses so
/// small a block only when the process is out of address space or commit charge, where std's
/// infallible allocations abort; a fallible one (`try_reserve`) that fails there leaves its
/// bytes counted as live.
pub const CHECKED_SIZE: usize = 64 * 1024;

/// Sampled blocks currently tracked.
pub(crate) static TRACKED: AtomicUsize = AtomicUsize::new(0);
/// The cap on [`TRACKED`].
pub(crate) static MAX_TRACKED: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_TRACKED_BLOCKS);

/// A global allocator that samples allocations for heap profiles and wraps another allocator.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();
/// ```
///
/// Wrapping another allocator (mimalloc, jemalloc, ...) works the same way:
/// `static ALLOC: DiagAlloc<MyAlloc> = DiagAlloc::new(MyAlloc);`. Sampled blocks (about one
/// per [`sample rate`](crate::heap::set_sample_rate) bytes) are served from diag's own region;
/// everything else goes to the inner allocator untouched.
#[derive(Debug, Default)]
pub struct DiagAlloc<A = System> {
    inner: A,
}

impl DiagAlloc<System> {
    /// `DiagAlloc` over the system allocator.
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> DiagAlloc<A> {
    /// `DiagAlloc` over `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

/// Sampling off (rate 0), read from the configuration word (the fast paths read the thread's
/// state instead, [`thread::state`], which follows the word).
#[inline(always)]
fn off() -> bool {
    config::rate(config::load()) == 0
}

/// The alignment `malloc` gives every block on 64-bit targets (std's `System` asks plain
/// `malloc` for a layout aligned to at most this and to at most its size).
const PLAIN_ALIGN: usize = 16;

/// A layout `alloc` takes inline: non-zero size, aligned to at most [`PLAIN_ALIGN`] and to
/// at most its size. For `System` the inner allocator is then a plain `malloc`, so the
/// compiler drops its `posix_memalign` branch (which needs a stack frame) from `alloc`.
#[inline(always)]
fn plain(layout: Layout) -> bool {
    layout.align() <= PLAIN_ALIGN && layout.align() <= layout.size()
}

#[inline]
fn pad_for(align: usize) -> usize {
    HEADER.next_multiple_of(align)
}

/// The weights of one sample of `size` bytes at `rate`: (objects in fixed point, bytes), each
/// the sample's value over its probability `1 - e^(-size/rate)`, rounded to nearest.
fn weights(size: usize, rate: u64) -> (u64, u64) {
    if rate <= 1 {
        return (FP as u64, size as u64);
    }
    let p = one_minus_exp_neg(size as f64 / rate as f64);
    // Both quotients are positive and finite: adding 0.5 and truncating rounds them, without
    // a call to `round` on the sample path.
    ((FP / p + 0.5) as u64, (size as f64 / p + 0.5) as u64)
}

/// `1 - e^(-x)` for `x > 0`. Below 1/32 (a block under a 32nd of the sample rate: almost every
/// sample) by its series to the `x^5` term, relative error under 1e-10; libm's `expm1`
/// otherwise. A sample is rare enough that libm's code is cold each time: the series keeps
/// that call, about a dozen instruction-cache misses, off the common path.
#[inline]
fn one_minus_exp_neg(x: f64) -> f64 {
    if x < 1.0 / 32.0 {
        x * (1.0 - x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0 - x / 120.0))))
    } else {
        -(-x).exp_m1()
    }
}

/// Records one sampled allocation and returns its block and whether its memory is known to be
/// zero; or, if it cannot be tracked, the estimated bytes the sample stood for (a drop, counted
/// by the caller once the allocation itself succeeds). The caller holds the busy flag.
fn sample_block(layout: Layout) -> Result<(*mut u8, bool), u64> {
    let size = layout.size();
    let rate = config::sample_rate().max(1);
    let (objects_fp, bytes) = weights(size, rate);
    let drop = || Err(bytes);
    let pad = pad_for(layout.align());
    let Some(total) = size.checked_add(pad) else {
        return drop();
    };
    if TRACKED.load(Relaxed) >= MAX_TRACKED.load(Relaxed) {
        return drop();
    }
    let (raw, zero) = region::alloc(total, layout.align());
    if raw.is_null() {
        return drop();
    }
    let mut frames = [0usize; MAX_FRAMES];
    let depth = unwind::capture(&mut frames);
    let Some(id) = stacks::intern(&frames[..depth], labels::current()) else {
        region::free(raw, total);
        return drop();
    };
    let e = stacks::entry(id);
    e.alloc_objects_fp.fetch_add(objects_fp, Relaxed);
    e.alloc_bytes.fetch_add(bytes, Relaxed);
    e.inuse_objects_fp.fetch_add(objects_fp, Relaxed);
    e.inuse_bytes.fetch_add(bytes, Relaxed);
    TRACKED.fetch_add(1, Relaxed);
    // SAFETY: raw..raw+total is ours; the header sits in the pad, right before the user block,
    // and pad >= HEADER with HEADER a multiple of the header's alignment. It stays there until
    // `free_sampled` unlinks it.
    unsafe {
        let user = raw.add(pad);
        live::link(
            user.sub(HEADER).cast::<Header>(),
            Header::new(id, objects_fp, bytes),
        );
        Ok((user, zero))
    }
}

/// Forgets and frees a sampled block.
///
/// # Safety
/// `p` must be a live block returned by [`sample_block`] for `layout`.
unsafe fn free_sampled(p: *mut u8, layout: Layout) {
    let pad = pad_for(layout.align());
    // SAFETY: per the contract, the header was linked HEADER bytes before `p`, inside the pad.
    let h = unsafe { live::unlink(p.sub(HEADER).cast::<Header>()) };
    let e = stacks::entry(h.stack);
    e.inuse_objects_fp.fetch_sub(h.objects_fp, Relaxed);
    e.inuse_bytes.fetch_sub(h.bytes, Relaxed);
    TRACKED.fetch_sub(1, Relaxed);
    // SAFETY: the block started `pad` bytes before `p` and spans pad + size bytes.
    region::free(unsafe { p.sub(pad) }, pad + layout.size());
}

impl<A: GlobalAlloc> DiagAlloc<A> {
    /// Everything `alloc` does not do inline: counting without a slot, sampling decisions.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout, zeroed: bool, fast: Fast) -> *mut u8 {
        // The fast path either counted and asked for a decision, or did nothing at all.
        let decision = match fast {
            Fast::Decide => thread::decide(layout.size()),
            Fast::Slow | Fast::Pass => thread::on_alloc(layout.size()),
        };
        // SAFETY: forwarded contract.
        let p = unsafe {
            match decision {
                Decision::Sample => self.alloc_sampled(layout, zeroed),
                Decision::Pass if zeroed => self.inner.alloc_zeroed(layout),
                Decision::Pass => self.inner.alloc(layout),
            }
        };
        if p.is_null() {
            thread::failed(layout.size(), 0);
        }
        p
    }

    /// A counted, unsampled allocation that is not a tail call (an over-aligned one): takes
    /// the count back if the inner allocator refuses it.
    #[inline(never)]
    unsafe fn alloc_checked(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(layout)
            } else {
                self.inner.alloc(layout)
            }
        };
        if p.is_null() {
            thread::failed(layout.size(), 0);
        }
        p
    }

    /// An allocation that is not [`plain`]: zero-size (passed through, never counted) or
    /// aligned beyond what `malloc` gives. Out of line, so the inner allocator's code for
    /// such layouts (`System`'s `posix_memalign` call needs a stack frame) stays out of
    /// `alloc`, whose every path is then a tail call.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_unusual(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let (fast, counted) = match thread::state() {
            _ if layout.size() == 0 => (Fast::Pass, false),
            GO if layout.size() < CHECKED_SIZE => (thread::fast_alloc(layout.size()), true),
            OFF => (Fast::Pass, false),
            _ => (Fast::Slow, true),
        };
        // SAFETY: forwarded contract; zero-size blocks and sampling off are forwarded as is.
        unsafe {
            if fast != Fast::Pass {
                self.alloc_slow(layout, zeroed, fast)
            } else if counted {
                self.alloc_checked(layout, zeroed)
            } else if zeroed {
                self.inner.alloc_zeroed(layout)
            } else {
                self.inner.alloc(layout)
            }
        }
    }

    /// Everything `dealloc` does not do inline: a thread that is neither [`GO`] nor [`OFF`]
    /// (diag's own frees, no slot, a configuration to re-read), sampled blocks. Cold, so that
    /// the inline path falls through to the inner allocator rather than branching to it.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, p: *mut u8, layout: Layout) {
        // Sampling off: not counted (a block sampled while it was on goes back to the region).
        if thread::state() != OFF {
            thread::on_free(layout.size());
        }
        if region::contains(p) {
            // SAFETY: region blocks are only ever handed out by sample_block.
            unsafe { free_sampled(p, layout) }
        } else {
            // SAFETY: forwarded as is.
            unsafe { self.inner.dealloc(p, layout) }
        }
    }

    #[cold]
    #[inline(never)]
    unsafe fn alloc_sampled(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let sampled = sample_block(layout);
        thread::end_sample();
        let (p, zero) = match sampled {
            Ok(block) => block,
            Err(bytes) => {
                // SAFETY: same contract as our caller's.
                let p = unsafe {
                    if zeroed {
                        self.inner.alloc_zeroed(layout)
                    } else {
                        self.inner.alloc(layout)
                    }
                };
                if !p.is_null() {
                    DROPPED_SAMPLES.fetch_add(1, Relaxed);
                    DROPPED_BYTES.fetch_add(bytes, Relaxed);
                }
                return p;
            }
        };
        if zeroed && !zero {
            // SAFETY: p is a fresh block of layout.size() bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    /// A realloc `realloc` does not take inline: a sampled block, a zero-size or over-aligned
    /// layout. Every case, counted and decided here.
    #[inline(never)]
    unsafe fn realloc_unusual(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() == 0 || new_size == 0 {
            // SAFETY: forwarded as is (zero-size blocks are never sampled).
            return unsafe { self.inner.realloc(p, layout, new_size) };
        }
        let off = off();
        if off && !region::contains(p) {
            // SAFETY: forwarded as is.
            return unsafe { self.inner.realloc(p, layout, new_size) };
        }
        // SAFETY: the caller guarantees new_size, rounded up to align, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if off {
            // A block sampled before sampling went off: move it out of the region, uncounted.
            // SAFETY: forwarded contracts of GlobalAlloc::realloc.
            unsafe {
                let new = self.inner.alloc(new_layout);
                if !new.is_null() {
                    ptr::copy_nonoverlapping(p, new, layout.size().min(new_size));
                    free_sampled(p, layout);
                }
                return new;
            }
        }
        thread::on_free(layout.size());
        let decision = thread::on_alloc(new_size);
        let sampled = region::contains(p);
        if decision == Decision::Pass && !sampled {
            // SAFETY: forwarded contract.
            return unsafe { self.realloc_passed(p, layout, new_size) };
        }
        // A sampled block that moves is tracked afresh (a new Poisson decision for its new
        // size keeps the estimates unbiased); one that is freed is forgotten.
        // SAFETY: forwarded contract.
        unsafe { self.realloc_move(p, layout, new_layout, decision) }
    }

    /// A realloc of an unsampled block after the inline path counted it (or could not:
    /// `Fast::Slow`): the sampling decision, and the null check from [`CHECKED_SIZE`] up.
    #[inline(never)]
    unsafe fn realloc_counted(
        &self,
        p: *mut u8,
        layout: Layout,
        new_size: usize,
        fast: Fast,
    ) -> *mut u8 {
        let decision = match fast {
            Fast::Pass => Decision::Pass,
            Fast::Decide => thread::decide(new_size),
            Fast::Slow => {
                thread::on_free(layout.size());
                thread::on_alloc(new_size)
            }
        };
        if decision == Decision::Pass {
            // SAFETY: forwarded contract.
            return unsafe { self.realloc_passed(p, layout, new_size) };
        }
        // SAFETY: the caller guarantees new_size, rounded up to align, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded contract.
        unsafe { self.realloc_move(p, layout, new_layout, decision) }
    }

    /// A counted realloc of an unsampled block that stays unsampled: the inner allocator's
    /// realloc, taking the counts back if it refuses.
    #[inline]
    unsafe fn realloc_passed(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let q = unsafe { self.inner.realloc(p, layout, new_size) };
        if q.is_null() {
            thread::failed(new_size, layout.size());
        }
        q
    }

    /// Moves a block to a new one of `new_layout` chosen by `decision`, copying the contents.
    #[cold]
    unsafe fn realloc_move(
        &self,
        p: *mut u8,
        layout: Layout,
        new_layout: Layout,
        decision: Decision,
    ) -> *mut u8 {
        // SAFETY: forwarded contracts of GlobalAlloc::realloc.
        unsafe {
            let new = match decision {
                Decision::Sample => self.alloc_sampled(new_layout, false),
                Decision::Pass => self.inner.alloc(new_layout),
            };
            if new.is_null() {
                // The old block stays as it was.
                thread::failed(new_layout.size(), layout.size());
                return new;
            }
            ptr::copy_nonoverlapping(p, new, layout.size().min(new_layout.size()));
            if region::contains(p) {
                free_sampled(p, layout);
            } else {
                self.inner.dealloc(p, layout);
            }
            new
        }
    }
}

// SAFETY: every block handed out is either the inner allocator's (for the same layout) or a
// region block of at least layout.size() bytes aligned to layout.align(); dealloc and realloc
// route each block back to where it came from by the region range check.
unsafe impl<A: GlobalAlloc> GlobalAlloc for DiagAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !plain(layout) {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_unusual(layout, false) };
        }
        match thread::state() {
            GO => {}
            // SAFETY: forwarded as is (sampling off).
            OFF => return unsafe { self.inner.alloc(layout) },
            // SAFETY: forwarded contract.
            _ => return unsafe { self.alloc_slow(layout, false, Fast::Slow) },
        }
        if layout.size() >= CHECKED_SIZE {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_slow(layout, false, Fast::Slow) };
        }
        let fast = thread::fast_alloc(layout.size());
        if fast != Fast::Pass {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_slow(layout, false, fast) };
        }
        // SAFETY: forwarded as is; a tail call (see CHECKED_SIZE).
        unsafe { self.inner.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !plain(layout) {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_unusual(layout, true) };
        }
        match thread::state() {
            GO => {}
            // SAFETY: forwarded as is (sampling off).
            OFF => return unsafe { self.inner.alloc_zeroed(layout) },
            // SAFETY: forwarded contract.
            _ => return unsafe { self.alloc_slow(layout, true, Fast::Slow) },
        }
        if layout.size() >= CHECKED_SIZE {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_slow(layout, true, Fast::Slow) };
        }
        let fast = thread::fast_alloc(layout.size());
        if fast != Fast::Pass {
            // SAFETY: forwarded contract.
            return unsafe { self.alloc_slow(layout, true, fast) };
        }
        // SAFETY: forwarded as is; a tail call (see CHECKED_SIZE).
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if layout.size() == 0 {
            // SAFETY: forwarded as is.
            return unsafe { self.inner.dealloc(p, layout) };
        }
        if !thread::fast_free(p, layout.size()) {
            // SAFETY: forwarded contract.
            return unsafe { self.dealloc_slow(p, layout) };
        }
        // SAFETY: forwarded as is (counted, and not a sampled block).
        unsafe { self.inner.dealloc(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Inline: an unsampled block with plain layouts before and after.
        if !plain(layout) || layout.align() > new_size || region::contains(p) {
            // SAFETY: forwarded contract.
            return unsafe { self.realloc_unusual(p, layout, new_size) };
        }
        let fast = match thread::state() {
            GO if new_size < CHECKED_SIZE => thread::fast_realloc(layout.size(), new_size),
            // SAFETY: forwarded as is (sampling off).
            OFF => return unsafe { self.inner.realloc(p, layout, new_size) },
            _ => Fast::Slow,
        };
        if fast != Fast::Pass || new_size >= CHECKED_SIZE {
            // SAFETY: forwarded contract.
            return unsafe { self.realloc_counted(p, layout, new_size, fast) };
        }
        // SAFETY: forwarded as is; a tail call (see CHECKED_SIZE).
        unsafe { self.inner.realloc(p, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_matches_expm1() {
        let mut x = 1e-9_f64;
        while x < 4.0 {
            let exact = -(-x).exp_m1();
            let got = one_minus_exp_neg(x);
            assert!(
                ((got - exact) / exact).abs() < 1e-10,
                "x = {x}: {got} vs {exact}"
            );
            x *= 1.01;
        }
        // Weights round to nearest, as `round` did.
        for size in [1usize, 7, 100, 4000, 16_384, 300_000, 5 << 20] {
            for rate in [2u64, 4096, 512 * 1024, 1 << 40] {
                let p = -(-(size as f64) / rate as f64).exp_m1();
                let (o, b) = weights(size, rate);
                let (eo, eb) = ((FP / p).round() as u64, (size as f64 / p).round() as u64);
                assert!(
                    o.abs_diff(eo) <= 1 && b.abs_diff(eb) <= 1,
                    "{size} at {rate}"
                );
            }
        }
    }
}
