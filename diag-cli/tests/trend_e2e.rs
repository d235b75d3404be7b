//! Leak trends end to end over real sockets: the leaky example runs in this process with
//! `DiagAlloc` installed. Across seven snapshots the leak keeps growing while a bounded cache
//! fills and levels off: `diag trend` must call the first growing (ranked first, its growth
//! within 25 % of the truth) and the second plateaued, where a two-snapshot diff shows both
//! as growth. Then `diag trend URL` takes the snapshots itself while traffic runs. One test:
//! the allocator is process-global.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::ok;

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// A run that must fail (exit code 2, a `diag: error:` line, no panic) naming `needle`.
fn fails(args: &[&str], needle: &str) {
    let err = support::fails(args);
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn get(agent: &ureq::Agent, url: &str) {
    let mut r = agent.get(url).call().expect(url);
    assert_eq!(r.status(), 200, "{url}");
    r.body_mut().read_to_vec().unwrap();
}

fn site<'a>(v: &'a Value, suffix: &str) -> Option<&'a Value> {
    v["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["function"].as_str().unwrap().ends_with(suffix))
}

#[test]
fn trend_tells_the_leak_from_the_filling_cache() {
    let service = diag_examples::InProcess::start(
        diag_core::Diag::builder()
            .heap_sample_bytes(16 * 1024)
            .snapshot_min_interval(Duration::ZERO)
            .heap_history(Duration::from_millis(200), 50),
        diag_examples::leaky::app(),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let dir = support::scratch("trend");

    // Seven snapshots, 500 ms apart (as `diag trend URL --every` spaces them). Between each:
    // 30 leaking requests of 64 KiB and churn; the cache takes 11 new keys of 256 KiB each
    // time (blocks that large are always sampled at 16 KiB, so its estimate is exact), so it
    // is full (32 entries) from the third interval on and only turns over after that.
    let mut files = Vec::new();
    let mut key = 0u64;
    let mut leaked_first = 0;
    let start = std::time::Instant::now();
    for k in 0..7 {
        if k > 0 {
            for _ in 0..30 {
                get(&agent, &format!("{app_url}/leak?kb=64"));
            }
            for _ in 0..11 {
                key += 1;
                get(&agent, &format!("{app_url}/warm?key={key}&kb=256"));
            }
            for _ in 0..10 {
                get(&agent, &format!("{app_url}/churn"));
            }
            if let Some(wait) = (Duration::from_millis(500) * k).checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if k == 0 {
            leaked_first = diag_examples::leaky::leaked_bytes();
        }
        let f = dir.join(format!("s{k}.pb.gz"));
        ok(&["snapshot", &diag_url, "-o", f.to_str().unwrap()]);
        files.push(f.to_str().unwrap().to_owned());
    }
    let truth = (diag_examples::leaky::leaked_bytes() - leaked_first) as f64;

    // Given in reverse: the timestamps put them in order.
    let mut args = vec!["trend", "--json"];
    args.extend(files.iter().rev().map(String::as_str));
    let json = ok(&args);
    let v: Value = serde_json::from_str(&json).expect("trend --json is JSON");
    assert_eq!(v["slope_per"], "second", "{json}");
    let first = &v["sites"][0];
    assert!(
        first["function"]
            .as_str()
            .unwrap()
            .ends_with("leaky::remember_request"),
        "leak not ranked first: {json}"
    );
    assert_eq!(first["verdict"], "growing", "{first}");
    assert!(first["p_growing"].as_f64().unwrap() < 0.05, "{first}");
    assert!(first["slope_bytes"].as_f64().unwrap() > 0.0, "{first}");
    let delta = first["delta_bytes"].as_i64().unwrap() as f64;
    let err = (delta - truth).abs() / truth;
    assert!(
        err < 0.25,
        "delta {delta} vs leaked {truth}: {:.1} % off",
        err * 100.0
    );
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

    // A diff of the first and last snapshots shows the cache as growth: what the trend adds.
    let diff = ok(&["diff", &files[0], &files[6], "--json"]);
    let d: Value = serde_json::from_str(&diff).unwrap();
    let cache_growth = site(&d, "leaky::warm_cache").unwrap()["delta_bytes"]
        .as_i64()
        .unwrap();
    assert!(cache_growth > 1 << 20, "{diff}");

    // The table says the same to a person.
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

    // Bad input: a clear error and exit code 2, never a panic.
    fails(&["trend", &files[0], &files[1]], "at least 3 snapshots");
    fails(&["trend", &files[0], &files[1], &files[1]], "same time");
    fails(
        &["trend", &diag_url, &files[0], &files[1]],
        "either one URL",
    );
    fails(
        &["trend", &diag_url, "--every", "10ms"],
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
    let junk = dir.join("junk.pb.gz");
    std::fs::write(&junk, b"not a profile").unwrap();
    fails(
        &["trend", &files[0], &files[1], junk.to_str().unwrap()],
        "junk.pb.gz",
    );

    // URL mode: diag takes the snapshots while a client keeps leaking.
    let stop = AtomicBool::new(false);
    let live_dir = dir.join("live");
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                get(&agent, &format!("{app_url}/leak?kb=16"));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let out = support::diag(&[
            "trend",
            &diag_url,
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
    let leak = site(&v, "leaky::remember_request").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(leak["verdict"], "growing", "{json}");
    assert_eq!(v["sites"][0], *leak, "{json}");

    // The history the service recorded all along (every 200 ms here, the last 50 points):
    // the same verdict with no waiting, from the points and a snapshot of now.
    let mut r = agent
        .get(&format!("{diag_url}/debug/heap/history"))
        .call()
        .unwrap();
    let h: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
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
    let history_dir = dir.join("history");
    let json = ok(&[
        "trend",
        &diag_url,
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
    let leak = site(&v, "leaky::remember_request").unwrap_or_else(|| panic!("{json}"));
    assert_eq!(leak["verdict"], "growing", "{json}");
    assert_eq!(v["sites"][0], *leak, "{json}");
    // A recorded point's profile carries its own time; unknown or malformed points are refused.
    // The newest point of a fresh listing: the one listed above may have been dropped as the
    // oldest while `trend --history` ran (50 points of 200 ms span 10 s).
    let h: Value = serde_json::from_slice(
        &agent
            .get(&format!("{diag_url}/debug/heap/history"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap();
    let t = h["points"].as_array().unwrap().last().unwrap()["time_nanos"]
        .as_i64()
        .unwrap();
    let mut r = agent
        .get(&format!("{diag_url}/debug/pprof/heap?at={t}&debug=1"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.body_mut().read_to_string().unwrap();
    assert!(text.starts_with("heap profile:"), "{text}");
    let status = |q: &str| support::status(&format!("{diag_url}/debug/pprof/heap?{q}"));
    assert_eq!(status("at=1"), 410);
    assert_eq!(status("at=soon"), 400);
    assert_eq!(status("at=0"), 400);
    fails(&["trend", &files[0], "--history"], "--history");

    // `diag diff URL --since D`: what grew since D ago, from the history, with no snapshot
    // taken back then. Quiet for 1.5 s (points recorded), then a known leak; D reaches back
    // to before the leak and not before the quiet time.
    let leaked_before = diag_examples::leaky::leaked_bytes();
    std::thread::sleep(Duration::from_millis(1500));
    let mark = std::time::Instant::now();
    for _ in 0..60 {
        get(&agent, &format!("{app_url}/leak?kb=64"));
    }
    let leaked = diag_examples::leaky::leaked_bytes() - leaked_before;
    let since = (mark.elapsed() + Duration::from_millis(500)).max(Duration::from_secs(1));
    let diff_dir = dir.join("since");
    let out = support::diag(&[
        "diff",
        &diag_url,
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
    assert!(
        first["function"]
            .as_str()
            .unwrap()
            .ends_with("leaky::remember_request"),
        "{v}"
    );
    let got = first["delta_bytes"].as_f64().unwrap();
    assert!(
        (got - leaked as f64).abs() <= 0.25 * leaked as f64,
        "diff --since: {got} bytes for {leaked} leaked ({stderr})"
    );
    fails(&["diff", &files[0], "--since", "1m"], "give its URL");

    // New settings take effect at once (a point is recorded right away, however long the
    // interval), and a zero interval stops the recorder and clears the history.
    let records = || diag_core::heap::history_stats().records;
    let wait_past = |n: u64| {
        let t0 = std::time::Instant::now();
        while records() <= n && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        records()
    };
    // An hour apart: after the point recorded on the change, no regular one interferes.
    let before = records();
    diag_core::heap::set_history(Duration::from_secs(3600), 10);
    wait_past(before);
    std::thread::sleep(Duration::from_millis(200));
    let settled = records();
    diag_core::heap::set_history(Duration::from_secs(3600), 10);
    assert_eq!(
        wait_past(settled),
        settled + 1,
        "no point recorded on the change"
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(records(), settled + 1, "recorded again within the hour");
    assert!(diag_core::heap::history_points().len() <= 10);
    // Over HTTP: off (cleared), then on again, with bad parameters refused.
    let post = |q: &str| {
        agent
            .post(&format!("{diag_url}/debug/heap/history?{q}"))
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
            .unwrap()
            .status()
            .as_u16()
    };
    // Cleared before the POST is answered (under the history's lock): no wait.
    assert_eq!(post("interval_ms=0"), 200);
    assert!(diag_core::heap::history_points().is_empty());
    assert_eq!(diag_core::heap::history_stats().interval_ms, 0);
    fails(&["trend", &diag_url, "--history"], "the history is off");
    fails(&["diff", &diag_url, "--since", "1m"], "the history is off");
    assert_eq!(post("interval_ms=50"), 400);
    assert_eq!(post("interval_ms=1000&points=1"), 400);
    assert_eq!(post("points=10"), 400);
    let off = records();
    assert_eq!(post("interval_ms=1000&points=5"), 200);
    assert_eq!(
        wait_past(off),
        off + 1,
        "no point recorded when turned back on"
    );
    let st = diag_core::heap::history_stats();
    assert_eq!(
        (st.interval_ms, st.max_points, st.points_held),
        (1000, 5, 1)
    );

    std::fs::remove_dir_all(&dir).ok();
    drop(service);
}
