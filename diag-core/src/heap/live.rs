//! Live sampled blocks: the header in front of each, stamped with its allocation time, and the
//! list that links the live ones so a snapshot can read every block's stack, weights and age.
//!
//! Everything here runs inside the allocator's sampled path (about once per sample-rate bytes
//! allocated, and once per free of a sampled block): no allocation, no panic. The one lock is
//! the list's, held for two pointer updates by `link`/`unlink` and by [`collect`] for one pass
//! over the live blocks (at most the tracked-block cap; about 1 ns a block while in cache, up
//! to ~100 ns when the headers are cold), during which other threads' samples and frees of
//! sampled blocks wait. Unsampled allocations never touch it.

use std::ptr;
use std::sync::Mutex;

/// Bytes reserved in front of every sampled block for its [`Header`] (a multiple of 16, so
/// the user block keeps `malloc`'s alignment).
pub(crate) const HEADER: usize = 48;

/// What diag keeps in front of a sampled block.
#[repr(C)]
pub(crate) struct Header {
    /// The stack table entry the sample was counted in.
    pub(crate) stack: u32,
    /// When it was allocated, in [`TICK_MILLIS`] units of the monotonic clock ([`now`]).
    pub(crate) time: u32,
    /// Its weight in objects (fixed point, see `stacks::FP`).
    pub(crate) objects_fp: u64,
    /// Its weight in bytes.
    pub(crate) bytes: u64,
    prev: *mut Header,
    next: *mut Header,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER && HEADER.is_multiple_of(16));

impl Header {
    /// A header for a block sampled now, not yet linked.
    pub(crate) fn new(stack: u32, objects_fp: u64, bytes: u64) -> Self {
        Self {
            stack,
            time: now(),
            objects_fp,
            bytes,
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
        }
    }
}

/// Milliseconds in one unit of [`Header::time`]. 100 ms: ten times finer than the smallest age
/// bucket (`<1s`), and a `u32` of them spans 13.6 years, past any uptime; ages are taken with
/// a wrapping subtraction, so even a wrap (13.6 years after boot) only misstates blocks older
/// than that.
pub(crate) const TICK_MILLIS: u64 = 100;

/// The monotonic clock in [`TICK_MILLIS`] units, truncated to 32 bits. `CLOCK_MONOTONIC_COARSE`
/// is read through the vDSO on Linux (no system call, no allocation, no lock: safe inside the
/// allocator), at the resolution of the kernel tick (1-4 ms), far below one unit.
pub(crate) fn now() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the call has no other effect.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let millis = (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000;
    (millis / TICK_MILLIS) as u32
}

/// The age in milliseconds, at `now` (from [`now`]), of a block stamped `time`.
pub(crate) fn age_millis(now: u32, time: u32) -> u64 {
    u64::from(now.wrapping_sub(time)) * TICK_MILLIS
}

struct List {
    head: *mut Header,
}

// SAFETY: the headers live in the sampled-block region, which lives for the whole process;
// every access to the links goes through the mutex.
unsafe impl Send for List {}

static LIST: Mutex<List> = Mutex::new(List {
    head: ptr::null_mut(),
});

fn list() -> std::sync::MutexGuard<'static, List> {
    // Nothing panics while holding the lock, so a poisoned lock still holds a sound list.
    LIST.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `header` at `at` and links it into the live list.
///
/// # Safety
/// `at` must be valid for writes of a `Header`, aligned, and stay so until [`unlink`].
pub(crate) unsafe fn link(at: *mut Header, header: Header) {
    let mut l = list();
    // SAFETY: per the contract; the old head (if any) is a linked header, also valid.
    unsafe {
        at.write(Header {
            next: l.head,
            ..header
        });
        if !l.head.is_null() {
            (*l.head).prev = at;
        }
    }
    l.head = at;
}

