//! `GET /debug/heap/stats` and `GET /debug/heap/history`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `GET /debug/heap/stats`: exact process-wide allocation figures and the sampler's own
/// state (also what `diag_core::heap::stats()` returns in process).
///
/// The allocation figures are the application's: what diag allocates for itself is counted
/// apart, in [`self_live_bytes`](Self::self_live_bytes).
///
/// The exact counters count while sampling is on (rate > 0): with sampling off `DiagAlloc` is
/// a pure pass-through and counts nothing, so after a period off the live figures miss (or
/// keep) the blocks that crossed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HeapStats {
    /// Bytes ever allocated through `DiagAlloc` (exact; realloc counts as free + alloc).
    pub allocated_bytes: u64,
    /// Allocations ever made through `DiagAlloc`.
    pub allocated_objects: u64,
    /// Bytes ever freed.
    pub freed_bytes: u64,
    /// Frees.
    pub freed_objects: u64,
    /// Bytes live now (allocated - freed).
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_objects: u64,
    /// Bytes live now that diag itself allocated (its symbolizer, encoders, debug server,
    /// history), counted apart: the figures above are the application's alone.
    pub self_live_bytes: u64,
    /// Bytes the symbolizer keeps between requests (part of `self_live_bytes`, plus any
    /// inflated debug sections), bounded by `DIAG_SYMBOL_CACHE_BYTES`.
    pub symbolizer_cache_bytes: u64,
    /// Mean bytes between samples (0 = off, 1 = exact).
    pub sample_rate: u64,
    /// Sampled blocks tracked now.
    pub tracked_blocks: u64,
    /// The cap on tracked blocks.
    pub max_tracked_blocks: u64,
    /// Distinct stacks held.
    pub stacks: u64,
    /// Samples that could not be tracked (cap reached, region full).
    pub dropped_samples: u64,
    /// Estimated bytes those dropped samples stood for.
    pub dropped_bytes: u64,
    /// Stacks that did not fit in the stack table (charged to one overflow entry).
    pub dropped_stacks: u64,
    /// Bytes of diag's sampled-block region in use (sampled blocks plus rounding).
    pub region_used_bytes: u64,
    /// Address space reserved for the region (not memory).
    pub region_reserved_bytes: u64,
    /// How the sampled stacks were unwound.
    pub unwind: UnwindStats,
}

/// Counts of stack captures by how they were taken (the `unwind` field of [`HeapStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct UnwindStats {
    /// The unwinder in use now, as `DIAG_HEAP_UNWINDER` names it (`cached`, `libgcc`).
    /// Borrowed in the service (building the stats allocates nothing), owned when read.
    pub unwinder: Cow<'static, str>,
    /// Stacks taken by the cached unwinder.
    pub cached: u64,
    /// Stacks the cached unwinder gave to libgcc (unknown code, a custom stack, an unwinding
    /// error, its caches busy).
    pub fallbacks: u64,
    /// Frames whose unwind step the cached unwinder found in its step tables.
    pub rule_hits: u64,
    /// Frames whose step it had to learn from the module's `.eh_frame` (a few thousand
    /// instructions each; the tables hold 1024 entries each, in sets of two).
    pub rule_misses: u64,
}

/// `GET /debug/heap/history`: the history's settings, size and own cost, then its points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HeapHistory {
    /// Settings, size and cost, as top-level fields of the JSON object.
    #[serde(flatten)]
    pub stats: HistoryStats,
    /// The points held, oldest first.
    pub points: Vec<HistoryPoint>,
}

impl HeapHistory {
    /// The listing of `stats` and `points`, as the endpoint builds it.
    pub fn new(stats: HistoryStats, points: Vec<HistoryPoint>) -> Self {
        Self { stats, points }
    }
}

/// The heap history's settings, size and own cost (also what
/// `diag_core::heap::history_stats()` returns in process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HistoryStats {
    /// Time between points in milliseconds (0: not recording).
    pub interval_ms: u64,
    /// The most points kept.
    pub max_points: usize,
    /// Points held now.
    pub points_held: usize,
    /// Changed-stack entries held (at most `diag_core::heap::MAX_HISTORY_ENTRIES`).
    pub entries: usize,
    /// Bytes the history holds.
    pub memory_bytes: usize,
    /// Points recorded since the start (including those dropped since).
    pub records: u64,
    /// CPU time the recorder spent on all of them, in nanoseconds.
    pub record_cpu_ns: u64,
    /// CPU time of the latest one, in nanoseconds.
    pub last_record_cpu_ns: u64,
}

/// One point of the heap history (also what `diag_core::heap::history_points()` lists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HistoryPoint {
    /// When it was recorded, nanoseconds since the Unix epoch (the service's clock); its
    /// profile is `GET /debug/pprof/heap?at=<time_nanos>`.
    pub time_nanos: i64,
    /// Estimated in-use bytes over all stacks.
    pub inuse_bytes: u64,
    /// Estimated in-use objects over all stacks.
    pub inuse_objects: u64,
    /// Exact live bytes (allocated - freed through `DiagAlloc`) at that time.
    pub live_bytes: u64,
    /// Exact live objects at that time.
    pub live_objects: u64,
    /// The sample rate at that time (mean bytes between samples; 0 off, 1 exact).
    pub sample_rate: u64,
}

impl HistoryPoint {
    /// A point recorded at `time_nanos` with every other figure 0 (for tests and tools
    /// that only need the time).
    pub fn at(time_nanos: i64) -> Self {
        Self {
            time_nanos,
            ..Self::default()
        }
    }
}
