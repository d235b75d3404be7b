//! The sampled-block region: a reserved range of address space that holds every sampled block,
//! so that `dealloc` tells a sampled block from any other with one range compare (the way
//! GWP-ASan recognises its guarded pool), without a lock, a hash or a memory probe.
//!
//! Small blocks come from power-of-two slabs; large ones from page runs rounded to quarter-
//! power-of-two size classes, each class with its own free list, so reuse is O(1) and no list
//! is ever walked. Freed runs stay resident up to a budget ([`RESIDENT_CACHE`]); beyond it they
//! are returned to the OS (`MADV_DONTNEED`). The region is reserved lazily on the first sample with
//! `MAP_NORESERVE`, so untouched address space costs nothing. If it cannot be reserved, or
//! fills up, sampling degrades to pass-through and the drops are counted.

use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

use crate::alloc_state::HOT;

/// Sizes tried for the reservation, largest first (address space only, not memory).
const RESERVE_SIZES: [usize; 4] = [64 << 30, 8 << 30, 1 << 30, 128 << 20];
const PAGE: usize = 4096;
/// Smallest and largest slab classes (log2 of the block size).
const MIN_CLASS: u32 = 5;
const MAX_CLASS: u32 = 15;
const CLASSES: usize = (MAX_CLASS - MIN_CLASS + 1) as usize;
/// Slab chunks are carved in this size (and alignment).
const CHUNK: usize = 64 * 1024;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// Bytes of the region handed out and not yet freed (rounded to slab class or pages).
pub(crate) static USED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes of freed page runs kept resident for reuse before further frees go back to the OS.
pub(crate) const RESIDENT_CACHE: usize = 32 << 20;
/// Large-run size classes: four per power of two of the page count.
const RUN_CLASSES: usize = 64 * 4;

struct State {
    bump: usize,
    slabs: [*mut usize; CLASSES],
    /// Per large class, a list of freed runs linked through their first word.
    runs: [*mut usize; RUN_CLASSES],
    /// Bytes of freed runs still resident.
    cached: usize,
}

// SAFETY: the raw pointers point into the region, which lives for the whole process; all
// access to them goes through the mutex.
unsafe impl Send for State {}

static ARENA: Mutex<State> = Mutex::new(State {
    bump: 0,
    slabs: [ptr::null_mut(); CLASSES],
    runs: [ptr::null_mut(); RUN_CLASSES],
    cached: 0,
});

/// True if `p` points into the region: the whole cost of `dealloc`'s "is it sampled?" check.
#[inline(always)]
pub(crate) fn contains(p: *const u8) -> bool {
    (p as usize).wrapping_sub(HOT.region_base.load(Relaxed)) < HOT.region_len.load(Relaxed)
}

/// Reserves the region if it is not yet; false if it cannot be had.
fn ensure() -> bool {
    loop {
        match STATE.load(Acquire) {
            READY => return true,
            FAILED => return false,
            // Another thread is reserving right now (one mmap call): wait for its outcome
            // rather than dropping this sample.
            BUSY => std::thread::yield_now(),
            _ => {
                if STATE
                    .compare_exchange(UNINIT, BUSY, AcqRel, Acquire)
                    .is_ok()
                {
                    break;
                }
            }
        }
    }
    for size in RESERVE_SIZES {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            // Align the start to CHUNK so slab blocks are naturally aligned.
            let start = (p as usize).next_multiple_of(CHUNK);
            HOT.region_base.store(start, Relaxed);
            HOT.region_len.store(size - (start - p as usize), SeqCst);
            // Threads' free fast paths test a copy of the bounds: each re-reads them before
            // any block of the region can reach it.
            crate::alloc_state::configuration_changed();
            STATE.store(READY, Release);
            return true;
        }
    }
    STATE.store(FAILED, Release);
    false
}

/// Size of the reserved region in bytes (0 until the first sample).
pub(crate) fn reserved() -> usize {
    HOT.region_len.load(Relaxed)
}

fn class_of(total: usize) -> Option<usize> {
    // Slab blocks are naturally aligned to their size, so any alignment up to the class size
    // (pad >= align makes total >= align) is met.
    let bits = total
        .max(1 << MIN_CLASS)
        .next_power_of_two()
        .trailing_zeros();
    (bits <= MAX_CLASS).then(|| (bits - MIN_CLASS) as usize)
}

/// The large class of a run of at least `total` bytes: (class index, bytes of the class).
fn run_class(total: usize) -> (usize, usize) {
    let pages = total.div_ceil(PAGE).max(4);
    let k = usize::BITS - 1 - pages.leading_zeros(); // floor(log2(pages)) >= 2
    let step = 1usize << (k - 2);
    let mut quarters = pages.div_ceil(step); // 4..=8
    let mut k = k as usize;
    if quarters == 8 {
        quarters = 4;
        k += 1;
    }
    (k * 4 + (quarters - 4), (quarters << (k - 2)) * PAGE)
}

/// Bytes a block of `total` bytes really takes in the region.
pub(crate) fn footprint(total: usize) -> usize {
    match class_of(total) {
        Some(c) => 1 << (c as u32 + MIN_CLASS),
        None => run_class(total).1,
    }
}

