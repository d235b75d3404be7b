//! Latency histograms recorded without a lock or a shared cache line per observation; the
//! common core of the route histograms ([`requests`](super::requests)) and the named
//! operation timings ([`timed`](super::timed)).
//!
//! `prometheus_client`'s `Histogram` takes a mutex per observation: with every worker of the
//! runtime recording the same series, that lock's cache line bounces between cores each time
//! (perf put it at ~0.15 µs per request on a 2-worker server). Here a series keeps
//! [`SHARDS`] cache-aligned copies of its bucket counts and sum; a thread always writes the
//! same shard (threads are spread round-robin), and a scrape adds the shards up. A shard can
//! carry `N` extra counters on the same cache lines (the route series count status codes
//! there). The text is still written by `prometheus_client` (`encode_histogram`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;

use super::LATENCY_BUCKETS;

/// Copies of each series' counters; threads past this many share them (still correct: the
/// counters are atomic, only contention comes back).
pub(crate) const SHARDS: usize = 8;
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
    pub(crate) extra: [AtomicU64; N],
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
    shards: Box<[Shard<N>; SHARDS]>,
}

/// This thread's shard, assigned round-robin on first use.
#[inline]
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    MINE.try_with(|m| {
        let mut i = m.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed) % SHARDS;
            m.set(i);
        }
        i
    })
    // During thread teardown: any shard is correct.
    .unwrap_or(0)
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

impl<const N: usize> Sharded<N> {
    pub(crate) fn new() -> Self {
        Self {
            shards: Box::new([const { Shard::new() }; SHARDS]),
        }
    }

    /// Records one observation of `elapsed` and returns the shard it went to, for the
    /// caller's extra counters.
    #[inline]
    pub(crate) fn observe(&self, elapsed: Duration) -> &Shard<N> {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[shard_index()];
        // Prometheus buckets are "less than or equal": the first bound >= ns.
        let b = BOUNDS_NS.partition_point(|&bound| bound < ns);
        shard.buckets[b].fetch_add(1, Relaxed);
        shard.sum_ns.fetch_add(ns, Relaxed);
        shard
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
        s.observe(Duration::from_micros(500));
        s.observe(Duration::from_nanos(500_001));
        s.observe(Duration::from_secs(11));
        std::thread::scope(|scope| {
            for _ in 0..SHARDS + 3 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        s.observe(Duration::from_millis(3)).extra[0].fetch_add(2, Relaxed);
                    }
                });
            }
        });
        let t = s.totals();
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[1], 1);
        assert_eq!(t.buckets[BUCKETS - 1], 1, "11 s is past the last bound");
        assert_eq!(t.buckets[3], (SHARDS as u64 + 3) * 1000, "3 ms: le 0.005");
        assert_eq!(t.extra[0], (SHARDS as u64 + 3) * 2000);
        let expect = 0.0005 + 0.000500001 + 11.0 + (SHARDS as f64 + 3.0) * 3.0;
        assert!((t.sum_seconds - expect).abs() < 1e-6, "{}", t.sum_seconds);
    }
}
