//! The sampled-block region: a reserved range of address space that holds every sampled block,
//! so that `dealloc` tells a sampled block from any other with one range compare (the way
//! GWP-ASan recognises its guarded pool), without a lock, a hash or a memory probe.
//!
//! Small blocks come from power-of-two slabs, large ones from page runs that are returned to
//! the OS (`MADV_DONTNEED`) when freed. The region is reserved lazily on the first sample with
//! `MAP_NORESERVE`, so untouched address space costs nothing. If it cannot be reserved, or
//! fills up, sampling degrades to pass-through and the drops are counted.

use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

/// Sizes tried for the reservation, largest first (address space only, not memory).
const RESERVE_SIZES: [usize; 4] = [64 << 30, 8 << 30, 1 << 30, 128 << 20];
const PAGE: usize = 4096;
/// Smallest and largest slab classes (log2 of the block size).
const MIN_CLASS: u32 = 5;
const MAX_CLASS: u32 = 15;
const CLASSES: usize = (MAX_CLASS - MIN_CLASS + 1) as usize;
/// Slab chunks are carved in this size (and alignment).
const CHUNK: usize = 64 * 1024;

static BASE: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// Bytes of the region handed out and not yet freed (rounded to slab class or pages).
pub(crate) static USED_BYTES: AtomicUsize = AtomicUsize::new(0);

struct FreeRun {
    pages: usize,
    next: *mut FreeRun,
}

struct State {
    bump: usize,
    slabs: [*mut usize; CLASSES],
    runs: *mut FreeRun,
}

// SAFETY: the raw pointers point into the region, which lives for the whole process; all
// access to them goes through the mutex.
unsafe impl Send for State {}

static ARENA: Mutex<State> = Mutex::new(State {
    bump: 0,
    slabs: [ptr::null_mut(); CLASSES],
    runs: ptr::null_mut(),
});

/// True if `p` points into the region: the whole cost of `dealloc`'s "is it sampled?" check.
#[inline(always)]
pub(crate) fn contains(p: *const u8) -> bool {
    (p as usize).wrapping_sub(BASE.load(Relaxed)) < LEN.load(Relaxed)
}

/// Reserves the region if it is not yet; false if it cannot be had.
fn ensure() -> bool {
    match STATE.load(Acquire) {
        READY => return true,
        FAILED | BUSY => return false,
        _ => {}
    }
    if STATE
        .compare_exchange(UNINIT, BUSY, AcqRel, Acquire)
        .is_err()
    {
        return STATE.load(Acquire) == READY;
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
            BASE.store(start, Relaxed);
            LEN.store(size - (start - p as usize), Relaxed);
            STATE.store(READY, Release);
            return true;
        }
    }
    STATE.store(FAILED, Release);
    false
}

/// Size of the reserved region in bytes (0 until the first sample).
pub(crate) fn reserved() -> usize {
    LEN.load(Relaxed)
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

/// Bytes a block of `total` bytes really takes in the region.
pub(crate) fn footprint(total: usize) -> usize {
    match class_of(total) {
        Some(c) => 1 << (c as u32 + MIN_CLASS),
        None => total.next_multiple_of(PAGE),
    }
}

/// A block of at least `total` bytes aligned to `align`, or null.
pub(crate) fn alloc(total: usize, align: usize) -> *mut u8 {
    if !ensure() {
        return ptr::null_mut();
    }
    let base = BASE.load(Relaxed);
    let len = LEN.load(Relaxed);
    let Ok(mut st) = ARENA.lock() else {
        return ptr::null_mut();
    };
    let p = match class_of(total) {
        Some(c) => alloc_small(&mut st, c, base, len),
        None => alloc_large(&mut st, total.next_multiple_of(PAGE), align, base, len),
    };
    if !p.is_null() {
        USED_BYTES.fetch_add(footprint(total), Relaxed);
    }
    p
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

fn alloc_large(st: &mut State, bytes: usize, align: usize, base: usize, len: usize) -> *mut u8 {
    if align > PAGE {
        // Over-aligned blocks are rare: carve them fresh, aligned; freed, they join the runs.
        return bump(st, bytes, align, base, len);
    }
    let pages = bytes / PAGE;
    // First fit over the freed runs; split off what is left.
    let mut link: *mut *mut FreeRun = &mut st.runs;
    // SAFETY: every run on the list is a freed page run inside the region whose first bytes
    // hold its `FreeRun` header, written by `free_large`; the list is only touched under the
    // arena lock.
    unsafe {
        while !(*link).is_null() {
            let run = *link;
            if (*run).pages >= pages {
                let rest = (*run).pages - pages;
                if rest > 0 {
                    let tail = run.cast::<u8>().add(bytes).cast::<FreeRun>();
                    tail.write(FreeRun {
                        pages: rest,
                        next: (*run).next,
                    });
                    *link = tail;
                } else {
                    *link = (*run).next;
                }
                return run.cast();
            }
            link = &mut (*run).next;
        }
    }
    bump(st, bytes, PAGE, base, len)
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
            let bytes = total.next_multiple_of(PAGE);
            // SAFETY: `p..p+bytes` is a page run inside the region that the caller no longer
            // uses; MADV_DONTNEED hands its memory back and leaves it mapped (zero-filled).
            unsafe {
                libc::madvise(p.cast(), bytes, libc::MADV_DONTNEED);
                p.cast::<FreeRun>().write(FreeRun {
                    pages: bytes / PAGE,
                    next: st.runs,
                });
            }
            st.runs = p.cast();
        }
    }
}
