//! Per-route request counts and latency histograms, recorded without a lock or a shared cache
//! line per request, and exposed through `prometheus_client`'s encoder.
//!
//! Each (route, method) is a [`Sharded`] latency histogram whose shards also hold the counts
//! of its status codes, so one request writes only its own thread's cache lines
//! (`prometheus_client`'s `Counter` would be one shared atomic). The text is still written by
//! `prometheus_client` (`encode_counter`, `encode_histogram`): no hand-written exposition.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::latency::{self, Sharded, Totals as LatencyTotals};
use super::{METHODS, RouteLabels, StatusLabels};

/// Status codes per route and method counted in lock-free slots (in each latency shard);
/// rarer ones past these go to a locked list.
const STATUS_SLOTS: usize = 8;

/// Counters of one route and method.
pub(crate) struct RequestStats {
    /// The status code each slot counts (0: unclaimed); written once per slot, then read-only.
    codes: [AtomicU16; STATUS_SLOTS],
    /// Counts of status codes that found no free slot.
    overflow: Mutex<Vec<(u16, u64)>>,
    /// Latencies, with the status slots' counts beside them in each shard.
    latency: Sharded<STATUS_SLOTS>,
}

/// A snapshot of one route and method, the shards added up.
pub(crate) struct Totals {
    pub(crate) latency: LatencyTotals<STATUS_SLOTS>,
    /// `(status, requests)`, by status code.
    pub(crate) statuses: Vec<(u16, u64)>,
}

impl RequestStats {
    pub(crate) fn new() -> Self {
        Self {
            codes: [const { AtomicU16::new(0) }; STATUS_SLOTS],
            overflow: Mutex::new(Vec::new()),
            latency: Sharded::new(),
        }
    }

    /// Records one request that answered `status` after `elapsed`.
    #[inline]
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        let slot = self.status_slot(status);
        self.latency.observe(elapsed, slot);
        if slot.is_none() {
            self.record_overflow(status);
        }
    }

    /// Counts one answer with `status`, without its latency (the gRPC counts: their calls'
    /// latency is in the HTTP histogram already).
    #[inline]
    pub(crate) fn count(&self, status: u16) {
        match self.status_slot(status) {
            Some(slot) => self.latency.count(slot),
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
        let latency = self.latency.totals();
        let mut statuses: Vec<(u16, u64)> = self
            .codes
            .iter()
            .zip(latency.extra)
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
        Totals { latency, statuses }
    }
}

/// Writes `http_requests_total` and `http_request_duration_seconds` for every route.
#[derive(Debug)]
pub(crate) struct RequestCollector;

impl prometheus_client::collector::Collector for RequestCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        // (labels, totals) for every route and method that has recorded a request.
        let mut rows: Vec<(RouteLabels, Totals)> = Vec::new();
        // (route, code label, calls) of gRPC calls.
        let mut grpc: Vec<GrpcLabels> = Vec::new();
        let mut grpc_counts: Vec<u64> = Vec::new();
        for entry in super::global().route_entries() {
            if let Some(stats) = entry.grpc.get() {
                for (key, n) in stats.totals().statuses {
                    grpc.push(GrpcLabels {
                        route: entry.route.clone(),
                        code: super::grpc_code_label(key),
                    });
                    grpc_counts.push(n);
                }
            }
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
        latency::encode_family(
            &mut enc,
            "http_request_duration",
            "Time from receiving a request to its response headers (gRPC: to the end of the response body), by route and method",
            rows.iter()
                .map(|(labels, totals)| (labels, &totals.latency)),
        )?;
        {
            let mut order: Vec<usize> = (0..grpc.len()).collect();
            order.sort_by(|&a, &b| {
                (&*grpc[a].route, grpc[a].code).cmp(&(&*grpc[b].route, grpc[b].code))
            });
            let mut family = enc.encode_descriptor(
                "grpc_requests",
                "gRPC calls answered, by method path and grpc-status code (missing: no grpc-status; errors: code != 0)",
                None,
                MetricType::Counter,
            )?;
            for i in order {
                family
                    .encode_family(&grpc[i])?
                    .encode_counter::<NoLabelSet, u64, f64>(&grpc_counts[i], None)?;
            }
        }
        enc.encode_descriptor(
            "diag_route_names_folded",
            "Requests recorded under route=\"(other)\" because the route cap was reached",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, u64, f64>(&super::ROUTES_FOLDED.load(Relaxed), None)
    }
}

/// Labels of the gRPC call counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct GrpcLabels {
    route: std::sync::Arc<str>,
    code: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_counted_per_code_across_shards() {
        let s = RequestStats::new();
        s.record(404, Duration::from_secs(11));
        std::thread::scope(|scope| {
            for _ in 0..super::super::latency::SHARDS + 3 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        s.record(200, Duration::from_millis(3));
                    }
                });
            }
        });
        let t = s.totals();
        let n = (super::super::latency::SHARDS as u64 + 3) * 1000;
        assert_eq!(t.statuses, vec![(200, n), (404, 1)]);
        assert_eq!(t.latency.buckets.iter().sum::<u64>(), n + 1);
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
