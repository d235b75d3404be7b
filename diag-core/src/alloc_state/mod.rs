//! The allocator's state that code on every floor touches: the configuration word and region
//! bounds every allocator call reads, each thread's sampling countdown and counter slot, the
//! exact counters, the drop counters, and [`IgnoreAllocs`], the guard that makes a thread's
//! allocations diag's own.
//!
//! The guard lives here, not in `heap`, because the stack code, the CPU sampler, the watchdog
//! and the debug server all allocate under it, and because it switches fields of the same
//! thread-local that the allocator's fast path reads in one access (a guard with a
//! thread-local of its own would cost every allocation a second one). What the allocator does
//! with this state (sampling, the region, the stack table, profiles) is `heap`'s.

mod local;
mod registry;
mod slots;
pub(crate) mod thread;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::defaults::DEFAULT_SAMPLE_BYTES;
use crate::padded::Padded;

pub(crate) use registry::{configuration_changed, totals};
pub(crate) use slots::{Totals, own_totals};
pub use thread::IgnoreAllocs;

/// This thread's own (diag) counters as (bytes allocated, bytes freed), while it runs under
/// [`IgnoreAllocs`] with a slot of its own and sampling on; `None` otherwise.
pub(crate) fn own_thread_bytes() -> Option<(u64, u64)> {
    thread::thread_totals(true).map(|t| (t.alloc_bytes, t.free_bytes))
}

/// This thread's application counters, while sampling is on and it has a slot of its own.
pub(crate) fn app_thread_totals() -> Option<Totals> {
    thread::thread_totals(false)
}
#[cfg(feature = "server")]
pub(crate) use thread::{ignore_this_thread, thread_in_sampler};

pub(crate) const RATE_BITS: u32 = 44;
pub(crate) const RATE_MASK: u64 = (1 << RATE_BITS) - 1;

/// The words every allocator call reads, together on cache lines of their own: one address
/// to load (the allocator's code is inlined into the application's crate, where each static
/// of ours costs a GOT load of its own) and no neighbour written from another core.
pub(crate) struct Hot {
    /// `generation << 44 | rate`. A change of generation makes every thread redraw its
    /// countdown.
    pub(crate) config: AtomicU64,
    /// Start and length of the sampled-block region (see `heap::region`); 0 until the first
    /// sample reserves it.
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

/// The configuration word, sequentially consistent with `heap::set_sample_rate`'s change
/// (the sampler's re-check before a sample; see `thread::enter_sample`).
pub(crate) fn load_fresh() -> u64 {
    HOT.config.load(std::sync::atomic::Ordering::SeqCst)
}

/// The sample rate of configuration word `cfg` (0: sampling off).
#[inline(always)]
pub(crate) fn rate(cfg: u64) -> u64 {
    cfg & RATE_MASK
}

/// Samples that could not be tracked (cap reached, region full, over-aligned).
pub(crate) static DROPPED_SAMPLES: AtomicU64 = AtomicU64::new(0);
/// The estimated bytes those dropped samples stood for.
pub(crate) static DROPPED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Samples whose stack did not fit in the stack table (counted under its overflow entry).
pub(crate) static DROPPED_STACKS: AtomicU64 = AtomicU64::new(0);
