//! What a service is doing now, from two consecutive scrapes of its Prometheus `/metrics`:
//! per route requests per second, p50/p95/p99 (interpolated within histogram buckets, like
//! Prometheus's `histogram_quantile`) and error % (5xx share), and the process's RSS, CPU %,
//! event-loop lag and live heap. `diag top URL` shows it; `diag report` and `diag demo` put
//! it in their pages.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::prom::{Series, parse_exposition};
use crate::remote::Remote;

/// What one scrape says, summed over methods.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scrape {
    /// When it was taken (`None` in tests).
    pub(crate) at: Option<Instant>,
    /// route -> status -> requests.
    requests: BTreeMap<String, BTreeMap<String, f64>>,
    /// route -> le -> cumulative count (le as ordered bits of a non-negative f64).
    buckets: BTreeMap<String, BTreeMap<u64, f64>>,
    cpu_seconds: Option<f64>,
    rss_bytes: Option<f64>,
    heap_live_bytes: Option<f64>,
    lag_seconds: Option<f64>,
    threads: Option<f64>,
}

impl Scrape {
    pub(crate) fn from_series(series: &[Series], at: Option<Instant>) -> Self {
        let mut s = Scrape {
            at,
            ..Default::default()
        };
        for x in series {
            match x.name.as_str() {
                "http_requests_total" => {
                    let route = x.label("route").unwrap_or("?").to_owned();
                    let status = x.label("status").unwrap_or("?").to_owned();
                    *s.requests
                        .entry(route)
                        .or_default()
                        .entry(status)
                        .or_default() += x.value;
                }
                "http_request_duration_seconds_bucket" => {
                    let route = x.label("route").unwrap_or("?").to_owned();
                    let le = match x.label("le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(v) => v.parse().unwrap_or(f64::NAN),
                        None => f64::NAN,
                    };
                    if le >= 0.0 {
                        *s.buckets
                            .entry(route)
                            .or_default()
                            .entry(le.to_bits())
                            .or_default() += x.value;
                    }
                }
                "process_cpu_seconds_total" => s.cpu_seconds = Some(x.value),
                "process_resident_memory_bytes" => s.rss_bytes = Some(x.value),
                "diag_heap_live_bytes" => s.heap_live_bytes = Some(x.value),
                "diag_event_loop_lag_seconds" => s.lag_seconds = Some(x.value),
                "process_threads" => s.threads = Some(x.value),
                _ => {}
            }
        }
        s
    }
}

/// One route's line of the view.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct RouteRow {
    /// The route template, e.g. `/items/{id}`.
    pub(crate) route: String,
    /// Requests answered during the interval.
    pub(crate) requests: f64,
    pub(crate) rps: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// Share of 5xx answers, in percent.
    pub(crate) error_percent: f64,
}

/// The process's line of the view.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub(crate) struct ProcessRow {
    pub(crate) rss_bytes: Option<f64>,
    /// CPU time over wall time, in percent of one core.
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) lag_ms: Option<f64>,
    pub(crate) heap_live_bytes: Option<f64>,
    pub(crate) threads: Option<f64>,
}

/// One sample: what happened between two scrapes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Sample {
    pub(crate) url: String,
    pub(crate) interval_seconds: f64,
    pub(crate) routes: Vec<RouteRow>,
    pub(crate) process: ProcessRow,
}

/// The `q` quantile of a cumulative histogram (sorted `(le, count)`), interpolated linearly
/// within the bucket it falls in, as Prometheus's `histogram_quantile` does.
pub(crate) fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, cum) in buckets {
        if cum >= rank {
            if le.is_infinite() {
                // Beyond the last finite bound: the best answer is that bound.
                return Some(prev.0);
            }
            let in_bucket = cum - prev.1;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(prev.0 + (le - prev.0) * (rank - prev.1) / in_bucket);
        }
        prev = (le, cum);
    }
    Some(prev.0)
}

