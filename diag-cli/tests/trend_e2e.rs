//! Leak trends end to end over real sockets: the leaky example runs in this process with
//! `DiagAlloc` installed. Across seven snapshots the leak keeps growing while a bounded cache
//! fills and levels off: `diag trend` must call the first growing (ranked first, its growth
//! within 25 % of the truth) and the second plateaued, where a two-snapshot diff shows both
//! as growth. Then `diag trend URL` takes the snapshots itself while traffic runs. One test:
//! the allocator is process-global.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{Http, ok, wait_until};

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[test]
fn trend_tells_the_leak_from_the_filling_cache() {
    let leaky = Leaky::start();
    let (files, truth) = leaky.seven_snapshots_of_a_leak_and_a_filling_cache();
    trend_calls_the_leak_growing_and_the_cache_plateaued(&files, truth);
    a_diff_shows_the_cache_as_growth_too(&files);
    the_table_says_the_same(&files);
    bad_input_is_refused(&leaky, &files);
    leaky.trend_of_the_url_while_it_leaks();
    leaky.trend_from_the_recorded_history(&files);
    leaky.diff_since_from_the_history(&files);
    leaky.history_settings_take_effect_at_once();
    std::fs::remove_dir_all(&leaky.dir).ok();
}

/// The leaky example in this process, its heap history recorded every 200 ms (the last 50
/// points), every block of 16 KiB sampled.
struct Leaky {
    diag_url: String,
    app_url: String,
    http: Http,
    dir: PathBuf,
    _service: diag_examples::InProcess,
}

impl Leaky {
    fn start() -> Self {
        let service = diag_examples::InProcess::start(
            diag_core::Diag::builder()
                .heap_sample_bytes(16 * 1024)
                .snapshot_min_interval(Duration::ZERO)
                .heap_history(Duration::from_millis(200), 50),
            diag_examples::leaky::app(),
        );
        Self {
            diag_url: service.diag_url.clone(),
            app_url: service.app_url.clone(),
            http: Http::with_timeout(Duration::from_secs(30)),
            dir: support::scratch("trend"),
            _service: service,
        }
    }

    /// `GET` on the app, which must answer 200.
    fn hit(&self, path: &str) {
        self.http.ok(&format!("{}{path}", self.app_url));
    }

    /// Seven snapshots, 500 ms apart (as `diag trend URL --every` spaces them). Between each:
    /// 30 leaking requests of 64 KiB and churn; the cache takes 11 new keys of 256 KiB each
    /// time (blocks that large are always sampled at 16 KiB, so its estimate is exact), so it
    /// is full (32 entries) from the third interval on and only turns over after that. The
    /// files, and the bytes leaked from the first to the last.
    fn seven_snapshots_of_a_leak_and_a_filling_cache(&self) -> (Vec<String>, f64) {
        let mut files = Vec::new();
        let mut key = 0u64;
        let mut leaked_first = 0;
        let start = std::time::Instant::now();
        for k in 0..7 {
            if k > 0 {
                for _ in 0..30 {
                    self.hit("/leak?kb=64");
                }
                for _ in 0..11 {
                    key += 1;
                    self.hit(&format!("/warm?key={key}&kb=256"));
                }
                for _ in 0..10 {
                    self.hit("/churn");
                }
                if let Some(wait) = (Duration::from_millis(500) * k).checked_sub(start.elapsed()) {
                    std::thread::sleep(wait); // workload: the snapshots' spacing in time
                }
            }
            if k == 0 {
                leaked_first = diag_examples::leaky::leaked_bytes();
            }
            let f = self.dir.join(format!("s{k}.pb.gz"));
            ok(&["snapshot", &self.diag_url, "-o", f.to_str().unwrap()]);
            files.push(f.to_str().unwrap().to_owned());
        }
        let truth = (diag_examples::leaky::leaked_bytes() - leaked_first) as f64;
        (files, truth)
    }

