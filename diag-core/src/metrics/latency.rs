//! Latency histograms recorded without a lock or a shared cache line per observation; the
//! common core of the route histograms ([`requests`](super::requests)) and the named
//! operation timings ([`timed`](super::timed)).
//!
//! `prometheus_client`'s `Histogram` takes a mutex per observation: with every worker of the
//! runtime recording the same series, that lock's cache line bounces between cores each time
//! (perf put it at ~0.15 µs per request on a 2-worker server). Here a series keeps
//! [`SHARDS`] cache-aligned copies of its bucket counts and sum, plus one shared copy. The
//! first [`SHARDS`] threads that record each own one shard outright (claimed on first use,
//! given back at thread exit) and write it with a plain load and store, no locked
//! instruction; threads past them share the last copy with atomic adds. A scrape adds the
//! copies up. A shard can carry `N` extra counters on the same cache lines (the route series
//! count status codes there). The text is still written by `prometheus_client`
//! (`encode_histogram`).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::registry::Unit;

use super::LATENCY_BUCKETS;

/// Copies of each series' counters owned by one thread each; threads past this many share
/// one more copy (still correct, with atomic adds: only contention comes back).
pub(crate) const SHARDS: usize = 8;
/// Index of the shared copy.
const SHARED: usize = SHARDS;
/// The latency buckets plus `+Inf`.
pub(crate) const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// Upper bounds of the latency buckets in nanoseconds.
const BOUNDS_NS: [u64; LATENCY_BUCKETS.len()] = {
    let mut out = [0u64; LATENCY_BUCKETS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// One thread group's copy of the counters, on its own cache lines.
#[repr(align(128))]
pub(crate) struct Shard<const N: usize> {
    /// Observations per latency bucket (not cumulative; the last one is `+Inf`).
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    /// The series' own extra counters, written by whoever records into this shard.
    extra: [AtomicU64; N],
}

impl<const N: usize> Shard<N> {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
            extra: [const { AtomicU64::new(0) }; N],
        }
    }
}

/// A latency histogram sharded by thread, with `N` extra counters per shard.
pub(crate) struct Sharded<const N: usize> {
    shards: Box<[Shard<N>; SHARDS + 1]>,
}

/// Which owned shard index each thread holds.
static CLAIMED: [AtomicBool; SHARDS] = [const { AtomicBool::new(false) }; SHARDS];
const UNSET: usize = usize::MAX;

thread_local! {
    /// This thread's shard index: an owned one (< SHARDS), SHARED, or UNSET.
    static MINE: Cell<usize> = const { Cell::new(UNSET) };
    /// Gives an owned index back when the thread exits.
    static RELEASE: GiveBack = const { GiveBack };
}

struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        // Records made after this (from other thread-local destructors) use the shared copy.
        let i = MINE.with(|m| m.replace(SHARED));
        if let Some(c) = CLAIMED.get(i) {
            // Release: the next owner sees every count this thread stored.
            c.store(false, Release);
        }
    }
}

/// This thread's shard index, claimed on first use.
#[inline]
fn shard_index() -> usize {
    let i = MINE.with(Cell::get);
    if i != UNSET { i } else { claim() }
}

#[cold]
#[inline(never)]
fn claim() -> usize {
    let mut mine = SHARED;
    for (i, c) in CLAIMED.iter().enumerate() {
        if !c.load(Relaxed) && c.compare_exchange(false, true, Acquire, Relaxed).is_ok() {
            mine = i;
            break;
        }
    }
    // The index is given back by RELEASE's destructor; if it cannot be registered (the thread
    // is exiting), do not keep the index.
    if mine != SHARED && RELEASE.try_with(|_| ()).is_err() {
        CLAIMED[mine].store(false, Release);
        mine = SHARED;
    }
    MINE.with(|m| m.set(mine));
    mine
}

/// Adds `v` to a counter: a plain load and store when this thread owns the shard, an atomic
/// add on the shared one.
#[inline(always)]
fn add(counter: &AtomicU64, v: u64, owned: bool) {
    if owned {
        counter.store(counter.load(Relaxed).wrapping_add(v), Relaxed);
    } else {
        counter.fetch_add(v, Relaxed);
    }
}

