//! Per-route request counts and latency histograms, recorded without a lock or a shared cache
//! line per request, and exposed through `prometheus_client`'s encoder.
//!
//! `prometheus_client`'s `Histogram` takes a mutex per observation and its `Counter` is one
//! shared atomic: with every worker of the runtime recording the same route, those cache lines
//! bounce between cores on every request (perf put the histogram alone at ~0.15 µs per request
//! on a 2-worker server). Here each (route, method) keeps [`SHARDS`] cache-aligned copies of its
//! bucket counts, latency sum and status counts; a thread always writes the same shard
//! (threads are spread round-robin over the shards), and a scrape adds the shards up. The text
//! is still written by `prometheus_client` (`encode_counter`, `encode_histogram`): no
//! hand-written exposition.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::registry::Unit;

use super::{LATENCY_BUCKETS, METHODS, RouteLabels, StatusLabels};

/// Copies of each route's counters; threads past this many share them (still correct: the
/// counters are atomic, only contention comes back).
pub(crate) const SHARDS: usize = 8;
/// Status codes per route and method counted in lock-free slots; rarer ones past these go to
/// a locked list.
const STATUS_SLOTS: usize = 8;
/// The latency buckets plus `+Inf`.
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

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
struct Shard {
    /// Requests per latency bucket (not cumulative; the last one is `+Inf`).
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    /// Requests per status slot (see [`RequestStats::codes`]).
    statuses: [AtomicU64; STATUS_SLOTS],
}

impl Shard {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
            statuses: [const { AtomicU64::new(0) }; STATUS_SLOTS],
        }
    }
}

/// Counters of one route and method.
pub(crate) struct RequestStats {
    /// The status code each slot counts (0: unclaimed); written once per slot, then read-only.
    codes: [AtomicU16; STATUS_SLOTS],
    /// Counts of status codes that found no free slot.
    overflow: Mutex<Vec<(u16, u64)>>,
    shards: Box<[Shard; SHARDS]>,
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

/// A snapshot of one route and method, the shards added up.
pub(crate) struct Totals {
    /// Non-cumulative counts per bucket, `+Inf` last.
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) sum_seconds: f64,
    /// `(status, requests)`, by status code.
    pub(crate) statuses: Vec<(u16, u64)>,
}

impl RequestStats {
    pub(crate) fn new() -> Self {
        Self {
            codes: [const { AtomicU16::new(0) }; STATUS_SLOTS],
            overflow: Mutex::new(Vec::new()),
            shards: Box::new([const { Shard::new() }; SHARDS]),
        }
    }

    /// Records one request that answered `status` after `elapsed`.
    #[inline]
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[shard_index()];
        // Prometheus buckets are "less than or equal": the first bound >= ns.
        let b = BOUNDS_NS.partition_point(|&bound| bound < ns);
        shard.buckets[b].fetch_add(1, Relaxed);
        shard.sum_ns.fetch_add(ns, Relaxed);
        match self.status_slot(status) {
            Some(i) => {
                shard.statuses[i].fetch_add(1, Relaxed);
            }
            None => self.record_overflow(status),
        }
    }

    #[inline]
    fn status_slot(&self, status: u16) -> Option<usize> {
        for (i, code) in self.codes.iter().enumerate() {
            match code.load(Relaxed) {
                c if c == status => return Some(i),
                0 => match code.compare_exchange(0, status, Relaxed, Relaxed) {
                    Ok(_) => return Some(i),
                    Err(c) if c == status => return Some(i),
                    Err(_) => {}
                },
                _ => {}
            }
        }
        None
    }

    #[cold]
    fn record_overflow(&self, status: u16) {
        let mut list = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
        match list.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => list.push((status, 1)),
        }
    }

    /// The shards added up.
    pub(crate) fn totals(&self) -> Totals {
        let mut buckets = [0u64; BUCKETS];
        let mut sum_ns = 0u64;
        let mut per_slot = [0u64; STATUS_SLOTS];
        for shard in self.shards.iter() {
            for (t, b) in buckets.iter_mut().zip(&shard.buckets) {
                *t += b.load(Relaxed);
            }
            sum_ns = sum_ns.saturating_add(shard.sum_ns.load(Relaxed));
            for (t, s) in per_slot.iter_mut().zip(&shard.statuses) {
                *t += s.load(Relaxed);
            }
        }
        let mut statuses: Vec<(u16, u64)> = self
            .codes
            .iter()
            .zip(per_slot)
            .filter_map(|(code, n)| match code.load(Relaxed) {
                0 => None,
                c => Some((c, n)),
            })
            .collect();
        statuses.extend(
            self.overflow
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied(),
        );
        statuses.sort_unstable();
        Totals {
            buckets,
            sum_seconds: sum_ns as f64 / 1e9,
            statuses,
        }
    }
}

