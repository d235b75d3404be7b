//! End to end: the leaky example runs in this process with `DIAG_CAPTURE_DIR` and a
//! `DIAG_MEMORY_LIMIT_BYTES` its leak will cross (no cgroup is touched). The capture must
//! appear as two pprof files and an index line; `diag diff DIR` and `diag report DIR` must
//! name the leak from them, and so must `go tool pprof`; a leak suspect within the next ten
//! minutes must be counted, not written; a missing directory must fail soft, with the
//! counter. One test: the allocator and the capture settings are process-global.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use diag_core::wire::CaptureEntry;

mod support;

use support::{Http, wait_until, when};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

const MIB: u64 = 1 << 20;

/// This process's resident set, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The capture directory's index lines, parsed (none if there is no index yet).
fn index(dir: &Path) -> Vec<CaptureEntry> {
    std::fs::read_to_string(dir.join(diag_core::heap::INDEX_FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn pprof_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pb.gz"))
        .collect()
}

/// The value of a metric line (`name{labels} value`), 0 if absent.
fn metric(http: &Http, diag_url: &str, series: &str) -> f64 {
    let text = http.ok(&format!("{diag_url}/metrics")).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn diag(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_leak_near_the_memory_limit_is_captured() {
    let dir = support::scratch("capture");
    for f in pprof_files(&dir) {
        std::fs::remove_file(f).unwrap();
    }
    let _ = std::fs::remove_file(dir.join(diag_core::heap::INDEX_FILE));
    // 90 % of the limit lies 96 MiB above the resident set now.
    let limit = (rss() + 96 * MIB) * 10 / 9;
    // SAFETY: no other thread of this test binary reads the environment yet (one test).
    unsafe {
        std::env::set_var("DIAG_CAPTURE_DIR", &dir);
        std::env::set_var("DIAG_MEMORY_LIMIT_BYTES", limit.to_string());
    }
    let builder = diag_core::Diag::builder()
        .heap_sample_bytes(256 * 1024)
        .from_env()
        .expect("the capture variables parse");
    let service = diag_examples::InProcess::start(
        builder,
        diag_examples::leaky::app().layer(diag_core::layer()),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());
    let http = Http::new();
    assert!(
        rss() < limit * 9 / 10,
        "the service starts above 90 % of the limit: {} of {limit}",
        rss()
    );
    assert!(index(&dir).is_empty(), "a capture before any leak");

    // Leak 4 MiB a step while below 90 %, until the capture is on disk (the capture thread
    // reads memory once a second, then writes).
    let entry = wait_until(Duration::from_secs(90), "a memory_limit capture", || {
        if rss() < limit * 9 / 10 {
            for _ in 0..4 {
                http.ok(&format!("{app_url}/leak?kb=1024"));
            }
        }
        when(index(&dir), |v| !v.is_empty()).map(|v| v[0].clone())
    });
    assert_eq!(entry.reason, "memory_limit", "{entry:?}");
    assert_eq!(entry.usage_source.as_deref(), Some("rss"), "{entry:?}");
    assert_eq!(entry.limit_bytes, Some(limit), "{entry:?}");
    let usage = entry.usage_bytes.expect("usage recorded");
    assert!(usage * 10 >= limit * 9, "{usage} of {limit}: {entry:?}");
    assert!(
        entry.oldest_time_nanos.unwrap() < entry.time_nanos,
        "{entry:?}"
    );
    let current = dir.join(&entry.files.current);
    let oldest = dir.join(entry.files.oldest.as_deref().expect("a history point"));
    assert!(current.is_file() && oldest.is_file(), "{entry:?}");
    assert_eq!(pprof_files(&dir).len(), 2);

    the_growth_is_read_from_the_directory(&dir);
    go_pprof_reads_the_files(&current, &oldest);

    // A leak suspect within ten minutes of the capture: counted, not written.
    let r = http.post(&format!(
        "{diag_url}/debug/heap/history?interval_ms=200&points=120"
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let skipped = r#"diag_capture_skipped_total{reason="suspect"}"#;
    wait_until(
        Duration::from_secs(90),
        "a suspect skipped by the rate limit",
        || {
            for _ in 0..8 {
                http.ok(&format!("{app_url}/leak?kb=64"));
            }
            http.ok(&format!("{app_url}/churn"));
            when(metric(&http, &diag_url, skipped), |n| *n >= 1.0)
        },
    );
    assert_eq!(index(&dir).len(), 1, "a second capture within 10 minutes");
    assert_eq!(pprof_files(&dir).len(), 2);
    let total = r#"diag_captures_total{reason="memory_limit"}"#;
    assert_eq!(metric(&http, &diag_url, total), 1.0);

    // New settings start over: with a limit the process is far past (its resident set may
    // have dipped below the first one as diag gave back its symbolizer's memory) and a
    // directory that is not there, the capture fails soft and is counted.
    let missing = dir.join("not-there");
    diag_core::heap::set_capture(Some(missing.clone()), 90, 20, Some(rss() / 2));
    wait_until(Duration::from_secs(30), "a failed capture counted", || {
        when(
            metric(&http, &diag_url, "diag_capture_failures_total"),
            |n| *n >= 1.0,
        )
    });
    assert!(!missing.exists());
    assert_eq!(metric(&http, &diag_url, total), 1.0);
    assert_eq!(
        http.status(&format!("{app_url}/churn")),
        200,
        "the service still serves"
    );
    diag_core::heap::set_capture(None, 90, 20, None);
}

/// `diag diff DIR` and `diag report DIR` take the latest capture's two files.
fn the_growth_is_read_from_the_directory(dir: &Path) {
    let d = dir.to_str().unwrap();
    let (ok, table, err) = diag(&["diff", d, "--top", "3"]);
    assert!(ok, "diag diff DIR: {err}");
    let first = table
        .lines()
        .find(|l| l.contains("::"))
        .unwrap_or_else(|| panic!("no site row:\n{table}"));
    assert!(first.contains("leaky::remember_request"), "{table}");
    assert!(err.contains("latest of 1 capture"), "{err}");
    assert!(err.contains("memory_limit"), "{err}");
    let page = dir.join("report.html");
    let (ok, _, err) = diag(&["report", d, "-o", page.to_str().unwrap()]);
    assert!(ok, "diag report DIR: {err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("remember_request"),
        "the report misses the leak"
    );
    std::fs::remove_file(page).unwrap();

    // A directory without captures, and one that is not there: a clear error, exit 2.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (arg, says) in [
        (empty.to_str().unwrap(), "holds no capture"),
        ("/nonexistent/captures", "none of these"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_diag"))
            .args(["diff", arg])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["report", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Go's pprof reads both files: the current one shows the leak.
fn go_pprof_reads_the_files(current: &Path, oldest: &Path) {
    let Some(go) = support::peer("go", "golang-go", None) else {
        return;
    };
    for (file, leak_shown) in [(current, true), (oldest, false)] {
        let out = Command::new(&go)
            .args(["tool", "pprof", "-top", "-sample_index=inuse_space"])
            .arg(file)
            .env("HOME", std::env::temp_dir())
            .output()
            .expect("go tool pprof");
        let top = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "go tool pprof {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        if leak_shown {
            assert!(top.contains("remember_request"), "{top}");
        }
    }
}
