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
    let err = (delta - truth).abs() / truth;
    assert!(
        err < 0.25,
        "delta {delta} vs leaked {truth}: {:.1} % off",
        err * 100.0
    );
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

    // A delta profile (Go's `?seconds=N`): what the next seconds allocate and keep. 20 leaking
    // requests of 1 MiB (each sampled with probability 1 - e^-4 at 256 KiB, so the estimate
    // is within a few % of the truth) land inside a 3 s window.
    let delta = dir.join("delta.pb.gz");
    let summary = std::thread::scope(|s| {
        let taker = s.spawn(|| {
            ok(diag(&[
                "snapshot",
                &diag_url,
                "--allocs",
                "--seconds",
                "3",
                "-o",
                delta.to_str().unwrap(),
            ]))
        });
        // Lead time: the window opens when the server has taken its first snapshot, which
        // nothing outside the server shows; the leak must fall inside the 3 s.
        std::thread::sleep(Duration::from_millis(500)); // lead time for the window to open
        let before = diag_examples::leaky::leaked_bytes();
        hit(&http, &format!("{app_url}/leak?kb=1024"), 20);
        let leaked = diag_examples::leaky::leaked_bytes() - before;
        (taker.join().unwrap(), leaked)
    });
    let (summary, leaked) = summary;
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
        (got - leaked as f64).abs() < 0.25 * leaked as f64,
        "delta profile: {got} allocated for {leaked} leaked"
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
