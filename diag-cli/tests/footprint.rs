//! diag's own footprint on a real service: the `leaky` example, built in release with the
//! workspace's debug setting, runs as its own process; after warm-up, only diag works (heap
//! snapshots, a CPU profile, `/debug/tasks`). Asserts what the host pays for it, from
//! `RssAnon` in `/proc/PID/status` (anonymous resident memory: heap, arenas, diag's caches;
//! not the file-backed pages of the mapped debug info):
//! - at most 16 MiB more than the warmed-up service after those requests;
//! - at most 4 MiB more once the symbolizer has been idle (`DIAG_SYMBOL_IDLE_SECS`, 2 s here
//!   instead of the default 60 s);
//! - the exact `live_bytes` (the application's) moves by at most 1 MiB while only diag works,
//!   and diag's own bytes show in `self_live_bytes`;
//! - a cold heap snapshot costs the service under 1 s of CPU (its process's utime + stime:
//!   the wall time, printed too, depends on what else the machine runs).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{Http, wait_until, when};

const MIB: i64 = 1 << 20;
/// The symbolizer's idle time in these tests.
const IDLE_SECS: f64 = 2.0;

/// The release `leaky` binary, built by cargo (a no-op when it is up to date).
fn leaky_release() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "diag-examples",
            "--bin",
            "leaky",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo build");
    assert!(
        out.status.success(),
        "cargo build --release of leaky failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["executable"].as_str().map(std::path::PathBuf::from))
        .find(|p| p.file_name().is_some_and(|n| n == "leaky"))
        .expect("cargo reported the leaky executable")
}

/// The running service; killed on drop.
struct Service {
    child: Child,
    app: String,
    diag: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Service {
    let mut child = Command::new(leaky_release())
        .arg("127.0.0.1:0")
        .env("DIAG_ADDR", "127.0.0.1:0")
        .env("DIAG_SYMBOL_IDLE_SECS", IDLE_SECS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting leaky");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut app, mut diag) = (None, None);
    while app.is_none() || diag.is_none() {
        let line = lines.next().expect("leaky printed its addresses").unwrap();
        if let Some(a) = line.strip_prefix("app listening on ") {
            app = Some(a.trim().to_owned());
        } else if let Some(d) = line.strip_prefix("diag listening on ") {
            diag = Some(d.trim().to_owned());
        }
    }
    Service {
        child,
        app: app.unwrap(),
        diag: diag.unwrap(),
    }
}

fn rss_anon(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status");
    kb * 1024
}

/// The process's CPU time so far (utime + stime), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces), from the 3rd: utime is the
    // 14th field, stime the 15th.
    let rest = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos((f[0] + f[1]) * 1_000_000_000 / hz)
}

fn stats(http: &Http, diag: &str) -> diag_core::wire::HeapStats {
    serde_json::from_slice(&http.ok(&format!("{diag}/debug/heap/stats")).body).unwrap()
}

fn mib(b: i64) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

fn footprint(with_cpu_profile: bool) {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPING: no /proc");
        return;
    }
    let s = start();
    let pid = s.child.id();
    let http = Http::with_timeout(Duration::from_secs(60));
    let get = |url: String| http.ok(&url).body;
    // Warm-up: the application's own traffic, then a pause.
    for route in ["leak", "churn", "warm"] {
        for _ in 0..300 {
            get(format!("{}/{route}", s.app));
        }
    }
    std::thread::sleep(Duration::from_millis(500)); // workload: the pause after the app's traffic
    let live = |st: &diag_core::wire::HeapStats| st.live_bytes as i64;
    let before = stats(&http, &s.diag);
    let anon0 = rss_anon(pid);

    // Only diag works from here on.
    let t = Instant::now();
    let cpu0 = cpu_time(pid);
    let first = get(format!("{}/debug/pprof/heap", s.diag));
    let cold = t.elapsed();
    let cold_cpu = cpu_time(pid).saturating_sub(cpu0);
    assert!(first.len() > 100);
    let after_snapshot = rss_anon(pid);
    if with_cpu_profile {
        get(format!("{}/debug/pprof/profile?seconds=3", s.diag));
    }
    let after_cpu = rss_anon(pid);
    get(format!("{}/debug/tasks", s.diag));
    get(format!("{}/debug/pprof/heap", s.diag));
    let anon1 = rss_anon(pid);
    let after = stats(&http, &s.diag);
    let idle = *wait_until(
        Duration::from_secs_f64(IDLE_SECS * 2.0 + 1.0),
        "the idle symbolizer to drop its caches",
        || {
            when(Box::new(stats(&http, &s.diag)), |st| {
                st.symbolizer_cache_bytes == 0
            })
        },
    );
    let anon2 = rss_anon(pid);

    eprintln!(
        "leaky footprint{}: warm RssAnon {}; +{} after a snapshot (cold: {cold:?}, {cold_cpu:?} of CPU), +{} after \
         the CPU profile, +{} after /debug/tasks and a second snapshot, +{} after {IDLE_SECS} s \
         idle; live_bytes {} -> {} -> {}; self_live_bytes {} -> {} -> {}; symbolizer cache {}",
        if with_cpu_profile {
            " (with a 3 s CPU profile)"
        } else {
            ""
        },
        mib(anon0),
        mib(after_snapshot - anon0),
        mib(after_cpu - anon0),
        mib(anon1 - anon0),
        mib(anon2 - anon0),
        live(&before),
        live(&after),
        live(&idle),
        before.self_live_bytes,
        after.self_live_bytes,
        idle.self_live_bytes,
        after.symbolizer_cache_bytes,
    );
    assert!(
        cold_cpu < Duration::from_secs(1),
        "cold heap snapshot cost the service {cold_cpu:?} of CPU ({cold:?} wall)"
    );
    assert!(
        (live(&after) - live(&before)).abs() <= MIB,
        "live_bytes moved by {} while only diag worked",
        live(&after) - live(&before)
    );
    assert!(
        after.self_live_bytes > 0,
        "diag's own bytes are counted apart"
    );
    assert!(
        anon1 - anon0 <= 16 * MIB,
        "RssAnon grew by {} over the warm service",
        mib(anon1 - anon0)
    );
    assert!(
        anon2 - anon0 <= 4 * MIB,
        "RssAnon stayed {} over the warm service after {IDLE_SECS} s idle",
        mib(anon2 - anon0)
    );
    assert_eq!(
        idle.symbolizer_cache_bytes, 0,
        "the idle symbolizer dropped its caches"
    );
}

/// The whole acceptance sequence: a heap snapshot, a 3 s CPU profile, `/debug/tasks` and a
/// second snapshot. (One test: two services profiled at once would time each other.)
#[test]
fn heap_snapshots_and_a_cpu_profile_cost_the_host_little() {
    footprint(true);
}