    /// URL mode: diag takes the snapshots while a client keeps leaking.
    fn trend_of_the_url_while_it_leaks(&self) {
        let stop = AtomicBool::new(false);
        let live_dir = self.dir.join("live");
        let out = std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    self.hit("/leak?kb=16");
                    std::thread::sleep(Duration::from_millis(20)); // workload: the leak's pace
                }
            });
            let out = support::diag(&[
                "trend",
                &self.diag_url,
                "--every",
                "1s",
                "--count",
                "6",
                "--out",
                live_dir.to_str().unwrap(),
                "--json",
            ]);
            stop.store(true, Ordering::Relaxed);
            out
        });
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let json = String::from_utf8(out.stdout).unwrap();
        assert!(stderr.contains("snapshot 6/6"), "{stderr}");
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["files"].as_array().unwrap().len(), 6);
        for i in 1..=6 {
            assert!(live_dir.join(format!("heap-{i:03}.pb.gz")).exists());
        }
        assert_leak_ranked_first_and_growing(&v, &json);
    }

    /// `/debug/heap/history` as JSON.
    fn history(&self) -> Value {
        self.http
            .ok(&format!("{}/debug/heap/history", self.diag_url))
            .json()
    }

    /// The history the service recorded all along (every 200 ms here, the last 50 points):
    /// the same verdict with no waiting, from the points and a snapshot of now.
    fn trend_from_the_recorded_history(&self, files: &[String]) {
        let h = self.history();
        assert_eq!(h["interval_ms"], 200, "{h}");
        let points = h["points"].as_array().unwrap();
        assert!(points.len() >= 10 && points.len() <= 50, "{h}");
        let last = points.last().unwrap();
        assert!(last["inuse_bytes"].as_u64().unwrap() > 0, "{h}");
        assert!(last["live_bytes"].as_u64().unwrap() > 0, "{h}");
        assert_eq!(last["sample_rate"], 16 * 1024, "{h}");
        assert!(h["memory_bytes"].as_u64().unwrap() < 16 << 20, "{h}");
        assert_eq!(
            h["points_held"].as_u64().unwrap() as usize,
            points.len(),
            "{h}"
        );
        assert!(h["records"].as_u64().unwrap() >= points.len() as u64, "{h}");
        assert!(h["record_cpu_ns"].as_u64().unwrap() > 0, "{h}");
        let history_dir = self.dir.join("history");
        let json = ok(&[
            "trend",
            &self.diag_url,
            "--history",
            "--out",
            history_dir.to_str().unwrap(),
            "--json",
        ]);
        let v: Value = serde_json::from_str(&json).unwrap();
        // The points listed above, give or take one dropped or added since, and now.
        let fetched = v["files"].as_array().unwrap().len();
        assert!(
            fetched >= points.len() && fetched <= points.len() + 2,
            "{fetched} files for {} points",
            points.len()
        );
        assert!(history_dir.join("heap-001.pb.gz").exists());
        assert_leak_ranked_first_and_growing(&v, &json);
        // A recorded point's profile carries its own time; unknown or malformed points are
        // refused. The newest point of a fresh listing: the one listed above may have been
        // dropped as the oldest while `trend --history` ran (50 points of 200 ms span 10 s).
        let t = self.history()["points"].as_array().unwrap().last().unwrap()["time_nanos"]
            .as_i64()
            .unwrap();
        let answer = self.http.ok(&format!(
            "{}/debug/pprof/heap?at={t}&debug=1",
            self.diag_url
        ));
        let text = answer.text();
        assert!(text.starts_with("heap profile:"), "{text}");
        let status = |q: &str| support::status(&format!("{}/debug/pprof/heap?{q}", self.diag_url));
        assert_eq!(status("at=1"), 410);
        assert_eq!(status("at=soon"), 400);
        assert_eq!(status("at=0"), 400);
        fails(&["trend", &files[0], "--history"], "--history");
    }

    /// `diag diff URL --since D`: what grew since D ago, from the history, with no snapshot
    /// taken back then. Quiet for 1.5 s (points recorded), then a known leak; D reaches back
    /// to before the leak and not before the quiet time.
    fn diff_since_from_the_history(&self, files: &[String]) {
        let leaked_before = diag_examples::leaky::leaked_bytes();
        std::thread::sleep(Duration::from_millis(1500)); // workload: the quiet time before the leak
        let mark = std::time::Instant::now();
        for _ in 0..60 {
            self.hit("/leak?kb=64");
        }
        let leaked = diag_examples::leaky::leaked_bytes() - leaked_before;
        let since = (mark.elapsed() + Duration::from_millis(500)).max(Duration::from_secs(1));
        let diff_dir = self.dir.join("since");
        let out = support::diag(&[
            "diff",
            &self.diag_url,
            "--since",
            &format!("{:.3}s", since.as_secs_f64()),
            "--out",
            diff_dir.to_str().unwrap(),
            "--json",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("heap history point of"), "{stderr}");
        assert!(stderr.contains("snapshot of"), "{stderr}");
        assert_eq!(std::fs::read_dir(&diff_dir).unwrap().count(), 2, "{stderr}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let first = &v["sites"][0];
        assert!(support::is_the_leak(first), "{v}");
        let got = first["delta_bytes"].as_f64().unwrap();
        assert!(
            (got - leaked as f64).abs() <= 0.25 * leaked as f64,
            "diff --since: {got} bytes for {leaked} leaked ({stderr})"
        );
        fails(&["diff", &files[0], "--since", "1m"], "give its URL");
    }

    /// New settings take effect at once (a point is recorded right away, however long the
    /// interval), and a zero interval stops the recorder and clears the history.
    fn history_settings_take_effect_at_once(&self) {
        let stats = diag_core::heap::history_stats;
        // The point recorded under the settings just set, within 10 s: its record count.
        // Points are counted under the history's lock with the settings they were begun
        // under, and one begun under older settings never lands after a change.
        let recorded_on_change = |what: &str| {
            let generation = stats().settings_generation;
            wait_until(Duration::from_secs(10), what, || {
                let s = stats();
                if s.recorded_generation == generation {
                    Ok(s.records)
                } else {
                    Err(s)
                }
            })
        };
        // An hour apart: after the point recorded on the change, no regular one interferes.
        diag_core::heap::set_history(Duration::from_secs(3600), 10);
        let settled = recorded_on_change("a point recorded on the change to an hour");
        diag_core::heap::set_history(Duration::from_secs(3600), 10);
        assert_eq!(
            recorded_on_change("a point recorded on the second change"),
            settled + 1,
            "one point, and only one, recorded on the change"
        );
        std::thread::sleep(Duration::from_millis(600)); // checks that nothing happens: no record
        assert_eq!(
            stats().records,
            settled + 1,
            "recorded again within the hour"
        );
        assert!(diag_core::heap::history_points().len() <= 10);
        // Over HTTP: off (cleared), then on again, with bad parameters refused.
        let post = |q: &str| {
            self.http
                .post(&format!("{}/debug/heap/history?{q}", self.diag_url))
                .status
        };
        // Cleared before the POST is answered (under the history's lock): no wait.
        assert_eq!(post("interval_ms=0"), 200);
        assert!(diag_core::heap::history_points().is_empty());
        assert_eq!(diag_core::heap::history_stats().interval_ms, 0);
        fails(
            &["trend", &self.diag_url, "--history"],
            "the history is off",
        );
        fails(
            &["diff", &self.diag_url, "--since", "1m"],
            "the history is off",
        );
        assert_eq!(post("interval_ms=50"), 400);
        assert_eq!(post("interval_ms=1000&points=1"), 400);
        assert_eq!(post("points=10"), 400);
        let off = stats().records;
        assert_eq!(post("interval_ms=1000&points=5"), 200);
        assert_eq!(
            recorded_on_change("a point recorded when turned back on"),
            off + 1,
            "no point, or more than one, recorded when turned back on"
        );
        let st = stats();
        assert_eq!(
            (st.interval_ms, st.max_points, st.points_held),
            (1000, 5, 1)
        );
    }
}

/// The trend of the seven snapshots (given in reverse: the timestamps put them in order): the
/// leak ranked first, growing, its growth within 25 % of the truth; the cache plateaued;
/// nothing else grows like the leak.
fn trend_calls_the_leak_growing_and_the_cache_plateaued(files: &[String], truth: f64) {
    let mut args = vec!["trend", "--json"];
    args.extend(files.iter().rev().map(String::as_str));
    let json = ok(&args);
    let v: Value = serde_json::from_str(&json).expect("trend --json is JSON");
    assert_eq!(v["slope_per"], "second", "{json}");
    let first = &v["sites"][0];
    assert!(support::is_the_leak(first), "leak not ranked first: {json}");
    assert_eq!(first["verdict"], "growing", "{first}");
    assert!(first["p_growing"].as_f64().unwrap() < 0.05, "{first}");
    assert!(first["slope_bytes"].as_f64().unwrap() > 0.0, "{first}");
    let delta = first["delta_bytes"].as_i64().unwrap() as f64;
    support::assert_within_25_percent("delta against leaked", delta, truth);
    let series = first["bytes"].as_array().unwrap();
    assert_eq!(series.len(), 7);
    let inputs: Vec<u64> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["input"].as_u64().unwrap())
        .collect();
    assert_eq!(inputs, [6, 5, 4, 3, 2, 1, 0], "time order from timestamps");

    let cache = site(&v, "leaky::warm_cache").unwrap_or_else(|| panic!("no cache: {json}"));
    assert_eq!(cache["verdict"], "plateaued", "{cache}");
    for s in v["sites"].as_array().unwrap() {
        if s["verdict"] == "growing" {
            // Only the leak (and, at most, runtime bookkeeping far smaller than it) grows.
            let slope = s["slope_bytes"].as_f64().unwrap();
            assert!(
                s == first || slope < first["slope_bytes"].as_f64().unwrap() * 0.05,
                "something else grows like a leak: {s}"
            );
        }
    }
}

