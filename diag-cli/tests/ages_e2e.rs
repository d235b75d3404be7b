//! End to end over a real socket: `diag ages` tells a leak, a cache and churn apart from one
//! snapshot. The aging workload (examples/src/aging.rs) runs in this process with `DiagAlloc`
//! installed: a leak of 40 KiB a tick from 30 s on, a cache whose entries leave after 10 s,
//! and half-second churn. At ~90 s one snapshot must call the leak `leak-like` with its onset
//! within 10 s of the truth and its rate within 25 %, the cache `bounded` with its window
//! within 30 %, the churn `young`; `go tool pprof -tags` must list the `age` label and
//! `-tagfocus` filter by it. The heap history the service records meanwhile (a point every
//! 2 s) must say the same of its points: `diag ages URL --at 10s`, and `diag ages` on a point
//! `diag trend --history` saved, call the leak `leak-like` and the cache `bounded` where the
//! trend over the same points calls the leak `growing` and the cache not. One test: the
//! allocator is process-global; it takes ~90 s.

use std::time::{Duration, Instant};

mod support;

use diag_examples::aging;
use serde_json::Value;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// When the snapshot is taken, after the workload starts.
const SNAPSHOT_AT: Duration = Duration::from_secs(90);

/// How often the service records its heap history.
const HISTORY_INTERVAL: Duration = Duration::from_secs(2);

/// The site of `ages --json` in the workload's function `name` (or a closure of it).
fn site<'a>(sites: &'a [Value], name: &str) -> &'a Value {
    let full = format!("diag_examples::aging::{name}");
    sites
        .iter()
        .find(|s| s["site"].as_str().is_some_and(|f| f.starts_with(&full)))
        .unwrap_or_else(|| panic!("no site {full} in {sites:#?}"))
}

fn within(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got:.1} vs {want:.1} (tolerance {tolerance:.1})"
    );
}

