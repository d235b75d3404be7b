//! Run-time sampling configuration, read with one relaxed load on every allocation.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::padded::Padded;

/// Mean bytes between heap samples by default (Go's `MemProfileRate`).
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

const RATE_BITS: u32 = 44;
const RATE_MASK: u64 = (1 << RATE_BITS) - 1;
/// Set in the configuration word once the sampled-block region is reserved, never cleared.
const REGION_BIT: u64 = 1 << 63;
const GENERATION_MASK: u64 = (1 << (63 - RATE_BITS)) - 1;

/// The words every allocator call reads, together on cache lines of their own: one address
/// to load (the allocator's code is inlined into the application's crate, where each static
/// of ours costs a GOT load of its own) and no neighbour written from another core.
pub(crate) struct Hot {
    /// `region << 63 | generation << 44 | rate`. A change of generation makes every thread
    /// redraw its countdown. `region` is set (for good) once the sampled-block region is
    /// reserved. The word is 0 exactly when sampling is off and no block was ever sampled:
    /// `dealloc` and `realloc` then hand every block on without the region check.
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

#[inline(always)]
pub(crate) fn rate(cfg: u64) -> u64 {
    cfg & RATE_MASK
}

/// Sets the mean bytes between samples: 0 turns sampling off, 1 records every allocation.
/// Values above 2^44 are clamped. Takes effect on each thread's next allocation.
///
/// Turning sampling on also readies the stack unwinder (module list, this thread's stack
/// bounds) here, so its one-time allocations fall before the caller's next measurement rather
/// than inside the first sampled allocation.
pub fn set_sample_rate(bytes: u64) {
    let bytes = bytes.min(RATE_MASK);
    if bytes != 0 {
        super::unwind::prepare();
    }
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    let generation = GENERATION.fetch_add(1, Relaxed).wrapping_add(1);
    let _ = HOT
        .config
        .fetch_update(Relaxed, Relaxed, |old| Some(word(old, generation, bytes)));
}

/// The configuration word that replaces `old` for a new `generation` and `rate`: the region
/// bit carried over; 0 when off without a region.
fn word(old: u64, generation: u64, rate: u64) -> u64 {
    let region = old & REGION_BIT;
    if rate == 0 && region == 0 {
        return 0;
    }
    region | (generation & GENERATION_MASK) << RATE_BITS | rate
}

/// Marks the configuration word before the sampled-block region is reserved, so no block of
/// the region can reach a `dealloc` that skips the region check (the word, loaded after the
/// block was allocated, has the bit: every later update keeps it).
pub(crate) fn mark_region() {
    HOT.config.fetch_or(REGION_BIT, Relaxed);
}

/// The current mean bytes between samples (0 = off, 1 = exact).
pub fn sample_rate() -> u64 {
    rate(load())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_a_region_is_the_zero_word() {
        // Off before any sample: 0, whatever the generation.
        assert_eq!(word(DEFAULT_SAMPLE_BYTES, 1, 0), 0);
        assert_eq!(word(0, 7, 0), 0);
        // On: generation and rate; a new generation always differs.
        let on = word(0, 2, 4096);
        assert_eq!(rate(on), 4096);
        assert_ne!(on, word(on, 3, 4096));
        // Once the region is there, off keeps the bit: not 0, rate 0.
        let off = word(on | REGION_BIT, 4, 0);
        assert_ne!(off, 0);
        assert_eq!(rate(off), 0);
        assert_eq!(off & REGION_BIT, REGION_BIT);
        // And every later word keeps it.
        assert_eq!(word(off, 5, 1) & REGION_BIT, REGION_BIT);
        assert_eq!(rate(word(off, 5, RATE_MASK)), RATE_MASK);
        // The generation wraps inside its bits, never into the region bit.
        assert_eq!(word(0, u64::MAX, 1) & REGION_BIT, 0);
    }
}
