//! A real Prometheus scrapes the shop example (in-process, with `diag_core::layer()`) while a
//! Rust client drives a known mix; Prometheus's own `histogram_quantile` and error rate must
//! agree with what the client measured. Also checks `diag top URL --once --json` against the
//! same load and `diag top URL --profile heap`.
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus`, or PROMETHEUS=/path): skipped with a
//! loud message when missing, unless CI is set, where it fails.

#[path = "support/mod.rs"]
mod support;

use support::prometheus::{prometheus_binary, query, query_opt, start_prometheus};
use support::{Http, wait_until, when};

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static A: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[test]
fn prometheus_scrapes_the_layer_and_agrees_with_the_client() {
    let Some(bin) = prometheus_binary() else {
        return;
    };

    let diag = diag_core::Diag::builder()
        .addr("127.0.0.1:0")
        .start()
        .unwrap();
    let diag_addr = diag.local_addr().unwrap();
    diag_examples::shop::register_readiness();
    let app_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = app_listener.local_addr().unwrap();
    app_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(app_listener).unwrap();
            diag_examples::serve(l, diag_examples::shop::app())
                .await
                .unwrap();
        });
    });
    let app = format!("http://{app_addr}");

    let (_prom, prom) = start_prometheus(&bin, &diag_addr.to_string());

    // Warm-up: every series exists before the measured window, so rate() sees its start.
    let http = Http::new();
    for path in ["/items/1", "/slow", "/fail"] {
        http.try_get(&format!("{app}{path}")).unwrap();
    }
    wait_until(
        Duration::from_secs(30),
        "prometheus to scrape the three warm-up series",
        || {
            when(query_opt(&prom, "count(http_requests_total)"), |&n| {
                n >= 3.0
            })
        },
    );
    wait_until(
        Duration::from_secs(30),
        "three scrapes of every series before the load",
        || {
            when(
                query_opt(&prom, "min(count_over_time(http_requests_total[1m]))"),
                |&n| n >= 3.0,
            )
        },
    );

    // Load: two clients on /slow; one client on /items/{id} and /fail at 3:1.
    let stop = Arc::new(AtomicBool::new(false));
    let slow_clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, app) = (stop.clone(), app.clone());
            std::thread::spawn(move || {
                let http = Http::new();
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let status = http.status(&format!("{app}/slow"));
                    lat.push(t.elapsed().as_secs_f64());
                    assert_eq!(status, 200);
                }
                lat
            })
        })
        .collect();
    let mixed = {
        let (stop, app) = (stop.clone(), app.clone());
        std::thread::spawn(move || {
            let http = Http::new();
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if i.is_multiple_of(4) {
                    assert_eq!(http.status(&format!("{app}/fail")), 500);
                    failed += 1;
                } else {
                    assert_eq!(http.status(&format!("{app}/items/{i}")), 200);
                    ok += 1;
                }
                std::thread::sleep(Duration::from_millis(2)); // workload: the mix's pace
            }
            (ok, failed)
        })
    };

    // Meanwhile: diag top's one-sample JSON and the heap profile top list, on the same load.
    std::thread::sleep(Duration::from_secs(2)); // workload: the load runs 2 s before diag top
    let url = format!("http://{diag_addr}");
    let top = support::ok(&["top", &url, "--once", "--json", "--interval", "2s"]);
    let heap_top = support::ok(&["top", &url, "--profile", "heap", "--top", "5"]);
    std::thread::sleep(Duration::from_secs(6)); // workload: 6 s more of the load
    stop.store(true, Ordering::Relaxed);
    let mut slow: Vec<f64> = slow_clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let (items_ok, failed) = mixed.join().unwrap();
    slow.sort_by(f64::total_cmp);
    // Every request, the warm-up's three too, scraped (scrape interval 1 s).
    let requests = (items_ok + failed + slow.len() as u64 + 3) as f64;
    wait_until(
        Duration::from_secs(30),
        &format!("prometheus to scrape all {requests} requests"),
        || {
            when(query_opt(&prom, "sum(http_requests_total)"), |&n| {
                n >= requests
            })
        },
    );

    let client_p99 = percentile(&slow, 0.99);
    let prom_p99 = query(
        &prom,
        r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{route="/slow"}[30s])))"#,
    );
    // Tolerance: Prometheus only knows which bucket a latency fell in and interpolates
    // linearly inside it, so the estimate can be anywhere in the bucket holding the p99.
    // Allow that bucket's width, plus 2 ms of client-side overhead (the client also measures
    // the connection and the response body).
    let b = diag_core::metrics::LATENCY_BUCKETS;
    // The bucket a latency falls in: the first upper edge at or above it.
    let bucket = |x: f64| b.iter().position(|&le| le >= x);
    let i = bucket(client_p99).unwrap();
    let width = b[i] - if i == 0 { 0.0 } else { b[i - 1] };
    eprintln!(
        "/slow: {} requests, client p99 {:.1} ms, prometheus p99 {:.1} ms, tolerance {:.1} ms",
        slow.len(),
        client_p99 * 1e3,
        prom_p99 * 1e3,
        (width + 0.002) * 1e3
    );
    assert!(slow.len() > 100, "{} slow requests", slow.len());
    assert!(
        (prom_p99 - client_p99).abs() <= width + 0.002,
        "p99: prometheus {prom_p99} vs client {client_p99} (bucket width {width})"
    );
    // Bounds for every server-side quantile of /slow: its shortest sleep (20 ms) below, and
    // above, the upper edge of the bucket holding the slowest request the client saw (the
    // server's time of a request is part of the client's, and a quantile is interpolated
    // inside its bucket). A fixed ceiling would test the machine's load, not diag: sleeps
    // overshoot on a busy 2-core runner.
    let client_max = *slow.last().unwrap();
    let ceiling = bucket(client_max).map_or(f64::INFINITY, |j| b[j]);
    assert!(
        (0.020..=ceiling).contains(&prom_p99),
        "{prom_p99} (client max {client_max})"
    );

    // Error rate of the 500 route: every answer is a 5xx.
    let fail_error_ratio = query(
        &prom,
        r#"sum(rate(http_requests_total{route="/fail",status=~"5.."}[30s])) / sum(rate(http_requests_total{route="/fail"}[30s]))"#,
    );
    assert_eq!(fail_error_ratio, 1.0);
    // And the service-wide 5xx share matches the client's mix.
    let share = query(
        &prom,
        r#"sum(rate(http_requests_total{status=~"5.."}[30s])) / sum(rate(http_requests_total[30s]))"#,
    );
    let total = (items_ok + failed + slow.len() as u64) as f64;
    let client_share = failed as f64 / total;
    eprintln!(
        "5xx share: client {client_share:.4} ({failed} of {total}), prometheus {share:.4}; \
         /items ok {items_ok}"
    );
    assert!(
        (share - client_share).abs() <= 0.05 * client_share.max(0.01) + 0.01,
        "5xx share: prometheus {share} vs client {client_share}"
    );
    // The /fail rate itself, against the client's count over the load (increase() over a
    // window covering the whole load, within 20 %: Prometheus extrapolates to the window edges).
    let fail_increase = query(
        &prom,
        r#"sum(increase(http_requests_total{route="/fail"}[30s]))"#,
    );
    assert!(
        (fail_increase - failed as f64).abs() <= 0.2 * failed as f64 + 2.0,
        "/fail increase: prometheus {fail_increase} vs client {failed}"
    );
    // Labels are templates, never raw paths.
    assert_eq!(
        query_opt(
            &prom,
            r#"count(http_requests_total{route=~"/items/[0-9]+"})"#
        ),
        0.0
    );
    assert!(
        query(
            &prom,
            r#"sum(http_requests_total{route="/items/{id}",status="200"}) > 0"#
        ) >= items_ok as f64
    );
    // Process gauges arrive too.
    assert!(query(&prom, "process_resident_memory_bytes") > 1e6);
    assert!(query(&prom, "diag_heap_live_bytes") > 0.0);
    assert!(
        query(
            &prom,
            r#"diag_operation_duration_seconds_count{operation="db.query"}"#
        ) > 0.0
    );

    // diag top --once --json, taken during the load.
    let v: serde_json::Value = serde_json::from_str(top.trim()).unwrap();
    let routes = v["routes"].as_array().unwrap();
    let route = |name: &str| {
        routes
            .iter()
            .find(|r| r["route"] == name)
            .unwrap_or_else(|| panic!("{name} missing in {top}"))
    };
    assert_eq!(route("/fail")["error_percent"], 100.0);
    assert_eq!(route("/items/{id}")["error_percent"], 0.0);
    let top_p99 = route("/slow")["p99_ms"].as_f64().unwrap();
    assert!(
        (20.0..=ceiling * 1e3).contains(&top_p99),
        "{top} (client max {client_max})"
    );
    assert!(route("/slow")["rps"].as_f64().unwrap() > 10.0, "{top}");
    assert!(v["process"]["rss_bytes"].as_f64().unwrap() > 1e6, "{top}");
    assert!(
        v["process"]["heap_live_bytes"].as_f64().unwrap() > 0.0,
        "{top}"
    );
    assert!(heap_top.starts_with("inuse_space total"), "{heap_top}");

    // Bad input: a clear error and exit code 2.
    let err = support::fails(&["top", &url, "--once", "--interval", "5"]);
    assert!(err.contains("--interval"), "{err}");
    diag.shutdown();
}