#[test]
fn one_snapshot_tells_leak_cache_and_churn_apart() {
    let service = diag_examples::InProcess::start(
        diag_core::Diag::builder()
            .heap_sample_bytes(128 * 1024)
            .heap_history(HISTORY_INTERVAL, 60),
        diag_examples::leaky::app(),
    );
    let started = Instant::now();
    let workload = aging::start();
    // The workload runs for 90 s: the leak's and the cache's ages need that long to show.
    // An earlier snapshot at 60 s is the report's first.
    let run_until = |at: Duration| {
        support::wait_until(at + Duration::from_secs(30), "the workload to run", || {
            let t = started.elapsed();
            if t >= at { Ok(()) } else { Err(t) }
        })
    };
    let dir = support::scratch("ages_e2e");
    let first = dir.join("first.pb.gz");
    run_until(SNAPSHOT_AT - Duration::from_secs(30));
    support::ok(&["snapshot", &service.diag_url, "-o", first.to_str().unwrap()]);
    run_until(SNAPSHOT_AT);
    let file = dir.join("heap.pb.gz");
    let saved = support::ok(&["snapshot", &service.diag_url, "-o", file.to_str().unwrap()]);
    // The service's heap now, read by URL, names the leak too.
    let live = support::ok(&["ages", &service.diag_url, "--top", "3"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (leaked, onset) = (aging::leaked_bytes() as f64, aging::onset_unix_secs());
    history_ages_agree_with_the_trend(&service.diag_url, &dir);
    aging::stop();
    workload.join().unwrap();
    let onset = onset.expect("the leak began");

    let json: Value = serde_json::from_str(&support::ok(&[
        "ages",
        file.to_str().unwrap(),
        "--top",
        "0",
        "--json",
    ]))
    .expect("ages --json is JSON");
    let sites = json["sites"].as_array().expect("sites");

    let leak = site(sites, "leak_tick");
    assert_eq!(leak["verdict"], "leak-like", "{leak:#}");
    within(
        leak["onset_unix_secs"].as_f64().unwrap(),
        onset,
        10.0,
        "onset",
    );
    let rate = leaked / (now - onset);
    let got = leak["rate_bytes_per_sec"].as_f64().unwrap();
    within(got, rate, rate * 0.25, "leak rate, bytes/s");

    let cache = site(sites, "cache_tick");
    assert_eq!(cache["verdict"], "bounded", "{cache:#}");
    let window = aging::CACHE_WINDOW.as_secs_f64();
    within(
        cache["window_secs"].as_f64().unwrap(),
        window,
        window * 0.3,
        "cache window",
    );
    assert!(cache["onset_unix_secs"].is_null() && cache["rate_bytes_per_sec"].is_null());

    let churn = site(sites, "churn_tick");
    assert_eq!(churn["verdict"], "young", "{churn:#}");
    for key in ["short", "live_bytes", "median_age_secs", "oldest_age_secs"] {
        assert!(!churn[key].is_null(), "{key} missing: {churn:#}");
    }
    assert_eq!(churn["share_older_than_600s"].as_f64(), Some(0.0));
    assert!(churn["samples"].as_u64().unwrap() >= 10);

    // `diag snapshot` names the leak-like site after saving, and the live read agrees.
    assert!(
        saved.contains("leak-like: diag_examples::aging::leak_tick"),
        "{saved}"
    );
    let leak_row = live.lines().find(|l| l.contains("leak_tick")).unwrap_or("");
    assert!(leak_row.starts_with("leak-like"), "{live}");
    // The table says the same for people.
    let table = support::ok(&["ages", file.to_str().unwrap()]);
    assert!(
        table.contains("growing since") && table.contains("window"),
        "{table}"
    );

    // The report's growth table has the ages column: the leak growing since its onset.
    let page = dir.join("report.html");
    let (a, b, out) = (
        first.to_str().unwrap(),
        file.to_str().unwrap(),
        page.to_str().unwrap(),
    );
    support::ok(&["report", a, b, "-o", out]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("leak-like, growing since"),
        "no ages column in {out}"
    );

    // The label machinery groups by age.
    let by_age = support::ok(&["top", file.to_str().unwrap(), "--by", "age"]);
    assert!(
        by_age.contains("10s-1m") && by_age.contains("<1s"),
        "{by_age}"
    );

    // Go's pprof lists the label and keeps only the bucket asked for.
    let Some(go) = support::peer("go", "golang-go", None) else {
        return;
    };
    let pprof = |args: &[&str]| {
        let out = std::process::Command::new(&go)
            .args(["tool", "pprof"])
            .args(args)
            .arg(&file)
            .env("HOME", std::env::temp_dir())
            .output()
            .expect("go tool pprof");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tags = pprof(&["-tags"]);
    for want in ["age:", "10s-1m", "1-10s", "<1s", "age_secs:"] {
        assert!(
            tags.contains(want),
            "`go tool pprof -tags` lacks {want}: {tags}"
        );
    }
    let focused = pprof(&["-tags", "-tagfocus", "age=10s-1m"]);
    let age_lines: Vec<&str> = focused
        .split("age:")
        .nth(1)
        .expect("an age section")
        .split("age_secs:")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.contains('%'))
        .collect();
    assert!(
        age_lines.len() == 1 && age_lines[0].contains("10s-1m"),
        "-tagfocus age=10s-1m kept other buckets: {focused}"
    );
}

/// The verdicts of `ages --json` output for the leak and the cache.
fn leak_and_cache_ages(json: &str) -> (String, String) {
    let v: Value = serde_json::from_str(json).expect("ages --json is JSON");
    let sites = v["sites"].as_array().expect("sites");
    let verdict = |name| site(sites, name)["verdict"].as_str().unwrap().to_owned();
    (verdict("leak_tick"), verdict("cache_tick"))
}

/// The heap history's points have ages: read by `--at` and from a point `trend --history`
/// saved, they call the leak and the cache what the trend over the points does.
fn history_ages_agree_with_the_trend(url: &str, dir: &std::path::Path) {
    let out = dir.join("history");
    let trend: Value = serde_json::from_str(&support::ok(&[
        "trend",
        url,
        "--history",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]))
    .expect("trend --json is JSON");
    let growing = |name: &str| {
        let full = format!("diag_examples::aging::{name}");
        trend["sites"]
            .as_array()
            .expect("sites")
            .iter()
            .find(|s| s["function"].as_str().is_some_and(|f| f.starts_with(&full)))
            .is_some_and(|s| s["verdict"] == "growing")
    };
    assert!(
        growing("leak_tick"),
        "trend --history: the leak not growing: {trend:#}"
    );
    assert!(
        !growing("cache_tick"),
        "trend --history: the cache growing: {trend:#}"
    );

    let at = support::ok(&["ages", url, "--at", "10s", "--top", "0", "--json"]);
    assert_eq!(
        leak_and_cache_ages(&at),
        ("leak-like".to_owned(), "bounded".to_owned()),
        "ages --at 10s: {at}"
    );
    // The last history point `trend` saved (the file after it is its snapshot of now).
    let files = trend["files"].as_array().expect("files");
    let point = files[files.len() - 2].as_str().unwrap();
    let saved = support::ok(&["ages", point, "--top", "0", "--json"]);
    assert_eq!(
        leak_and_cache_ages(&saved),
        ("leak-like".to_owned(), "bounded".to_owned()),
        "ages {point}: {saved}"
    );

    // What the ages cost the history, for BENCHMARKS.md.
    let h = support::Http::new()
        .ok(&format!("{url}/debug/heap/history"))
        .json();
    eprintln!(
        "heap history: {} points, {} bytes, of which ages {} bytes",
        h["points_held"], h["memory_bytes"], h["age_memory_bytes"]
    );
    assert!(h["age_memory_bytes"].as_u64().unwrap() > 0, "{h}");
}
