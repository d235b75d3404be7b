//! A real Prometheus scrapes the leaky example (in-process, `DiagAlloc` installed, a fast heap
//! history of 200 ms as a user would POST it) while a client leaks through `/leak`: the
//! service's own leak alarm must reach Prometheus as `diag_leak_growth_bytes_per_second` with
//! the leak's site and route labels, and `diag_leak_suspects` at least 1. One test: the
//! allocator is process-global.
//!
//! Needs `/usr/bin/prometheus` (Debian's `prometheus`, or PROMETHEUS=/path): skipped with a
//! loud message when missing, unless CI is set, where it fails.

mod support;

use std::time::Duration;

use support::prometheus::{prometheus_binary, query_opt, query_results, start_prometheus};
use support::{Http, wait_until, when};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// The growth series Prometheus holds for the leak's site, as (site, route) label pairs.
fn leak_series(prom: &str) -> Vec<(String, String)> {
    query_results(
        prom,
        r#"diag_leak_growth_bytes_per_second{site=~".*remember_request"}"#,
    )
    .1
    .iter()
    .map(|s| {
        let label = |k: &str| s["metric"][k].as_str().unwrap_or("").to_owned();
        (label("site"), label("route"))
    })
    .collect()
}

#[test]
fn prometheus_sees_the_leak_alarm_with_the_site_label() {
    let Some(bin) = prometheus_binary() else {
        return;
    };
    let service = support::leaky_with_history(200, 60);
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());
    let http = Http::new();
    let target = diag_url.trim_start_matches("http://");
    let (_prom, prom) = start_prometheus(&bin, target);

    // The leak (8 x 64 KiB a round) with churn beside it, until Prometheus has scraped the
    // alarm's growth series for the leak's site.
    let found = wait_until(
        Duration::from_secs(120),
        "prometheus to scrape diag_leak_growth_bytes_per_second for remember_request",
        || {
            for _ in 0..8 {
                assert_eq!(http.status(&format!("{app_url}/leak?kb=64")), 200);
            }
            assert_eq!(http.status(&format!("{app_url}/churn")), 200);
            let series = leak_series(&prom);
            if series.is_empty() {
                Err(format!(
                    "no series yet; diag_leak_checks_total = {}",
                    query_opt(&prom, "diag_leak_checks_total")
                ))
            } else {
                Ok(series)
            }
        },
    );
    let (site, route) = &found[0];
    assert!(site.ends_with("leaky::remember_request"), "{found:?}");
    assert_eq!(route, "/leak", "{found:?}");
    assert!(
        query_opt(
            &prom,
            r#"diag_leak_growth_bytes_per_second{site=~".*remember_request",route="/leak"}"#
        ) > 0.0
    );
    wait_until(
        Duration::from_secs(30),
        "prometheus to see diag_leak_suspects >= 1",
        || when(query_opt(&prom, "max(diag_leak_suspects)"), |&n| n >= 1.0),
    );
    // The churn route never becomes a suspect.
    assert_eq!(
        query_opt(
            &prom,
            r#"count(diag_leak_growth_bytes_per_second{route="/churn"})"#
        ),
        0.0
    );
}
