//! End to end over real sockets: the actix-web example (`diag_core::actix::Diag`, two actix
//! workers, each its own runtime started after the test began) in this process with
//! `DiagAlloc` installed. A real Prometheus scrapes `/metrics` while a client drives a known
//! mix: per-route p50/p99 and the 500s of `/fail` read as the client saw them; `diag diff
//! --by route` ranks the leaking route first within 25 % of the truth; a 300 ms blocking
//! handler is caught with its function on the stack and each worker's lag shows it; `diag
//! report` lists the routes; a panicking handler and a non-UTF-8 path are counted. One test:
//! the allocator is process-global.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diag_examples::actix_shop;
use serde_json::Value;
use support::prometheus::{prometheus_binary, query, query_opt, start_prometheus};
use support::{Http, wait_until, when};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[test]
fn an_actix_service_is_seen_route_by_route() {
    let shop = Shop::start();
    let prometheus = prometheus_binary().map(|bin| start_prometheus(&bin, shop.diag_addr()));
    let run = shop.leak_between_two_snapshots();
    run.diff_by_route_ranks_the_leak_first();
    if let Some((_guard, base)) = &prometheus {
        shop.prometheus_reads_the_routes(base, &run);
    }
    shop.blocking_is_caught_on_its_worker();
    shop.report_lists_the_routes();
    shop.bad_input_is_counted();
}

struct Shop {
    http: Http,
    service: actix_shop::InProcess,
}

/// What the client did between the two snapshots.
struct Run {
    dir: std::path::PathBuf,
    kept: u64,
    users: Vec<f64>,
    failed: u64,
    ok: u64,
}

impl Shop {
    fn start() -> Self {
        let service =
            actix_shop::InProcess::start(diag_core::Diag::builder().heap_sample_bytes(16 * 1024));
        Self {
            http: Http::with_timeout(Duration::from_secs(30)),
            service,
        }
    }