/// The sample between scrapes `a` (earlier) and `b`.
pub(crate) fn diff(url: &str, a: &Scrape, b: &Scrape, secs: f64) -> Sample {
    let secs = secs.max(1e-9);
    let mut routes = Vec::new();
    for (route, statuses) in &b.requests {
        let before = a.requests.get(route);
        let mut total = 0.0;
        let mut errors = 0.0;
        for (status, n) in statuses {
            let d = (n - before.and_then(|m| m.get(status)).copied().unwrap_or(0.0)).max(0.0);
            total += d;
            if status.starts_with('5') {
                errors += d;
            }
        }
        if total <= 0.0 {
            continue;
        }
        let empty = BTreeMap::new();
        let a_b = a.buckets.get(route).unwrap_or(&empty);
        let buckets: Vec<(f64, f64)> = b
            .buckets
            .get(route)
            .map(|m| {
                m.iter()
                    .map(|(le, c)| {
                        let d = c - a_b.get(le).copied().unwrap_or(0.0);
                        (f64::from_bits(*le), d.max(0.0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ms = |q| quantile(q, &buckets).map(|s| s * 1000.0);
        routes.push(RouteRow {
            route: route.clone(),
            requests: total,
            rps: total / secs,
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            error_percent: 100.0 * errors / total,
        });
    }
    routes.sort_by(|x, y| y.rps.total_cmp(&x.rps).then_with(|| x.route.cmp(&y.route)));
    let cpu_percent = match (a.cpu_seconds, b.cpu_seconds) {
        (Some(x), Some(y)) => Some(100.0 * (y - x).max(0.0) / secs),
        _ => None,
    };
    Sample {
        url: url.to_owned(),
        interval_seconds: secs,
        routes,
        process: ProcessRow {
            rss_bytes: b.rss_bytes,
            cpu_percent,
            lag_ms: b.lag_seconds.map(|s| s * 1000.0),
            heap_live_bytes: b.heap_live_bytes,
            threads: b.threads,
        },
    }
}

/// One scrape of the service's `/metrics`, checked to be diag's.
pub(crate) fn scrape(remote: &Remote) -> Result<Scrape> {
    let reply = remote.get("/metrics")?;
    let at = Instant::now();
    let text = String::from_utf8(reply.body)
        .with_context(|| format!("{}/metrics is not UTF-8 text", remote.base()))?;
    let series =
        parse_exposition(&text).with_context(|| format!("parsing {}/metrics", remote.base()))?;
    if !series
        .iter()
        .any(|s| s.name.starts_with("process_") || s.name.starts_with("http_"))
    {
        bail!(
            "{}/metrics has no http_/process_ series: is diag_core serving it?",
            remote.base()
        );
    }
    Ok(Scrape::from_series(&series, Some(at)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const A: &str = r#"# HELP http_requests Requests.
# TYPE http_requests counter
http_requests_total{route="/items/{id}",method="GET",status="200"} 10
http_requests_total{route="/fail",method="GET",status="500"} 4
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="0.01"} 10
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="0.02"} 10
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="+Inf"} 10
process_cpu_seconds_total 1.5
process_resident_memory_bytes 1000
"#;
    pub(crate) const B: &str = r#"http_requests_total{route="/items/{id}",method="GET",status="200"} 110
http_requests_total{route="/items/{id}",method="POST",status="503"} 100
http_requests_total{route="/fail",method="GET",status="500"} 4
http_requests_total{route="/we\"ird\\x",method="GET",status="200"} 0 1700000000000
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="0.01"} 60
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="0.02"} 110
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="+Inf"} 110
http_request_duration_seconds_bucket{route="/items/{id}",method="POST",le="0.01"} 100
http_request_duration_seconds_bucket{route="/items/{id}",method="POST",le="0.02"} 100
http_request_duration_seconds_bucket{route="/items/{id}",method="POST",le="+Inf"} 100
process_cpu_seconds_total 2.5
process_resident_memory_bytes 2000
"#;

    #[test]
    fn sample_from_two_scrapes() {
        let a = Scrape::from_series(&parse_exposition(A).unwrap(), None);
        let b = Scrape::from_series(&parse_exposition(B).unwrap(), None);
        let s = diff("u", &a, &b, 2.0);
        // /fail had no new requests; the weird route none at all.
        assert_eq!(s.routes.len(), 1, "{s:?}");
        let r = &s.routes[0];
        assert_eq!(r.route, "/items/{id}");
        assert_eq!(r.requests, 200.0);
        assert_eq!(r.rps, 100.0);
        assert_eq!(r.error_percent, 50.0);
        // 150 of 200 in (0, 10 ms], 50 in (10, 20 ms]: p50 at rank 100 -> 100/150 of 10 ms.
        assert!((r.p50_ms.unwrap() - 6.6667).abs() < 1e-3, "{r:?}");
        // p99 at rank 198: 48/50 into (10, 20].
        assert!((r.p99_ms.unwrap() - 19.6).abs() < 1e-9, "{r:?}");
        assert_eq!(s.process.cpu_percent, Some(50.0));
        assert_eq!(s.process.rss_bytes, Some(2000.0));
    }

    #[test]
    fn quantile_edges() {
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        // Everything beyond the last finite bound: that bound.
        assert_eq!(
            quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 5.0)]),
            Some(1.0)
        );
    }
}