/// Unlinks the header at `at` and returns a copy of it.
///
/// # Safety
/// `at` must be a header written by [`link`] and not yet unlinked.
pub(crate) unsafe fn unlink(at: *mut Header) -> Header {
    let mut l = list();
    // SAFETY: per the contract; its neighbours are linked headers too.
    unsafe {
        let h = at.read();
        if h.prev.is_null() {
            l.head = h.next;
        } else {
            (*h.prev).next = h.next;
        }
        if !h.next.is_null() {
            (*h.next).prev = h.prev;
        }
        h
    }
}

/// One live sampled block, as [`collect`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// The stack table entry.
    pub(crate) stack: u32,
    /// Its age in milliseconds at the time of the read.
    pub(crate) age_millis: u64,
    /// Its weight in objects (fixed point).
    pub(crate) objects_fp: u64,
    /// Its weight in bytes.
    pub(crate) bytes: u64,
}

/// Appends every live sampled block to `out`, up to its spare capacity (so the pass under the
/// lock never allocates; reserve before calling); returns how many did not fit.
pub(crate) fn collect(out: &mut Vec<Block>) -> usize {
    collect_with(out, |h, _, now| Block {
        stack: h.stack,
        age_millis: age_millis(now, h.time),
        objects_fp: h.objects_fp,
        bytes: h.bytes,
    })
    .0
}

/// Appends `read(header, its address, now)` for every live sampled block to `out`, up to its
/// spare capacity (reserve before calling: the pass under the lock never allocates); returns
/// how many did not fit, and the clock ([`now`]) the pass read.
pub(crate) fn collect_with<T>(
    out: &mut Vec<T>,
    read: impl Fn(&Header, usize, u32) -> T,
) -> (usize, u32) {
    let l = list();
    let now = now();
    let mut missed = 0;
    let mut p = l.head;
    while !p.is_null() {
        // SAFETY: linked headers stay valid until unlinked, which waits for the lock we hold.
        let h = unsafe { &*p };
        if out.len() < out.capacity() {
            out.push(read(h, p as usize, now));
        } else {
            missed += 1;
        }
        p = h.next;
    }
    (missed, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_in_ticks_and_ages_wrap() {
        let a = now();
        assert!(a > 0, "the monotonic clock reads");
        assert_eq!(age_millis(a + 25, a), 2500);
        assert_eq!(age_millis(3, u32::MAX - 1), 5 * TICK_MILLIS);
    }

    /// Stack ids far past any real table's, so blocks sampled by other tests are told apart.
    const BASE: u32 = 4_000_000_000;

    #[test]
    fn linked_blocks_are_collected_until_unlinked() {
        let mut slots: Vec<Header> = (0..3).map(|i| Header::new(BASE + i, 1, 2)).collect();
        let at: Vec<*mut Header> = slots.iter_mut().map(|h| h as *mut Header).collect();
        for (i, &p) in at.iter().enumerate() {
            // SAFETY: `slots` outlives the links; each is unlinked below.
            unsafe { link(p, Header::new(BASE + i as u32, 1, 2)) };
        }
        let ours = |v: &[Block]| {
            let mut s: Vec<u32> = v.iter().map(|b| b.stack).filter(|s| *s >= BASE).collect();
            s.sort();
            s
        };
        let mut out = Vec::with_capacity(1 << 16);
        collect(&mut out);
        assert_eq!(ours(&out), [BASE, BASE + 1, BASE + 2]);
        // SAFETY: linked above.
        let h = unsafe { unlink(at[1]) };
        assert_eq!(h.stack, BASE + 1);
        out.clear();
        collect(&mut out);
        assert_eq!(ours(&out), [BASE, BASE + 2]);
        // SAFETY: linked above, not yet unlinked.
        unsafe {
            unlink(at[0]);
            unlink(at[2]);
        }
        let mut none = Vec::new();
        let missed = collect(&mut none);
        assert_eq!(none.len(), 0, "no spare capacity: nothing pushed");
        assert_eq!(missed, collect(&mut Vec::with_capacity(0)));
    }
}