    fn diag_addr(&self) -> &str {
        self.service.diag_url.trim_start_matches("http://")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.service.app_url)
    }

    fn status(&self, path: &str) -> u16 {
        self.http.status(&self.url(path))
    }

    fn snapshot(&self, to: &std::path::Path) {
        support::ok(&[
            "snapshot",
            &self.service.diag_url,
            "-o",
            to.to_str().unwrap(),
        ]);
    }

    /// Every route warmed up; a snapshot; 200 rounds of a 64 KiB upload kept, three user
    /// lookups, a hash and every fourth round a failure; a snapshot.
    fn leak_between_two_snapshots(&self) -> Run {
        for p in ["/uploads/1", "/users/0", "/hash/1", "/fail", "/kept"] {
            self.status(p);
        }
        let dir = support::scratch("actix-e2e");
        self.snapshot(&dir.join("a.pb.gz"));
        let before = actix_shop::kept_bytes();
        let (mut users, mut failed, mut ok) = (Vec::new(), 0, 0);
        for i in 0..200u64 {
            assert_eq!(self.status("/uploads/64"), 200);
            for j in 0..3 {
                let t = Instant::now();
                assert_eq!(self.status(&format!("/users/{}", i * 3 + j)), 200);
                users.push(t.elapsed().as_secs_f64());
            }
            assert_eq!(self.status("/hash/20"), 200);
            ok += 5;
            if i % 4 == 0 {
                assert_eq!(self.status("/fail"), 500);
                failed += 1;
            }
        }
        let kept = actix_shop::kept_bytes() - before;
        self.snapshot(&dir.join("b.pb.gz"));
        users.sort_by(f64::total_cmp);
        Run {
            dir,
            kept,
            users,
            failed,
            ok,
        }
    }

    /// Prometheus's per-route quantiles and error counts, as the client saw them.
    fn prometheus_reads_the_routes(&self, base: &str, run: &Run) {
        // Counters are exact once scraped after the load: wait for the last scrape.
        let fail = r#"sum(http_requests_total{route="/fail",status="500"})"#;
        let expect_fail = run.failed + 1; // and the warm-up's
        wait_until(
            Duration::from_secs(30),
            &format!("prometheus to scrape {expect_fail} failures of /fail"),
            || when(query_opt(base, fail), |&n| n >= expect_fail as f64),
        );
        assert_eq!(query(base, fail), expect_fail as f64);
        let users = r#"sum(http_requests_total{route="/users/{id}",status="200"})"#;
        assert_eq!(query(base, users), (run.users.len() + 1) as f64);
        assert!(query(base, r#"sum(http_requests_total)"#) >= (run.ok + run.failed) as f64);
        support::prometheus::assert_quantiles_within_client(base, "/users/{id}", &run.users);
        // No raw paths in the labels.
        assert_eq!(
            query_opt(
                base,
                r#"count(http_requests_total{route=~"/users/[0-9]+"})"#
            ),
            0.0
        );
    }

    /// `GET /lookup` blocks a worker 300 ms: the event names the route and has
    /// `blocking_lookup` on its stack; that worker's runtime shows the lag.
    fn blocking_is_caught_on_its_worker(&self) {
        let url = self.url("/lookup");
        let client = std::thread::spawn(move || Http::new().status(&url));
        let tasks = wait_until(
            Duration::from_secs(30),
            "a blocking event of /lookup with blocking_lookup on its stack",
            || {
                let v = diag_tasks_json(&self.service.diag_url);
                let caught =
                    v["blocking_events"].as_array().unwrap().iter().any(|e| {
                        e["name"] == "/lookup"
                            && e["duration_ms"].as_u64().unwrap() >= 100
                            && e["stack"].as_array().unwrap().iter().any(|f| {
                                f.as_str().unwrap().contains("actix_shop::blocking_lookup")
                            })
                    });
                if caught { Ok(v) } else { Err(v) }
            },
        );
        assert_eq!(client.join().unwrap(), 200);
        let runtimes = tasks["runtimes"].as_array().unwrap();
        assert_eq!(runtimes.len(), 2, "one runtime per actix worker: {tasks}");
        assert!(
            runtimes.iter().all(|r| r["serves_requests"] == true),
            "both workers served requests: {tasks}"
        );
        assert!(tasks["not_watching"].is_null(), "{tasks}");
        assert_eq!(tasks["runtime"]["workers"], 2, "{tasks}");
        // The blocked worker's lag: its probe's timer ran at least 250 ms late.
        let lag = wait_until(
            Duration::from_secs(30),
            "a worker's lag max of 250 ms or more",
            || {
                let v = diag_tasks_json(&self.service.diag_url);
                let worst = v["runtimes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["lag"]["max_ms"].as_f64().unwrap())
                    .fold(0.0, f64::max);
                when(v, |_| worst >= 250.0)
            },
        );
        assert!(lag["lag"]["p99_ms"].as_f64().unwrap() > 0.0, "{lag}");
        assert!(lag["lag"]["max_ms"].as_f64().unwrap() >= 250.0, "{lag}");
    }

    /// `diag report URL` over a window with traffic: its routes section names the templates.
    fn report_lists_the_routes(&self) {
        let page = self.service_dir().join("report.html");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = {
            let (stop, url) = (stop.clone(), self.url("/users/7"));
            std::thread::spawn(move || {
                let http = Http::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    http.status(&url);
                    std::thread::sleep(Duration::from_millis(5)); // workload: the pace
                }
            })
        };
        let out = support::diag(&[
            "report",
            &self.service.diag_url,
            "--seconds",
            "3",
            "-o",
            page.to_str().unwrap(),
        ]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.join().unwrap();
        support::assert_report_names_route(&out, &page, "/users/{id}");
    }

    fn service_dir(&self) -> std::path::PathBuf {
        support::scratch("actix-e2e-report")
    }

    /// A handler that panics is a 500 (and the app goes on); a path that is not UTF-8 once
    /// decoded is a 404 of `unmatched` or of its route.
    fn bad_input_is_counted(&self) {
        let before = counts(
            &self
                .http
                .ok(&format!("{}/metrics", self.service.diag_url))
                .text(),
        );
        assert!(
            self.http.get(&self.url("/panic")).is_err(),
            "/panic answered"
        );
        assert_eq!(self.status("/%FF%FE"), 404);
        assert_eq!(self.status("/users/%FF"), 404);
        assert_eq!(self.status("/users/1"), 200);
        let after = counts(
            &self
                .http
                .ok(&format!("{}/metrics", self.service.diag_url))
                .text(),
        );
        let grew =
            |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        assert_eq!(grew("/panic 500"), 1, "{after:?}");
        assert_eq!(grew("unmatched 404"), 1, "{after:?}");
        assert_eq!(grew("/users/{id} 404"), 1, "{after:?}");
    }
}

impl Run {
    /// `diag diff a b --by route --json`: the upload route first, within 25 % of what it kept.
    fn diff_by_route_ranks_the_leak_first(&self) {
        support::assert_diff_by_route_ranks_first(
            &self.dir,
            "/uploads/{kb}",
            self.kept,
            "actix_shop::keep_upload",
        );
    }
}

fn diag_tasks_json(diag_url: &str) -> Value {
    let out = support::ok(&["tasks", diag_url, "--json", "--timeout", "10"]);
    serde_json::from_str(&out).expect("diag tasks --json prints JSON")
}

/// `"route status" -> requests` from `/metrics`' `http_requests_total`.
fn counts(metrics: &str) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
    {
        let label = |k: &str| {
            let start = line.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
            line[start..][..line[start..].find('"').unwrap()].to_owned()
        };
        let n: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(format!("{} {}", label("route"), label("status")))
            .or_default() += n;
    }
    out
}
