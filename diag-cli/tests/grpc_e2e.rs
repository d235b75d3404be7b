//! End to end over real sockets: the tonic example (`Server::builder().layer(diag_core::layer())`)
//! in this process with `DiagAlloc` installed, driven by a tonic client. A real Prometheus
//! scrapes `/metrics`: the failing method's calls counted by gRPC code (14 UNAVAILABLE, 5
//! NOT_FOUND, in HTTP 200s), the leaking method's p50/p99 there; `diag diff --by route` ranks
//! the leaking method first within 25 % of the truth; a 300 ms blocking method is caught with
//! its function on the stack and the lag shows two of them at once; `diag report` lists the methods. One test:
//! the allocator is process-global.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use diag_examples::grpc_shop;
use serde_json::Value;
use support::prometheus::{prometheus_binary, query, query_opt, start_prometheus};
use support::{wait_until, when};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

const KEEP: &str = "/shop.Shop/Keep";
const FAIL: &str = "/shop.Shop/Fail";

#[test]
fn a_grpc_service_is_seen_method_by_method() {
    let shop = grpc_shop::InProcess::start(diag_core::Diag::builder().heap_sample_bytes(16 * 1024));
    let prometheus = prometheus_binary()
        .map(|bin| start_prometheus(&bin, shop.diag_url.trim_start_matches("http://")));
    let run = leak_between_two_snapshots(&shop);
    run.diff_by_route_ranks_the_leak_first();
    if let Some((_guard, base)) = &prometheus {
        run.prometheus_counts_failures_by_code(base);
    }
    blocking_is_caught(&shop);
    report_lists_the_methods(&shop, &run.dir);
}

struct Run {
    dir: std::path::PathBuf,
    kept: u64,
    keep_latency: Vec<f64>,
    unavailable: u64,
    not_found: u64,
}

fn snapshot(shop: &grpc_shop::InProcess, to: &std::path::Path) {
    support::ok(&["snapshot", &shop.diag_url, "-o", to.to_str().unwrap()]);
}

/// Every method warmed up; a snapshot; 200 rounds of a 64 KiB order kept, a hash and a
/// failure (UNAVAILABLE and NOT_FOUND in turn); a snapshot.
fn leak_between_two_snapshots(shop: &grpc_shop::InProcess) -> Run {
    shop.call("Keep", 1).unwrap();
    shop.call("Hash", 1).unwrap();
    shop.call("Kept", 0).unwrap();
    let dir = support::scratch("grpc-e2e");
    snapshot(shop, &dir.join("a.pb.gz"));
    let before = grpc_shop::kept_bytes();
    let (mut keep_latency, mut unavailable, mut not_found) = (Vec::new(), 0, 0);
    for i in 0..200u64 {
        let t = Instant::now();
        shop.call("Keep", 64).unwrap();
        keep_latency.push(t.elapsed().as_secs_f64());
        shop.call("Hash", 20).unwrap();
        let err = shop.call("Fail", i).unwrap_err();
        match err.code() {
            grpc_shop::Code::Unavailable => unavailable += 1,
            grpc_shop::Code::NotFound => not_found += 1,
            c => panic!("Fail answered {c:?}"),
        }
    }
    let kept = grpc_shop::kept_bytes() - before;
    snapshot(shop, &dir.join("b.pb.gz"));
    keep_latency.sort_by(f64::total_cmp);
    Run {
        dir,
        kept,
        keep_latency,
        unavailable,
        not_found,
    }
}

impl Run {
    /// `diag diff a b --by route --json`: the Keep method first, within 25 % of what it kept.
    fn diff_by_route_ranks_the_leak_first(&self) {
        support::assert_diff_by_route_ranks_first(
            &self.dir,
            KEEP,
            self.kept,
            "grpc_shop::keep_order",
        );
    }

