//! End to end, CPU capture on an I/O-bound service: the hot example's trivial `/ping` route
//! under `wrk` (most of the process's CPU is socket syscalls, libc and the allocator). A CPU
//! profile that spans the whole load must hold at least 90 % of the CPU the process used
//! (utime + stime from `/proc/self/stat` over the load), and show libc's syscall wrappers
//! innermost with the runtime's Rust callers above them. (pprof-rs's sampler, which diag
//! used before, kept 25 % here: it dropped every sample interrupted inside libc.)
//! One test: the allocator and the profiler are global.

use std::process::Command;
use std::time::Duration;

mod support;

use support::{Http, cpu_profile_sampling, wait_until, when};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// The process's user + system CPU time.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<u64> = rest
        .split_ascii_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos((f[0] + f[1]) * 1_000_000_000 / hz)
}

/// `GET http://addr/path` (60 s timeout): the status and the body's bytes.
fn get_bytes(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let answer = Http::with_timeout(Duration::from_secs(60))
        .try_get(&format!("http://{addr}{path}"))
        .expect("read the answer");
    (answer.status, answer.body)
}

#[test]
fn io_bound_service_is_fully_captured() {
    let Some(wrk) = support::peer("wrk", "wrk", None) else {
        return;
    };
    let service =
        diag_examples::InProcess::start(diag_core::Diag::builder(), diag_examples::hot::app());
    let diag_addr = service.diag_addr().to_owned();
    let app_url = service.app_url.clone();
    // Warm up (connections, the runtime's threads) before anything is measured.
    let warm = Command::new(&wrk)
        .args(["-t1", "-c8", "-d1s", &format!("{app_url}/ping")])
        .output()
        .unwrap();
    assert!(warm.status.success(), "wrk failed: {warm:?}");

    // The profile spans the load: it samples before the load starts, and for 6 s.
    let profile = std::thread::spawn(move || {
        get_bytes(&diag_addr, "/debug/pprof/profile?seconds=6&frequency=250")
    });
    wait_until(Duration::from_secs(10), "the profile sampling", || {
        when(cpu_profile_sampling(), |&s| s)
    });
    let before = process_cpu();
    let load = Command::new(&wrk)
        .args(["-t1", "-c16", "-d4s", &format!("{app_url}/ping")])
        .output()
        .unwrap();
    let used = process_cpu() - before;
    assert!(load.status.success(), "wrk failed: {load:?}");
    let (status, body) = profile.join().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let p = diag_core::profile::load(&body).expect("a pprof profile");
    let i = p.sample_index("cpu").unwrap();
    let total = Duration::from_nanos(p.total(i) as u64);
    let ratio = total.as_secs_f64() / used.as_secs_f64();
    eprintln!(
        "process CPU under load {used:?}, profile {total:?}: {:.1} %\n{}",
        ratio * 100.0,
        p.comments.join("\n")
    );
    assert!(
        used > Duration::from_millis(1000),
        "the load used only {used:?} of CPU"
    );
    assert!(
        ratio >= 0.9,
        "the profile holds {:.1} % of the process's CPU",
        ratio * 100.0
    );

    // Syscall time: a libc function innermost, the runtime's Rust code above it.
    let libc = |addr: u64| {
        p.mappings
            .iter()
            .any(|m| m.file.contains("libc.so") && (m.start..m.limit).contains(&addr))
    };
    let mut under_rust = 0i64;
    let mut leaves: Vec<(i64, String)> = Vec::new();
    for s in &p.samples {
        let Some(leaf) = s.stack.first() else {
            continue;
        };
        if libc(leaf.address)
            && s.stack.iter().any(|f| {
                ["mio::", "tokio::", "hyper::"]
                    .iter()
                    .any(|c| f.function.contains(c))
            })
        {
            under_rust += s.values[i];
            leaves.push((s.values[i], leaf.function.clone()));
        }
    }
    leaves.sort_by_key(|l| std::cmp::Reverse(l.0));
    leaves.dedup_by(|a, b| a.1 == b.1);
    let share = under_rust as f64 / p.total(i) as f64;
    eprintln!(
        "libc innermost under mio/tokio/hyper: {:.1} %; heaviest: {:?}",
        share * 100.0,
        &leaves[..leaves.len().min(6)]
    );
    assert!(
        share >= 0.15,
        "only {:.1} % of the CPU is libc under the runtime's Rust code",
        share * 100.0
    );
    let names: Vec<&str> = leaves.iter().map(|(_, f)| f.as_str()).collect();
    assert!(
        names.iter().any(|f| f.contains("send")
            || f.contains("write")
            || f.contains("recv")
            || f.contains("read")
            || f.contains("epoll")),
        "no syscall wrapper among {names:?}"
    );
}