/// A diff of the first and last snapshots shows the cache as growth: what the trend adds.
fn a_diff_shows_the_cache_as_growth_too(files: &[String]) {
    let diff = ok(&["diff", &files[0], &files[6], "--json"]);
    let d: Value = serde_json::from_str(&diff).unwrap();
    let cache_growth = site(&d, "leaky::warm_cache").unwrap()["delta_bytes"]
        .as_i64()
        .unwrap();
    assert!(cache_growth > 1 << 20, "{diff}");
}

/// The table says the same to a person; four snapshots cannot show growth.
fn the_table_says_the_same(files: &[String]) {
    let table = ok(&[
        "trend", &files[0], &files[3], &files[6], &files[1], &files[5], &files[2],
    ]);
    assert!(table.contains("over 6 snapshots"), "{table}");
    let leak_row = table
        .lines()
        .find(|l| l.contains("remember_request"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(leak_row.starts_with("growing"), "{table}");
    assert!(
        leak_row.contains(" 5/5 ") && leak_row.contains("0.031"),
        "{table}"
    );
    // Four snapshots cannot show growth: the table says how many would.
    let table = ok(&["trend", &files[0], &files[3], &files[6], &files[1]]);
    assert!(
        table.contains("note: 4 snapshots cannot show a trend")
            && table.contains("take at least 6"),
        "{table}"
    );
}

/// Bad input: a clear error and exit code 2, never a panic, and no litter.
fn bad_input_is_refused(leaky: &Leaky, files: &[String]) {
    let diag_url = &leaky.diag_url;
    fails(&["trend", &files[0], &files[1]], "at least 3 snapshots");
    fails(&["trend", &files[0], &files[1], &files[1]], "same time");
    fails(&["trend", diag_url, &files[0], &files[1]], "either one URL");
    fails(
        &["trend", diag_url, "--every", "10ms"],
        "--every \"10ms\" must be between",
    );
    fails(
        &[
            "trend",
            "http://127.0.0.1:9",
            "--every",
            "1s",
            "--count",
            "3",
        ],
        "http://127.0.0.1:9",
    );
    // The failed run above left no empty snapshot directory behind (diag runs in fixtures/).
    let litter: Vec<_> = std::fs::read_dir(support::tests_dir("fixtures"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("diag-trend-"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
    let junk = leaky.dir.join("junk.pb.gz");
    std::fs::write(&junk, b"not a profile").unwrap();
    fails(
        &["trend", &files[0], &files[1], junk.to_str().unwrap()],
        "junk.pb.gz",
    );
}

/// The leak is growing and ranked first in a trend's JSON.
fn assert_leak_ranked_first_and_growing(v: &Value, json: &str) {
    let leak = site(v, "leaky::remember_request").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(leak["verdict"], "growing", "{json}");
    assert_eq!(v["sites"][0], *leak, "{json}");
}

/// A run that must fail (exit code 2, a `diag: error:` line, no panic) naming `needle`.
fn fails(args: &[&str], needle: &str) {
    let err = support::fails(args);
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn site<'a>(v: &'a Value, suffix: &str) -> Option<&'a Value> {
    v["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["function"].as_str().unwrap().ends_with(suffix))
}
