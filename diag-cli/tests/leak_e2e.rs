//! End to end over real sockets: the leaky example runs in this process with `DiagAlloc`
//! installed; the `diag` binary takes two snapshots around a known leak, and `diag diff
//! --json` must rank the leaking function first with a delta within 25 % of the truth.
//! `go tool pprof -traces` must read the snapshot. One test: the allocator is process-global.

use std::process::{Command, Output};
use std::time::Duration;

mod support;

use support::Http;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

fn diag(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(args)
        .output()
        .expect("running diag")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "diag failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `n` GETs of `url`, each answered 200.
/// Now, in nanoseconds since the Unix epoch (the clock profiles carry).
fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn hit(http: &Http, url: &str, n: usize) {
    for _ in 0..n {
        http.ok(url);
    }
}

/// Runs `go tool pprof` if Go is installed; in CI it must be.
fn go_pprof(args: &[&str]) -> Option<String> {
    let go = support::peer("go", "golang-go", None)?;
    let out = Command::new(go)
        .args(["tool", "pprof"])
        .args(args)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("go tool pprof");
    assert!(
        out.status.success(),
        "go tool pprof failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn snapshot_diff_names_the_leak() {
    let service = diag_examples::InProcess::start(
        diag_core::Diag::builder().heap_sample_bytes(256 * 1024),
        diag_examples::leaky::app(),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());

    let http = Http::with_timeout(Duration::from_secs(30));
    let dir = std::env::temp_dir().join(format!("diag-leak-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.pb.gz");
    let b = dir.join("b.pb.gz");

    hit(&http, &format!("{app_url}/churn"), 200);
    hit(&http, &format!("{app_url}/leak?kb=64"), 100);
    let summary = ok(diag(&["snapshot", &diag_url, "-o", a.to_str().unwrap()]));
    assert!(summary.contains("in use"), "{summary}");
    let leaked_before = diag_examples::leaky::leaked_bytes();
    // The leak under test: 1600 x 64 KiB = 100 MiB, with churn interleaved.
    for _ in 0..16 {
        hit(&http, &format!("{app_url}/leak?kb=64"), 100);
        hit(&http, &format!("{app_url}/churn"), 50);
    }
    let truth = (diag_examples::leaky::leaked_bytes() - leaked_before) as f64;
    ok(diag(&["snapshot", &diag_url, "-o", b.to_str().unwrap()]));

    let json = ok(diag(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("diff --json is JSON");
    let sites = v["sites"].as_array().expect("sites");
    let first = &sites[0];
    assert!(support::is_the_leak(first), "leak not ranked first: {json}");
    let delta = first["delta_bytes"].as_i64().unwrap() as f64;
    support::assert_within_25_percent("delta against leaked", delta, truth);
    for k in ["before_bytes", "after_bytes", "delta_objects"] {
        assert!(first[k].is_i64(), "missing {k}: {first}");
    }
    let stack = first["stack"].as_array().unwrap();
    assert!(stack[0].as_str().unwrap().ends_with("remember_request"));
    // Sorted by delta_bytes, descending; churn is not a leak.
    let deltas: Vec<i64> = sites
        .iter()
        .map(|s| s["delta_bytes"].as_i64().unwrap())
        .collect();
    assert!(deltas.windows(2).all(|w| w[0] >= w[1]), "{deltas:?}");
    for s in sites {
        if s["function"].as_str().unwrap().contains("render_page") {
            assert!(
                s["delta_bytes"].as_i64().unwrap() < (truth * 0.05) as i64,
                "churn reported as growth: {s}"
            );
        }
    }

    // The table names it too, and the SVG is written.
    let svg = dir.join("growth.svg");
    let table = ok(diag(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]));
    assert!(table.contains("remember_request"), "{table}");
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg_text.trim_end().ends_with("</svg>"),
        "SVG is not complete"
    );

    // Go's pprof reads the snapshot.
    if let Some(traces) = go_pprof(&["-traces", b.to_str().unwrap()]) {
        assert!(traces.contains("remember_request"), "{traces}");
    }
    if let Some(top) = go_pprof(&["-top", "-sample_index=inuse_space", b.to_str().unwrap()]) {
        assert!(top.contains("remember_request"), "{top}");
        // The mapping table names the main binary (this test executable).
        assert!(
            top.contains("File: leak_e2e") && !top.contains("binary filename not available"),
            "{top}"
        );
    }

    // A delta profile (Go's `?seconds=N`): what the next seconds allocate and keep. Leaking
    // requests of 1 MiB (each sampled with probability 1 - e^-4 at 256 KiB, so the estimate
    // is within a few % of the truth) run at a steady pace from before the 3 s window opens to
    // after it closes; the truth is what the requests inside the profile's own window
    // (`time_nanos - duration_nanos` to `time_nanos`) leaked.
    let delta = dir.join("delta.pb.gz");
    let done = std::sync::atomic::AtomicBool::new(false);
    let (summary, requests) = std::thread::scope(|s| {
        let leaker = s.spawn(|| {
            let mut requests = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let before = diag_examples::leaky::leaked_bytes();
                let start = unix_nanos();
                http.ok(&format!("{app_url}/leak?kb=1024"));
                requests.push((
                    start,
                    unix_nanos(),
                    diag_examples::leaky::leaked_bytes() - before,
                ));
                std::thread::sleep(Duration::from_millis(100)); // workload: the leak's pace
            }
            requests
        });
        let summary = ok(diag(&[
            "snapshot",
            &diag_url,
            "--allocs",
            "--seconds",
            "3",
            "-o",
            delta.to_str().unwrap(),
        ]));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (summary, leaker.join().unwrap())
    });
    let window = {
        let p = diag_core::profile::load(&std::fs::read(&delta).unwrap()).unwrap();
        (p.time_nanos - p.duration_nanos, p.time_nanos)
    };
    // Requests wholly inside the window leaked into it; those across an edge may have.
    let inside: u64 = requests
        .iter()
        .filter(|&&(a, b, _)| a >= window.0 && b <= window.1)
        .map(|r| r.2)
        .sum();
    let overlapping: u64 = requests
        .iter()
        .filter(|&&(a, b, _)| a < window.1 && b > window.0)
        .map(|r| r.2)
        .sum();
    assert!(
        inside >= 10 << 20,
        "fewer than 10 leaking requests inside the window: {requests:?}, window {window:?}"
    );
    let leaked = (inside, overlapping);
    assert!(summary.starts_with("over 3 s: allocated"), "{summary}");
    let json = ok(diag(&[
        "top",
        delta.to_str().unwrap(),
        "--json",
        "--top",
        "1",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["sample_type"]["ty"], "alloc_space", "{json}");
    let first = &v["entries"][0];
    assert!(support::is_the_leak(first), "{json}");
    let got = first["flat"].as_f64().unwrap();
    assert!(
        got > 0.75 * leaked.0 as f64 && got < 1.25 * leaked.1 as f64,
        "delta profile: {got} allocated for {leaked:?} leaked (inside, with those across)"
    );
    if let Some(top) = go_pprof(&["-top", "-sample_index=inuse_space", delta.to_str().unwrap()]) {
        assert!(top.contains("Duration: 3"), "{top}");
    }
    let status = |q: &str| support::status(&format!("{diag_url}/debug/pprof/heap?{q}"));
    // The same endpoints through `diag top URL --profile`: allocations since the start.
    let json = ok(diag(&[
        "top",
        &diag_url,
        "--profile",
        "allocs",
        "--json",
        "--top",
        "3",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["sample_type"]["ty"], "alloc_space", "{json}");
    assert!(json.contains("leaky::remember_request"), "{json}");
    assert_eq!(status("seconds=0"), 400);
    assert_eq!(status("seconds=1&debug=1"), 400);
    assert_eq!(status("seconds=1&at=5"), 400);

    // An unreachable URL is named in the error, with exit code 2.
    let out = diag(&[
        "snapshot",
        "http://127.0.0.1:9/",
        "-o",
        dir.join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
    // The app's port is not a diag listener: a clear 404 message.
    let out = diag(&["snapshot", &app_url, "-o", dir.join("y").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    std::fs::remove_dir_all(&dir).ok();
    drop(service);
}