/// A block of at least `total` bytes aligned to `align`, or null; and whether its memory is
/// known to be zero (fresh or returned to the OS), so `alloc_zeroed` can skip clearing it.
pub(crate) fn alloc(total: usize, align: usize) -> (*mut u8, bool) {
    if !ensure() {
        return (ptr::null_mut(), false);
    }
    let base = HOT.region_base.load(Relaxed);
    let len = HOT.region_len.load(Relaxed);
    let Ok(mut st) = ARENA.lock() else {
        return (ptr::null_mut(), false);
    };
    let (p, zero) = match class_of(total) {
        Some(c) => (alloc_small(&mut st, c, base, len), false),
        None => alloc_large(&mut st, total, align, base, len),
    };
    if !p.is_null() {
        USED_BYTES.fetch_add(footprint(total), Relaxed);
    }
    (p, zero)
}

fn bump(st: &mut State, bytes: usize, align: usize, base: usize, len: usize) -> *mut u8 {
    let start = st.bump.next_multiple_of(align);
    match start.checked_add(bytes) {
        Some(end) if end <= len => {
            st.bump = end;
            (base + start) as *mut u8
        }
        _ => ptr::null_mut(),
    }
}

fn alloc_small(st: &mut State, class: usize, base: usize, len: usize) -> *mut u8 {
    if st.slabs[class].is_null() {
        let chunk = bump(st, CHUNK, CHUNK, base, len);
        if chunk.is_null() {
            return ptr::null_mut();
        }
        let size = 1usize << (class as u32 + MIN_CLASS);
        let mut head: *mut usize = ptr::null_mut();
        for i in (0..CHUNK / size).rev() {
            // SAFETY: the block lies inside the chunk just carved from the region, which is
            // mapped read-write and owned by the arena.
            unsafe {
                let b = chunk.add(i * size).cast::<usize>();
                b.write(head as usize);
                head = b;
            }
        }
        st.slabs[class] = head;
    }
    let b = st.slabs[class];
    // SAFETY: `b` heads this class's free list: a free block inside the region whose first
    // word holds the next free block.
    st.slabs[class] = unsafe { b.read() } as *mut usize;
    b.cast()
}

fn alloc_large(
    st: &mut State,
    total: usize,
    align: usize,
    base: usize,
    len: usize,
) -> (*mut u8, bool) {
    let (class, bytes) = run_class(total);
    if class >= RUN_CLASSES {
        return (ptr::null_mut(), false);
    }
    if align > PAGE {
        // Over-aligned blocks are rare: carve them fresh, aligned; freed, they join the class.
        return (bump(st, bytes, align, base, len), true);
    }
    let head = st.runs[class];
    if head.is_null() {
        return (bump(st, bytes, PAGE, base, len), true);
    }
    // SAFETY: `head` is a freed run of this class inside the region whose first word links to
    // the next one (written by `free`); the lists are only touched under the arena lock.
    st.runs[class] = unsafe { head.read() } as *mut usize;
    // SAFETY: the same run; its second word says whether it stayed resident.
    let resident = unsafe { head.add(1).read() } != 0;
    if resident {
        st.cached -= bytes;
        return (head.cast(), false);
    }
    // Returned to the OS: zero but for the two words of free-list bookkeeping.
    // SAFETY: the run is ours; clear the words `free` wrote.
    unsafe { head.cast::<[usize; 2]>().write([0, 0]) };
    (head.cast(), true)
}

/// Frees a block returned by [`alloc`] for the same `total`.
pub(crate) fn free(p: *mut u8, total: usize) {
    let Ok(mut st) = ARENA.lock() else {
        return; // poisoned: leak the block rather than risk the heap
    };
    USED_BYTES.fetch_sub(footprint(total), Relaxed);
    match class_of(total) {
        Some(c) => {
            // SAFETY: `p` is a block of this class inside the region, no longer in use.
            unsafe { p.cast::<usize>().write(st.slabs[c] as usize) };
            st.slabs[c] = p.cast();
        }
        None => {
            let (class, bytes) = run_class(total);
            let resident = st.cached + bytes <= RESIDENT_CACHE;
            if resident {
                st.cached += bytes;
            } else {
                // SAFETY: `p..p+bytes` is a run inside the region that the caller no longer
                // uses; MADV_DONTNEED hands its memory back and leaves it mapped, zero-filled.
                unsafe { libc::madvise(p.cast(), bytes, libc::MADV_DONTNEED) };
            }
            // SAFETY: the run is ours again; its first two words hold the free-list link and
            // whether it stayed resident.
            unsafe {
                p.cast::<usize>().write(st.runs[class] as usize);
                p.cast::<usize>().add(1).write(usize::from(resident));
            }
            st.runs[class] = p.cast();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_classes_cover_and_waste_at_most_a_quarter() {
        let mut last = (0, 0);
        for pages in 9..5000usize {
            let total = pages * PAGE - 7;
            let (c, bytes) = run_class(total);
            assert!(bytes >= total, "{pages}: class too small");
            assert!(
                bytes * 4 <= total * 5 + 4 * PAGE,
                "{pages}: waste over 25 %"
            );
            assert!(
                c >= last.0 && bytes >= last.1,
                "{pages}: classes not monotonic"
            );
            last = (c, bytes);
        }
        assert!(run_class(64 << 30).0 < RUN_CLASSES);
    }

    #[test]
    fn blocks_are_reused_and_aligned() {
        let (a, zero) = alloc(100_000, 16);
        assert!(!a.is_null() && contains(a) && zero);
        free(a, 100_000);
        let (b, zero) = alloc(100_000, 16);
        assert_eq!(a, b, "a freed run of the same class is reused");
        assert!(!zero, "a resident run is not known to be zero");
        free(b, 100_000);
        let (c, _) = alloc(50_000, 16 << 10);
        assert_eq!(c as usize % (16 << 10), 0);
        free(c, 50_000);
        let (d, _) = alloc(100, 64);
        assert_eq!(d as usize % 64, 0);
        free(d, 100);
    }
}
