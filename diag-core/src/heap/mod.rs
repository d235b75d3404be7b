//! The heap profiler: a sampling global allocator ([`DiagAlloc`](crate::DiagAlloc)), the
//! sampled-block region, the stack table, the heap profile built from them, and the history of
//! that profile over time. The per-thread state it samples and counts with (countdown, exact
//! counters, the [`IgnoreAllocs`](crate::IgnoreAllocs) guard) is `alloc_state`'s, on a floor
//! below `stack`, whose unwinder and symbolizer allocate under that guard.
//!
//! Sampling is Poisson by bytes, as in Go's runtime: each thread counts down an exponentially
//! distributed number of bytes (mean = the sample rate) and samples the allocation that crosses
//! zero, so an allocation of `s` bytes is sampled with probability `1 - e^(-s/rate)` and
//! weighted by the inverse of that. Estimates are unbiased for any size mix.

mod ages;
pub(crate) mod alloc;
mod capture;
mod config;
mod history;
mod history_ages;
pub(crate) mod labels;
mod leaks;
mod live;
mod region;
mod snapshot;
mod stacks;

pub use crate::defaults::{
    CAPTURE_MIN_INTERVAL, DEFAULT_CAPTURE_AT_PERCENT, DEFAULT_CAPTURE_MAX_FILES,
    DEFAULT_HISTORY_INTERVAL, DEFAULT_HISTORY_POINTS, DEFAULT_LEAK_ALPHA, DEFAULT_LEAK_MIN_RATE,
    DEFAULT_LEAK_WINDOW, DEFAULT_MAX_STACKS, DEFAULT_MAX_TRACKED_BLOCKS, DEFAULT_SAMPLE_BYTES,
    DEFAULT_SYMBOL_CACHE_BYTES, DEFAULT_SYMBOL_IDLE, MAX_FRAMES,
};
pub use crate::stack::unwind::{Unwinder, set_unwinder, stats as unwind_stats, unwinder};
pub use ages::{profile_ages, set_profile_ages};
pub use alloc::CHECKED_SIZE;
pub use capture::{CaptureStats, INDEX_FILE, capture_stats, set_capture};
pub use config::{sample_rate, set_sample_rate};
pub use history::{
    MAX_HISTORY_ENTRIES, MAX_HISTORY_POINTS, MIN_HISTORY_INTERVAL, history_interval,
    history_max_points, history_points, history_stats, set_history,
};
pub use history_ages::MAX_AGE_ENTRIES;
pub use leaks::{leak_checks, leaks, poll_label, set_leak_alarm};
pub use snapshot::{ALLOC_SPACE, INUSE_SPACE, is_installed, profile, profile_at, stats};

use std::sync::atomic::Ordering::Relaxed;

/// Sets the cap on sampled blocks tracked at once; samples past it are dropped and counted.
pub fn set_max_tracked_blocks(n: usize) {
    alloc::MAX_TRACKED.store(n.max(1), Relaxed);
}

/// Sets the cap on distinct stacks. The table is sized on the first sample: before it, any cap
/// works; after it, the cap can only be lowered (returns false, and caps at the table's size,
/// if `n` is larger).
pub fn set_max_stacks(n: usize) -> bool {
    let n = n.max(16);
    stacks::MAX_STACKS.store(n, Relaxed);
    let capacity = stacks::capacity();
    capacity == 0 || n <= capacity
}
