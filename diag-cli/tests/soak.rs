//! Soak: the example service under a real load generator at saturation (`wrk`) with the heap
//! profiler sampling, while a loop pulls a heap snapshot every second through the `diag`
//! binary and another polls the cheap debug endpoints. Asserts 0 failed app requests, every
//! debug request answered within a deadline, and diag's own memory flat after warm-up.
//!
//! Short by default (CI); `DIAG_SOAK_SECS=600 cargo test -p diag-cli --test soak --release --
//! --nocapture` is the full run. One test: the allocator is process-global.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// How long any single debug request may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(10);

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[test]
fn soak_under_load_with_snapshots() {
    let secs: u64 = std::env::var("DIAG_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let wrk = std::path::Path::new("/usr/bin/wrk");
    if !wrk.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must install wrk");
        eprintln!("SKIPPING soak: /usr/bin/wrk is not installed (apt-get install wrk)");
        return;
    }
    let service = diag_examples::InProcess::start(
        // 8x the default rate: more work for the profiler.
        diag_core::Diag::builder().heap_sample_bytes(64 * 1024),
        diag_examples::leaky::app(),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let worst_ms = Arc::new(AtomicU64::new(0));
    let dir = std::env::temp_dir().join(format!("diag-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Snapshot loop: the diag binary, once a second.
    let snapshots = {
        let (stop, worst, url, dir) = (
            stop.clone(),
            worst_ms.clone(),
            diag_url.clone(),
            dir.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let out = Command::new(env!("CARGO_BIN_EXE_diag"))
                    .args(["snapshot", &url, "--timeout", "10", "-o"])
                    .arg(dir.join(format!("s{}.pb.gz", n % 3)))
                    .output()
                    .expect("run diag");
                let ms = t.elapsed().as_millis() as u64;
                worst.fetch_max(ms, Ordering::Relaxed);
                assert!(
                    out.status.success(),
                    "snapshot {n} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                n += 1;
                std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
            }
            n
        })
    };
    // Cheap endpoints, polled continuously.
    let pollers = {
        let (stop, worst, url) = (stop.clone(), worst_ms.clone(), diag_url.clone());
        std::thread::spawn(move || {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(DEADLINE))
                .build()
                .new_agent();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for path in ["/debug/heap/stats", "/debug/pprof/"] {
                    let t = Instant::now();
                    let mut r = agent.get(&format!("{url}{path}")).call().expect(path);
                    assert_eq!(r.status(), 200, "{path}");
                    r.body_mut().read_to_vec().unwrap();
                    worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };

    // Warm-up, then the measured stretch under wrk.
    let warm = secs.min(30) / 4;
    let run_wrk = |d: u64| {
        let out = Command::new(wrk)
            .args([
                "-t2",
                "-c32",
                &format!("-d{d}s"),
                "--latency",
                &format!("{app_url}/churn"),
            ])
            .output()
            .expect("wrk");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let warm_out = run_wrk(warm.max(2));
    let rss_after_warmup = rss_bytes();
    let stats_after_warmup = diag_core::heap::stats();
    let out = run_wrk(secs);
    let rss_end = rss_bytes();
    let stats_end = diag_core::heap::stats();
    stop.store(true, Ordering::Relaxed);
    let snaps = snapshots.join().expect("snapshot loop");
    let polls = pollers.join().expect("poll loop");
    println!("{out}");
    for text in [&warm_out, &out] {
        assert!(!text.contains("Non-2xx"), "failed app requests:\n{text}");
        assert!(!text.contains("Socket errors"), "socket errors:\n{text}");
        assert!(text.contains("Requests/sec"), "wrk did not run:\n{text}");
    }
    let worst = worst_ms.load(Ordering::Relaxed);
    println!(
        "soak {secs}s: {snaps} snapshots, {polls} debug polls, worst debug latency {worst} ms, \
         RSS {} -> {} KiB, live heap {} -> {} KiB, diag region {} -> {} KiB",
        rss_after_warmup / 1024,
        rss_end / 1024,
        stats_after_warmup.live_bytes / 1024,
        stats_end.live_bytes / 1024,
        stats_after_warmup.region_used_bytes / 1024,
        stats_end.region_used_bytes / 1024,
    );
    assert!(snaps as u64 >= secs / 2, "too few snapshots: {snaps}");
    assert!(
        worst < DEADLINE.as_millis() as u64,
        "a debug request took {worst} ms"
    );
    // Flat memory: /churn frees everything it allocates, so after warm-up the process (app and
    // diag together) must not grow by more than 25 % + 16 MiB over the run.
    let limit = rss_after_warmup + rss_after_warmup / 4 + (16 << 20);
    assert!(
        rss_end <= limit,
        "RSS grew from {rss_after_warmup} to {rss_end}"
    );
    std::fs::remove_dir_all(&dir).ok();
    drop(service);
}
