//! Run-time sampling configuration, read with one relaxed load on every allocation.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::padded::Padded;

/// Mean bytes between heap samples by default (Go's `MemProfileRate`).
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

const RATE_BITS: u32 = 44;
const RATE_MASK: u64 = (1 << RATE_BITS) - 1;

/// The words every allocator call reads, together on cache lines of their own: one address
/// to load (the allocator's code is inlined into the application's crate, where each static
/// of ours costs a GOT load of its own) and no neighbour written from another core.
pub(crate) struct Hot {
    /// `generation << 44 | rate`. A change of generation makes every thread redraw its
    /// countdown.
    pub(crate) config: AtomicU64,
    /// Start and length of the sampled-block region (see [`region`](super::region)); 0 until
    /// the first sample reserves it.
    pub(crate) region_base: AtomicUsize,
    pub(crate) region_len: AtomicUsize,
}

pub(crate) static HOT: Padded<Hot> = Padded(Hot {
    config: AtomicU64::new(DEFAULT_SAMPLE_BYTES),
    region_base: AtomicUsize::new(0),
    region_len: AtomicUsize::new(0),
});

/// The configuration word (see [`Hot::config`]).
#[inline(always)]
pub(crate) fn load() -> u64 {
    HOT.config.load(Relaxed)
}

/// The configuration word, sequentially consistent with [`set_sample_rate`]'s change (the
/// sampler's re-check before a sample; see `thread::enter_sample`).
pub(crate) fn load_fresh() -> u64 {
    HOT.config.load(std::sync::atomic::Ordering::SeqCst)
}

#[inline(always)]
pub(crate) fn rate(cfg: u64) -> u64 {
    cfg & RATE_MASK
}

/// Sets the mean bytes between samples: 0 turns sampling off, 1 records every allocation.
/// Values above 2^44 are clamped. Takes effect on each thread's next allocation, and returns
/// once no thread is still inside a sample decided under the previous rate (a sample takes
/// microseconds; the wait gives up after a second, for a thread stopped mid-sample): after
/// `set_sample_rate(0)`, no sampled block appears and `tracked_blocks` only falls. (A thread
/// may still be counting an allocation it began a few nanoseconds before the change.)
///
/// Turning sampling on also readies the stack unwinder (module list, this thread's stack
/// bounds) here, so its one-time allocations fall before the caller's next measurement rather
/// than inside the first sampled allocation.
pub fn set_sample_rate(bytes: u64) {
    let bytes = bytes.min(RATE_MASK);
    if bytes != 0 {
        crate::stack::unwind::prepare();
    }
    let new = |old: u64| {
        let generation = (old >> RATE_BITS).wrapping_add(1) & ((1 << (64 - RATE_BITS)) - 1);
        generation << RATE_BITS | bytes
    };
    use std::sync::atomic::Ordering::SeqCst;
    let old = HOT
        .config
        .fetch_update(SeqCst, SeqCst, |old| Some(new(old)))
        .unwrap_or_else(|old| old);
    super::thread::wait_for_samples(new(old), std::time::Duration::from_secs(1));
}

/// The current mean bytes between samples (0 = off, 1 = exact).
pub fn sample_rate() -> u64 {
    rate(load())
}
