//! Soak: the example service (with `diag_core::layer()` and the blocking watchdog) under a real
//! load generator at saturation (`wrk`) with the heap profiler sampling, while one loop pulls a
//! heap snapshot every second through the `diag` binary, another takes CPU profiles back to
//! back, and a third polls `/debug/tasks`, `/metrics` and the cheap debug endpoints. Asserts 0
//! failed app requests, every debug request answered within a deadline, and memory flat after
//! warm-up.
//!
//! Short by default (CI); `DIAG_SOAK_SECS=600 cargo test -p diag-cli --test soak --release --
//! --nocapture` is the full run. One test: the allocator is process-global.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// How long any single debug request may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(10);

fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// Anonymous resident memory (heap, stacks, diag's region and tables): RSS without the
/// file-backed pages, i.e. without the debug info the symbolizer maps and touches lazily (a
/// bounded cache the size of the binary's DWARF, large in debug builds).
fn anon_bytes() -> u64 {
    status_bytes("RssAnon:")
}

fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
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
    let Some(wrk) = support::peer("wrk", "wrk", None) else {
        return;
    };
    // glibc raises its mmap threshold (up to 32 MiB) after the first large free, and from
    // then on keeps freed large buffers (a CPU profile's sample table, a snapshot's
    // symbolization) resident in its heaps: RSS would then step up by tens of MiB at random
    // moments without anything being live. A fixed threshold makes RSS follow what is live.
    // Likewise a fixed number of arenas, so a new thread (the debug listener's blocking pool
    // recycles idle threads) does not add a fresh 64 MiB arena partway through.
    // SAFETY: mallopt only changes glibc's malloc parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
    let service = diag_examples::InProcess::start(
        // 8x the default rate: more work for the profiler.
        diag_core::Diag::builder().heap_sample_bytes(64 * 1024),
        diag_examples::leaky::app().layer(diag_core::layer()),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let worst_ms = Arc::new(AtomicU64::new(0));
    // Snapshots and CPU profiles done so far (the loops' counts, read while they run).
    let done = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let dir = std::env::temp_dir().join(format!("diag-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Snapshot loop: the diag binary, once a second.
    let snapshots = {
        let (stop, worst, url, dir, done) = (
            stop.clone(),
            worst_ms.clone(),
            diag_url.clone(),
            dir.clone(),
            done.clone(),
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
                done.0.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed())); // workload: a snapshot a second
            }
            n
        })
    };
    // CPU profiles, back to back (2 s each at 99 Hz), straight from the endpoint.
    let profiles = {
        let (stop, worst, url, done) = (
            stop.clone(),
            worst_ms.clone(),
            diag_url.clone(),
            done.clone(),
        );
        std::thread::spawn(move || {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(DEADLINE + Duration::from_secs(2)))
                .http_status_as_error(false)
                .build()
                .new_agent();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut r = agent
                    .get(&format!("{url}/debug/pprof/profile?seconds=2&frequency=99"))
                    .call()
                    .expect("CPU profile request");
                let body = r.body_mut().read_to_vec().unwrap();
                assert_eq!(
                    r.status(),
                    200,
                    "CPU profile {n}: {}",
                    String::from_utf8_lossy(&body)
                );
                diag_core::profile::pprof_codec::decode(&body).expect("a pprof CPU profile");
                // Time beyond the 2 s the profile asks for.
                let over = t.elapsed().saturating_sub(Duration::from_secs(2));
                worst.fetch_max(over.as_millis() as u64, Ordering::Relaxed);
                n += 1;
                done.1.fetch_add(1, Ordering::Relaxed);
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
                for path in [
                    "/debug/heap/stats",
                    "/debug/pprof/",
                    "/debug/tasks",
                    "/metrics",
                ] {
                    let t = Instant::now();
                    let mut r = agent.get(&format!("{url}{path}")).call().expect(path);
                    assert_eq!(r.status(), 200, "{path}");
                    r.body_mut().read_to_vec().unwrap();
                    worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(100)); // workload: the pollers' pace
            }
            n
        })
    };

    // Warm-up, then the measured stretch under wrk.
    let warm = secs.min(30) / 4;
    let run_wrk = |d: u64| {
        let out = Command::new(&wrk)
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
    let warm_out = run_wrk(warm.max(6));
    let rss_after_warmup = rss_bytes();
    let stats_after_warmup = diag_core::heap::stats();
    // RSS once a second over the measured stretch.
    let rss_series = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                v.push((rss_bytes(), anon_bytes()));
                std::thread::sleep(Duration::from_secs(1)); // workload: RSS once a second
            }
            v
        })
    };
    let out = run_wrk(secs);
    let rss_end = rss_bytes();
    let stats_end = diag_core::heap::stats();
    // The loops go on (without the load) until they have done their share: a snapshot each
    // 2 s and a CPU profile each 4 s of the soak. How fast they get there depends on the
    // machine (each names the in-process test binary's debug info, seconds cold on a loaded
    // machine); what must never happen is a loop that stops making progress, which the
    // deadline below (three more soaks' length) catches with the counts it reached.
    let (min_snaps, min_profiles) = (secs / 2, secs / 4);
    let _ = support::poll_until(Duration::from_secs(3 * secs), || {
        let (s, p) = (
            done.0.load(Ordering::Relaxed),
            done.1.load(Ordering::Relaxed),
        );
        support::when((s, p), |&(s, p)| s >= min_snaps && p >= min_profiles)
    });
    stop.store(true, Ordering::Relaxed);
    let snaps = snapshots.join().expect("snapshot loop");
    let polls = pollers.join().expect("poll loop");
    let cpu_profiles = profiles.join().expect("CPU profile loop");
    let series = rss_series.join().expect("RSS sampler");
    println!("{out}");
    for text in [&warm_out, &out] {
        assert!(!text.contains("Non-2xx"), "failed app requests:\n{text}");
        assert!(!text.contains("Socket errors"), "socket errors:\n{text}");
        assert!(text.contains("Requests/sec"), "wrk did not run:\n{text}");
    }
    let worst = worst_ms.load(Ordering::Relaxed);
    println!(
        "soak {secs}s: {snaps} snapshots, {cpu_profiles} CPU profiles, {polls} debug polls, \
         worst debug latency {worst} ms (beyond the time asked for), \
         RSS {} -> {} KiB, live heap {} -> {} KiB, diag region {} -> {} KiB",
        rss_after_warmup / 1024,
        rss_end / 1024,
        stats_after_warmup.live_bytes / 1024,
        stats_end.live_bytes / 1024,
        stats_after_warmup.region_used_bytes / 1024,
        stats_end.region_used_bytes / 1024,
    );
    assert!(
        snaps as u64 >= min_snaps,
        "too few snapshots: {snaps} in {}s",
        4 * secs
    );
    assert!(
        cpu_profiles as u64 >= min_profiles,
        "too few CPU profiles: {cpu_profiles} in {}s",
        4 * secs
    );
    assert!(
        worst < DEADLINE.as_millis() as u64,
        "a debug request took {worst} ms"
    );
    let rss_mib: Vec<u64> = series.iter().map(|(r, _)| r >> 20).collect();
    let anon_mib: Vec<u64> = series.iter().map(|(_, a)| a >> 20).collect();
    println!("RSS MiB, once a second over the measured stretch: {rss_mib:?}");
    println!("of which anonymous (RssAnon) MiB: {anon_mib:?}");
    // Flat memory: /churn frees everything it allocates, so once warm the process (app and
    // diag together) must stop growing: the second half of the run may not end more than
    // 10 % + 96 MiB above the highest anonymous memory of the first half. The 96 MiB is one
    // load of the symbolizer's parsed debug info (backtrace's cache holds a few objects and
    // evicts/reloads them; ~60 MiB for this debug test binary, seen as steps in the series
    // above): bounded, but not yet capped by diag.
    let anon_end = anon_bytes();
    let first_half_max = series[..series.len().div_ceil(2)]
        .iter()
        .map(|&(_, a)| a)
        .max()
        .unwrap_or(anon_end);
    let limit = first_half_max + first_half_max / 10 + (96 << 20);
    assert!(
        anon_end <= limit,
        "anonymous memory kept growing: first half peaked at {first_half_max}, ended at \
         {anon_end}: {anon_mib:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
    drop(service);
}
