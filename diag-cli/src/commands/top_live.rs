//! `diag top URL`: a live view of a service computed from two consecutive scrapes of its
//! Prometheus `/metrics`: per route requests per second, p50/p95/p99 (interpolated within
//! histogram buckets, like Prometheus's `histogram_quantile`) and error % (5xx share), and
//! the process's RSS, CPU %, event-loop lag and live heap.
//!
//! The CLI parses the text exposition itself (a small parser below) rather than asking for a
//! JSON endpoint: the same `/metrics` that Prometheus scrapes is the single source of truth.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::TopArgs;
use crate::remote::Remote;
use crate::table::{Align, Table};
use crate::units;

/// One series of a scrape: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl Series {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text exposition format (0.0.4): comments and blank lines skipped,
/// label values unescaped, timestamps ignored. A malformed line is an error naming it.
pub(crate) fn parse_exposition(text: &str) -> Result<Vec<Series>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).with_context(|| format!("line {}: {line:?}", i + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Series> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .context("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        bail!("no metric name");
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end = loop {
            // Skip separators.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(start, c)) = chars.peek() else {
                bail!("unterminated label set");
            };
            if c == '}' {
                break start + 1;
            }
            let eq = r[start..].find('=').context("label without '='")? + start;
            let key = r[start..eq].trim().to_owned();
            while chars.peek().is_some_and(|&(j, _)| j <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                bail!("label {key} value is not quoted");
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => bail!("unterminated label value"),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated label value"),
                }
            }
            labels.push((key, value));
        };
        rest = &r[end..];
    }
    let value = rest.split_whitespace().next().context("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .with_context(|| format!("value {v:?} is not a number"))?,
    };
    Ok(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// What one scrape says, summed over methods.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scrape {
    at: Option<Instant>,
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

/// Parses `2s`, `500ms`, `1.5s`, `1m`; at least 100 ms, at most one hour.
pub(crate) fn parse_interval(s: &str) -> Result<Duration> {
    crate::units::duration("--interval", s, 0.1, 3600.0)
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

/// Runs `diag top URL` (live view, or one sample with `--once`).
pub(crate) fn run(url: &str, args: &TopArgs) -> Result<ExitCode> {
    let interval = parse_interval(&args.interval)?;
    let base = url.trim_end_matches('/');
    let base = base.strip_suffix("/metrics").unwrap_or(base);
    let timeout = Duration::from_secs(args.remote.timeout.max(1));
    let remote = Remote::new(base, args.remote.token.clone(), timeout)?;
    let mut prev = scrape(&remote)?;
    loop {
        std::thread::sleep(interval);
        let next = scrape(&remote)?;
        let secs = match (prev.at, next.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => interval.as_secs_f64(),
        };
        let sample = diff(remote.base(), &prev, &next, secs);
        let mut out = io::stdout().lock();
        if args.json {
            serde_json::to_writer(&mut out, &sample).context("writing JSON")?;
            writeln!(out)?;
        } else {
            if !args.once {
                // Clear the screen and go home, like top(1).
                write!(out, "\x1b[2J\x1b[H")?;
            }
            write_view(&mut out, &sample, args.top)?;
        }
        out.flush()?;
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        prev = next;
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

/// The human view: a process line and a table of routes (`top` rows; 0 = all).
pub(crate) fn write_view(w: &mut impl Write, s: &Sample, top: usize) -> io::Result<()> {
    let p = &s.process;
    writeln!(
        w,
        "{}  every {:.1}s   RSS {}   CPU {}   lag {}   live heap {}   threads {}",
        s.url,
        s.interval_seconds,
        opt(p.rss_bytes, |v| units::bytes(v as i64)),
        opt(p.cpu_percent, |v| format!("{v:.1}%")),
        opt(p.lag_ms, units::millis),
        opt(p.heap_live_bytes, |v| units::bytes(v as i64)),
        opt(p.threads, |v| format!("{v:.0}")),
    )?;
    writeln!(w)?;
    let mut table = Table::new(&[
        ("RPS", Align::Right),
        ("P50", Align::Right),
        ("P95", Align::Right),
        ("P99", Align::Right),
        ("ERR%", Align::Right),
        ("ROUTE", Align::Left),
    ]);
    let n = if top == 0 { s.routes.len() } else { top };
    for r in s.routes.iter().take(n) {
        table.row(vec![
            format!("{:.1}", r.rps),
            opt(r.p50_ms, units::millis),
            opt(r.p95_ms, units::millis),
            opt(r.p99_ms, units::millis),
            format!("{:.1}", r.error_percent),
            r.route.clone(),
        ]);
    }
    if s.routes.is_empty() {
        writeln!(w, "no requests in this interval")?;
        return Ok(());
    }
    table.write(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"# HELP http_requests Requests.
# TYPE http_requests counter
http_requests_total{route="/items/{id}",method="GET",status="200"} 10
http_requests_total{route="/fail",method="GET",status="500"} 4
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="0.01"} 10
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="0.02"} 10
http_request_duration_seconds_bucket{route="/items/{id}",method="GET",le="+Inf"} 10
process_cpu_seconds_total 1.5
process_resident_memory_bytes 1000
"#;
    const B: &str = r#"http_requests_total{route="/items/{id}",method="GET",status="200"} 110
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
    fn parses_labels_escapes_and_timestamps() {
        let s = parse_exposition(B).unwrap();
        assert_eq!(s.len(), 12);
        assert_eq!(s[3].label("route"), Some("/we\"ird\\x"));
        assert_eq!(s[3].value, 0.0);
        assert!(parse_exposition("x{a=1} 2").is_err());
        assert!(parse_exposition("x{a=\"1\" 2").is_err());
        assert!(parse_exposition("x{a=\"1\"} two").is_err());
        assert_eq!(parse_exposition("x +Inf").unwrap()[0].value, f64::INFINITY);
    }

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

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("2").is_err());
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("xs").is_err());
    }
}