/// Writes `http_requests_total` and `http_request_duration_seconds` for every route.
#[derive(Debug)]
pub(crate) struct RequestCollector;

impl prometheus_client::collector::Collector for RequestCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let _ignore = crate::heap::IgnoreAllocs::new();
        // (labels, totals) for every route and method that has recorded a request.
        let mut rows: Vec<(RouteLabels, Totals)> = Vec::new();
        for entry in super::global().route_entries() {
            for (i, m) in entry.methods.iter().enumerate() {
                if let Some(stats) = m.get() {
                    let labels = RouteLabels {
                        route: entry.route.clone(),
                        method: METHODS[i],
                    };
                    rows.push((labels, stats.totals()));
                }
            }
        }
        rows.sort_by(|a, b| (&*a.0.route, a.0.method).cmp(&(&*b.0.route, b.0.method)));
        {
            let mut family = enc.encode_descriptor(
                "http_requests",
                "HTTP requests answered, by matched route template, method and status code",
                None,
                MetricType::Counter,
            )?;
            for (labels, totals) in &rows {
                for &(status, n) in &totals.statuses {
                    let labels = StatusLabels {
                        route: labels.route.clone(),
                        method: labels.method,
                        status,
                    };
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, u64, f64>(&n, None)?;
                }
            }
        }
        let mut family = enc.encode_descriptor(
            "http_request_duration",
            "Time from receiving a request to its response headers, by matched route template and method",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (labels, totals) in &rows {
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(totals.buckets)
                .collect();
            let count = totals.buckets.iter().sum();
            family.encode_family(labels)?.encode_histogram(
                totals.sum_seconds,
                count,
                &buckets,
                None::<&std::collections::HashMap<usize, Exemplar<NoLabelSet, f64>>>,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_less_or_equal_and_shards_add_up() {
        let s = RequestStats::new();
        // Exactly on a bound goes into that bucket; just above goes into the next.
        s.record(200, Duration::from_micros(500));
        s.record(200, Duration::from_nanos(500_001));
        s.record(404, Duration::from_secs(11));
        std::thread::scope(|scope| {
            for _ in 0..SHARDS + 3 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        s.record(200, Duration::from_millis(3));
                    }
                });
            }
        });
        let t = s.totals();
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[1], 1);
        assert_eq!(t.buckets[BUCKETS - 1], 1, "11 s is past the last bound");
        assert_eq!(t.buckets[3], (SHARDS as u64 + 3) * 1000, "3 ms: le 0.005");
        assert_eq!(
            t.statuses,
            vec![(200, 2 + (SHARDS as u64 + 3) * 1000), (404, 1)]
        );
        let expect = 0.0005 + 0.000500001 + 11.0 + (SHARDS as f64 + 3.0) * 3.0;
        assert!((t.sum_seconds - expect).abs() < 1e-6, "{}", t.sum_seconds);
    }

    #[test]
    fn statuses_past_the_slots_are_still_counted() {
        let s = RequestStats::new();
        for code in 200..200 + STATUS_SLOTS as u16 + 4 {
            s.record(code, Duration::from_millis(1));
            s.record(code, Duration::from_millis(1));
        }
        let t = s.totals();
        assert_eq!(t.statuses.len(), STATUS_SLOTS + 4);
        assert!(t.statuses.iter().all(|&(_, n)| n == 2), "{:?}", t.statuses);
    }
}
