//! The bounded table of distinct stacks.
//!
//! A stack is captured only for a sampled allocation, as raw return addresses into a buffer on
//! the stack ([`unwind`](super::unwind)). The table interns it and holds the per-stack
//! weighted counters. The table's storage is its own anonymous
//! mapping, sized once, so it never calls the global allocator; when it is full, further
//! stacks are charged to a single overflow entry and counted.

use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::*};

use super::labels::Labels;

use crate::alloc_state::DROPPED_STACKS;
use crate::defaults::{DEFAULT_MAX_STACKS, MAX_FRAMES};

/// Fixed-point scale for weighted object counts.
pub(crate) const FP: f64 = 1024.0;

/// One distinct stack with its labels, and its counters.
#[repr(C)]
pub(crate) struct Entry {
    hash: u64,
    pub(crate) depth: usize,
    /// The labels the stack was sampled under (the key is stack and labels together).
    pub(crate) labels: Labels,
    pub(crate) alloc_objects_fp: AtomicU64,
    pub(crate) alloc_bytes: AtomicU64,
    pub(crate) inuse_objects_fp: AtomicU64,
    pub(crate) inuse_bytes: AtomicU64,
    pub(crate) frames: [usize; MAX_FRAMES],
}

impl Entry {
    /// The four counters: alloc objects (fixed point), alloc bytes, in-use objects (fixed
    /// point), in-use bytes.
    pub(crate) fn counters(&self) -> [u64; 4] {
        [
            self.alloc_objects_fp.load(Relaxed),
            self.alloc_bytes.load(Relaxed),
            self.inuse_objects_fp.load(Relaxed),
            self.inuse_bytes.load(Relaxed),
        ]
    }
}

struct Table {
    entries: *mut Entry,
    index: *mut u32,
    index_mask: usize,
    capacity: usize,
}

// SAFETY: the pointers refer to a process-lifetime mapping; writes happen under the mutex and
// published entries are only read.
unsafe impl Send for Table {}

static TABLE: Mutex<Table> = Mutex::new(Table {
    entries: ptr::null_mut(),
    index: ptr::null_mut(),
    index_mask: 0,
    capacity: 0,
});
/// Entries published so far (entry 0 is the overflow entry).
static LEN: AtomicUsize = AtomicUsize::new(0);
static ENTRIES: AtomicUsize = AtomicUsize::new(0);
static STATE: AtomicU8 = AtomicU8::new(0);
/// The cap to use when the table is created (set by the builder before the first sample).
pub(crate) static MAX_STACKS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_STACKS);

fn hash(frames: &[usize], labels: Labels) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ ((labels.poll as u64) << 16 | labels.thread as u64);
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    h | 1
}

fn create(t: &mut Table) -> bool {
    let capacity = MAX_STACKS.load(Relaxed).max(16);
    let index_len = (capacity * 2).next_power_of_two();
    let bytes_entries = capacity * std::mem::size_of::<Entry>();
    let bytes_index = index_len * std::mem::size_of::<u32>();
    // SAFETY: a fresh anonymous mapping, zero-filled; an all-zero Entry is a valid empty entry.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes_entries + bytes_index,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    t.entries = p.cast();
    // SAFETY: the index follows the entries inside the same mapping.
    t.index = unsafe { p.cast::<u8>().add(bytes_entries) }.cast();
    t.index_mask = index_len - 1;
    t.capacity = capacity;
    ENTRIES.store(p as usize, Release);
    // SAFETY: entry 0 is inside the mapping and not yet published.
    unsafe { (*t.entries).labels = Labels::NONE };
    LEN.store(1, Release); // entry 0: overflow, depth 0, no labels
    true
}

/// Interns `frames` sampled under `labels`; returns the entry id (0 = overflow), or None if
/// the table cannot exist.
pub(crate) fn intern(frames: &[usize], labels: Labels) -> Option<u32> {
    if STATE.load(Relaxed) == 2 {
        return None;
    }
    let h = hash(frames, labels);
    let mut t = TABLE.lock().ok()?;
    if t.entries.is_null() && !create(&mut t) {
        STATE.store(2, Relaxed);
        return None;
    }
    let mut i = h as usize & t.index_mask;
    loop {
        // SAFETY: i is masked into the index, which has index_mask + 1 slots.
        let slot = unsafe { &mut *t.index.add(i) };
        if *slot == 0 {
            break;
        }
        // SAFETY: index slots hold ids of published entries (< LEN <= capacity).
        let e = unsafe { &*t.entries.add(*slot as usize) };
        if e.hash == h && e.labels == labels && e.frames[..e.depth] == *frames {
            return Some(*slot);
        }
        i = (i + 1) & t.index_mask;
    }
    let id = LEN.load(Relaxed);
    if id >= t.capacity.min(MAX_STACKS.load(Relaxed)) {
        DROPPED_STACKS.fetch_add(1, Relaxed);
        return Some(0);
    }
    // SAFETY: `id` < capacity, and no reader looks at entries at or past LEN.
    unsafe {
        let e = &mut *t.entries.add(id);
        e.hash = h;
        e.depth = frames.len();
        e.labels = labels;
        e.frames[..frames.len()].copy_from_slice(frames);
        *t.index.add(i) = id as u32;
    }
    LEN.store(id + 1, Release);
    Some(id as u32)
}

/// The entry with `id`, which [`intern`] returned earlier.
pub(crate) fn entry(id: u32) -> &'static Entry {
    let base = ENTRIES.load(Acquire) as *const Entry;
    // SAFETY: ids come from `intern`, so the table exists and the entry is published; the
    // mapping is never unmapped.
    unsafe { &*base.add(id as usize) }
}

/// All published entries with their ids.
pub(crate) fn entries() -> impl Iterator<Item = (u32, &'static Entry)> {
    let len = LEN.load(Acquire);
    (0..len as u32).map(|id| (id, entry(id)))
}

/// The table's capacity, fixed when it is created (0 before the first sample).
pub(crate) fn capacity() -> usize {
    TABLE.lock().map(|t| t.capacity).unwrap_or(0)
}

/// Distinct stacks held (including the overflow entry once the table exists).
pub(crate) fn len() -> usize {
    LEN.load(Relaxed)
}