/// A snapshot of one series, the shards added up.
pub(crate) struct Totals<const N: usize> {
    /// Non-cumulative counts per bucket, `+Inf` last.
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) sum_seconds: f64,
    pub(crate) extra: [u64; N],
}

impl<const N: usize> Totals<N> {
    /// Writes this histogram through `prometheus_client`'s encoder.
    pub(crate) fn encode(&self, mut enc: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets)
            .collect();
        let count = self.buckets.iter().sum();
        enc.encode_histogram(
            self.sum_seconds,
            count,
            &buckets,
            None::<&std::collections::HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }
}

/// Writes one histogram family in seconds, `name` with `help`, a series per `(labels, totals)`.
pub(crate) fn encode_family<'a, L: EncodeLabelSet + 'a, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (&'a L, &'a Totals<N>)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, totals) in rows {
        totals.encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl<const N: usize> Sharded<N> {
    pub(crate) fn new() -> Self {
        Self {
            shards: Box::new([const { Shard::new() }; SHARDS + 1]),
        }
    }

    /// Records one observation of `elapsed`, and one more count on extra counter `extra` if
    /// given.
    #[inline]
    pub(crate) fn observe(&self, elapsed: Duration, extra: Option<usize>) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = shard_index();
        let owned = i != SHARED;
        let shard = &self.shards[i.min(SHARED)];
        // Prometheus buckets are "less than or equal": the first bound >= ns. Fast requests,
        // where a few nanoseconds matter, end in the first bucket.
        let b = if ns <= BOUNDS_NS[0] {
            0
        } else {
            BOUNDS_NS.partition_point(|&bound| bound < ns)
        };
        add(&shard.buckets[b], 1, owned);
        add(&shard.sum_ns, ns, owned);
        if let Some(x) = extra.and_then(|x| shard.extra.get(x)) {
            add(x, 1, owned);
        }
    }

    /// Counts one event in extra counter `extra` alone (no latency observed): for series whose
    /// histogram nobody reads.
    #[inline]
    pub(crate) fn count(&self, extra: usize) {
        let i = shard_index();
        let shard = &self.shards[i.min(SHARED)];
        if let Some(x) = shard.extra.get(extra) {
            add(x, 1, i != SHARED);
        }
    }

    /// The shards added up.
    pub(crate) fn totals(&self) -> Totals<N> {
        let mut buckets = [0u64; BUCKETS];
        let mut sum_ns = 0u64;
        let mut extra = [0u64; N];
        for shard in self.shards.iter() {
            for (t, b) in buckets.iter_mut().zip(&shard.buckets) {
                *t += b.load(Relaxed);
            }
            sum_ns = sum_ns.saturating_add(shard.sum_ns.load(Relaxed));
            for (t, s) in extra.iter_mut().zip(&shard.extra) {
                *t += s.load(Relaxed);
            }
        }
        Totals {
            buckets,
            sum_seconds: sum_ns as f64 / 1e9,
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_less_or_equal_and_shards_add_up() {
        let s = Sharded::<1>::new();
        // Exactly on a bound goes into that bucket; just above goes into the next.
        s.observe(Duration::from_micros(500), None);
        s.observe(Duration::from_nanos(500_001), None);
        s.observe(Duration::from_secs(11), None);
        // More threads at once than owned shards (some share the last copy), and then more
        // threads again after they exited (owned shards are handed on).
        for _ in 0..2 {
            std::thread::scope(|scope| {
                for _ in 0..SHARDS + 3 {
                    scope.spawn(|| {
                        for _ in 0..500 {
                            s.observe(Duration::from_millis(3), Some(0));
                            s.observe(Duration::from_millis(3), Some(0));
                        }
                    });
                }
            });
        }
        let t = s.totals();
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[1], 1);
        assert_eq!(t.buckets[BUCKETS - 1], 1, "11 s is past the last bound");
        let n = 2 * (SHARDS as u64 + 3) * 1000;
        assert_eq!(t.buckets[3], n, "3 ms: le 0.005");
        assert_eq!(t.extra[0], n);
        let expect = 0.0005 + 0.000500001 + 11.0 + n as f64 * 0.003;
        assert!((t.sum_seconds - expect).abs() < 1e-6, "{}", t.sum_seconds);
    }
}