    /// Prometheus: the failures by code, exactly; Keep's p50/p99 within the client's.
    fn prometheus_counts_failures_by_code(&self, base: &str) {
        let code = |c: u32| format!(r#"sum(grpc_requests_total{{route="{FAIL}",code="{c}"}})"#);
        let total = self.unavailable + self.not_found;
        wait_until(
            Duration::from_secs(30),
            &format!("prometheus to scrape {total} failed calls"),
            || {
                when(
                    query_opt(
                        base,
                        &format!(r#"sum(grpc_requests_total{{route="{FAIL}"}})"#),
                    ),
                    |&n| n >= total as f64,
                )
            },
        );
        assert_eq!(query(base, &code(14)), self.unavailable as f64);
        assert_eq!(query(base, &code(5)), self.not_found as f64);
        // Every failed call is an HTTP 200: the error rate is only in the gRPC codes.
        assert_eq!(
            query(
                base,
                &format!(r#"sum(http_requests_total{{route="{FAIL}",status="200"}})"#)
            ),
            total as f64
        );
        let keep_ok = format!(r#"sum(grpc_requests_total{{route="{KEEP}",code="0"}})"#);
        assert_eq!(query(base, &keep_ok), (self.keep_latency.len() + 1) as f64);
        support::prometheus::assert_quantiles_within_client(base, KEEP, &self.keep_latency);
    }
}

/// `Lookup` blocks a worker 300 ms: the event names the method and has
/// `blocking_stock_check` on its stack; the lag shows it.
fn blocking_is_caught(shop: &grpc_shop::InProcess) {
    std::thread::scope(|s| {
        let client = s.spawn(|| shop.call("Lookup", 0));
        let tasks = wait_until(
            Duration::from_secs(30),
            "a blocking event of Lookup with blocking_stock_check on its stack",
            || {
                let v = diag_tasks_json(&shop.diag_url);
                let caught = v["blocking_events"].as_array().unwrap().iter().any(|e| {
                    e["name"] == "/shop.Shop/Lookup"
                        && e["stack"].as_array().unwrap().iter().any(|f| {
                            f.as_str()
                                .unwrap()
                                .contains("grpc_shop::blocking_stock_check")
                        })
                });
                if caught { Ok(v) } else { Err(v) }
            },
        );
        assert_eq!(client.join().unwrap().unwrap(), 7);
        assert!(tasks["not_watching"].is_null(), "{tasks}");
    });
    // The lag probe's timer is late only when every worker is blocked (on a multi-thread
    // runtime an idle worker runs it): two Lookups at once, again until both workers were.
    let lag = wait_until(
        Duration::from_secs(60),
        "lag max of 250 ms or more while both workers block",
        || {
            std::thread::scope(|s| {
                let calls: Vec<_> = (0..2).map(|_| s.spawn(|| shop.call("Lookup", 0))).collect();
                for c in calls {
                    assert_eq!(c.join().unwrap().unwrap(), 7);
                }
            });
            let v = diag_tasks_json(&shop.diag_url);
            let max = v["lag"]["max_ms"].as_f64().unwrap();
            when(v, |_| max >= 250.0)
        },
    );
    assert!(lag["lag"]["p99_ms"].as_f64().unwrap() > 0.0, "{lag}");
}

/// `diag report URL` over a window with calls: its routes section names the methods.
fn report_lists_the_methods(shop: &grpc_shop::InProcess, dir: &std::path::Path) {
    let page = dir.join("report.html");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = shop.call("Fail", 1);
                let _ = shop.call("Hash", 5);
            }
        });
        let out = support::diag(&[
            "report",
            &shop.diag_url,
            "--seconds",
            "3",
            "-o",
            page.to_str().unwrap(),
        ]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        support::assert_report_names_route(&out, &page, "/shop.Shop/Hash");
    });
}

fn diag_tasks_json(diag_url: &str) -> Value {
    let out = support::ok(&["tasks", diag_url, "--json", "--timeout", "10"]);
    serde_json::from_str(&out).expect("diag tasks --json prints JSON")
}
