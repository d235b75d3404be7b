//! Run-time sampling configuration: the rate, kept in the configuration word that every
//! allocator call reads with one relaxed load (`alloc_state::HOT`).

use crate::alloc_state::{HOT, RATE_BITS, RATE_MASK};
pub(crate) use crate::alloc_state::{load, rate};

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
    crate::alloc_state::configuration_changed();
    crate::alloc_state::thread::wait_for_samples(new(old), std::time::Duration::from_secs(1));
}

/// The current mean bytes between samples (0 = off, 1 = exact).
pub fn sample_rate() -> u64 {
    rate(load())
}
