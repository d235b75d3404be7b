//! A real Prometheus for the tests: started on a free port with a 1 s scrape of one target,
//! queried over its HTTP API; killed (its scratch directory removed) when the guard drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Http, wait_until, when};

/// Kills Prometheus and removes its scratch directory, also when the test panics.
pub struct PrometheusGuard {
    child: Child,
    dir: PathBuf,
}

impl Drop for PrometheusGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- prometheus.log (last lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn prometheus_binary() -> Option<PathBuf> {
    super::peer("prometheus", "prometheus", Some("PROMETHEUS"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_prometheus(bin: &Path, target: &str) -> (PrometheusGuard, String) {
    let dir = super::scratch("prometheus");
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    let guard = PrometheusGuard { child, dir };
    let base = format!("http://127.0.0.1:{port}");
    let http = Http::new();
    wait_until(Duration::from_secs(60), "prometheus ready", || {
        http.try_get(&format!("{base}/-/ready"))
            .and_then(|a| when(a.status, |&s| s == 200).map_err(|s| format!("HTTP {s}")))
    });
    (guard, base)
}

/// One instant query: the answer's text and its result series.
pub fn query_results(base: &str, q: &str) -> (String, Vec<serde_json::Value>) {
    let mut r = Http::new()
        .agent()
        .get(&format!("{base}/api/v1/query"))
        .query("query", q)
        .call()
        .unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{q}: {body}");
    let result = v["data"]["result"].as_array().unwrap().clone();
    (body, result)
}

/// A series' value in a query result.
pub fn value(series: &serde_json::Value) -> Option<f64> {
    series["value"][1].as_str().and_then(|s| s.parse().ok())
}

/// One instant query; the single result's value.
pub fn query(base: &str, q: &str) -> f64 {
    let (body, result) = query_results(base, q);
    assert_eq!(result.len(), 1, "{q}: expected one series: {body}");
    value(&result[0]).unwrap()
}

/// Like [`query`], but an empty result is 0.
pub fn query_opt(base: &str, q: &str) -> f64 {
    query_results(base, q)
        .1
        .first()
        .and_then(value)
        .unwrap_or(0.0)
}

/// Prometheus' p50 and p99 of `route` (`histogram_quantile` over diag's latency buckets) lie
/// in [0, the upper edge of the bucket holding the slowest request the client saw]: the
/// server's time is part of the client's. `client` holds the client's latencies, sorted.
pub fn assert_quantiles_within_client(base: &str, route: &str, client: &[f64]) {
    let max = *client.last().expect("client latencies");
    let ceiling = diag_core::metrics::LATENCY_BUCKETS
        .iter()
        .find(|&&le| le >= max)
        .copied()
        .unwrap_or(f64::INFINITY);
    for q in [0.5, 0.99] {
        let v = query(
            base,
            &format!(
                r#"histogram_quantile({q}, sum by (le) (http_request_duration_seconds_bucket{{route="{route}"}}))"#
            ),
        );
        assert!(
            (0.0..=ceiling).contains(&v),
            "{route} p{q}: {v} (client max {max})"
        );
    }
}
