//! What `diag_core::layer()` costs a service, as server CPU time per request on real sockets
//! under a real load generator, in one process, with confidence intervals.
//!
//! On this VM back-to-back `wrk` runs against the same server differ by 7-15 % in requests
//! per second (BENCHMARKS.md, `layer_overhead.sh`), which hides a 2 % effect. The time a
//! server is *given* varies with its neighbours; the CPU time it *spends* per request varies
//! less, and under saturation throughput is its inverse.
//!
//! Setup: the shop example's A/B router (`diag_examples::shop::ab_routes`: every route under
//! `/a` and `/c` bare, `/n` under a no-op tower layer, `/b` under `diag_core::layer()`) served
//! by one tokio worker (a current-thread runtime on its own thread, pinned to CPU 0), with diag
//! started as a service starts it (debug listener, blocking watchdog, lag probe on their own
//! threads). `wrk -t1 -cCONNS -dSECS --latency` (pinned to CPU 1) drives one arm per phase;
//! the phases of a round run in a random order. Per phase: the server thread's CPU time
//! (`pthread_getcpuclockid`: user and system, ns) and the whole process's
//! (`getrusage(RUSAGE_SELF)`: with the watchdog, the lag probe and the debug listener, which
//! the layered arm feeds), each divided by the requests `wrk` counted, plus `wrk`'s req/s and
//! p99. Each arm's figure is the median over rounds of its ratio to the `/a` phase of the same
//! round, with a distribution-free 95 % confidence interval; `/c` against `/a` is the
//! calibration.
//!
//! Routes (arguments after `--` pick them by substring): `/items/1` (a near-empty handler:
//! the worst case for any per-request cost) and `/catalog?page=1` (24 entries built and
//! serialized to JSON: a typical handler's work).
//!
//! ```sh
//! ROUNDS=31 cargo bench -p diag-benches --bench layer_ab   # env SECS (1), WRK_CONNS (8), PIN (1)
//! ```
//!
//! Needs `wrk` on `PATH` (Debian: `apt-get install wrk`) and, with `PIN=1`, `taskset`.

use std::process::Command;
use std::sync::mpsc;

use diag_benches::{env_usize, median_ci, shuffled};

/// The arms: label, path prefix.
const ARMS: [(&str, &str); 4] = [
    ("bare (/a)", "/a"),
    ("bare again (/c), calibration", "/c"),
    ("no-op tower layer (/n)", "/n"),
    ("diag_core::layer() (/b)", "/b"),
];

const ROUTES: [&str; 2] = ["/items/1", "/catalog?page=1"];

/// Per phase: server thread CPU us/request, process CPU us/request, req/s, p99 ms.
const MEASURES: usize = 4;

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it; pid 0 is the
    // calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "layer_ab: cannot pin to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The time of clock `clock` (here a thread's CPU clock), ns.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer; an invalid clock id only makes the call fail.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        panic!("clock_gettime: {}", std::io::Error::last_os_error());
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User plus system CPU time of the whole process, ns.
fn process_cpu_ns() -> u64 {
    // SAFETY: a zeroed rusage is a valid out value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Starts the A/B router on its own (pinned) current-thread runtime; returns its address and
/// the CPU clock of the thread that serves it.
fn start_server(pin: bool) -> (String, libc::clockid_t) {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("ab-server".into())
        .spawn(move || {
            if pin {
                pin_to(0);
            }
            let mut clock: libc::clockid_t = 0;
            // SAFETY: this thread's own handle and a valid out pointer.
            let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
            assert_eq!(rc, 0, "pthread_getcpuclockid");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("address").to_string();
                tx.send((addr, clock)).expect("report");
                diag_examples::serve(listener, diag_examples::shop::ab_routes())
                    .await
                    .expect("serve");
            });
        })
        .expect("server thread");
    rx.recv().expect("server started")
}

/// What one `wrk` run measured.
struct Wrk {
    requests: f64,
    rps: f64,
    p99_ms: f64,
}

/// Exits with `msg` and `wrk`'s output.
fn bad_output(msg: &str, text: &str) -> ! {
    eprintln!("layer_ab: {msg} in wrk's output:\n{text}");
    std::process::exit(1)
}

/// One `wrk --latency` run against `url`. Exits if `wrk` fails or any response is not
/// 2xx/3xx.
fn wrk(url: &str, secs: usize, conns: usize, pin: bool) -> Wrk {
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    } else {
        Command::new("wrk")
    };
    let out = cmd
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .unwrap_or_else(|e| {
            eprintln!("layer_ab: cannot run wrk: {e} (Debian: apt-get install wrk)");
            std::process::exit(2)
        });
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("layer_ab: wrk against {url} failed:\n{text}");
        std::process::exit(1);
    }
    // The `idx`-th word of the first line whose words include `key`.
    let word = |key: &str, idx: usize| -> &str {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.contains(&key))
            .and_then(|w| w.get(idx).copied())
            .unwrap_or_else(|| bad_output(&format!("no {key:?}"), &text))
    };
    let number = |v: &str| -> f64 {
        v.parse()
            .unwrap_or_else(|_| bad_output(&format!("{v:?} is not a number"), &text))
    };
    let p99 = word("99%", 1);
    let split = p99
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(p99.len());
    let scale = match &p99[split..] {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        unit => bad_output(&format!("latency unit {unit:?}"), &text),
    };
    Wrk {
        requests: number(word("requests", 0)),
        rps: number(word("Requests/sec:", 1)),
        p99_ms: number(&p99[..split]) * scale,
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds = env_usize("ROUNDS", 31).max(3);
    let secs = env_usize("SECS", 1).max(1);
    let conns = env_usize("WRK_CONNS", 8).max(1);
    let pin = env_usize("PIN", 1) != 0
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let _diag = diag_core::Diag::builder()
        .addr("127.0.0.1:0")
        .start()
        .expect("diag starts");
    let (addr, clock) = start_server(pin);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!(
        "layer_ab: one server thread{}, wrk -t1 -c{conns} -d{secs}s{}; {rounds} rounds, arms in \
         random order; load average {load}",
        if pin { " on CPU 0" } else { "" },
        if pin { " on CPU 1" } else { "" },
    );
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for route in ROUTES {
        if !filter.is_empty() && !filter.iter().any(|f| route.contains(f.as_str())) {
            continue;
        }
        let url = |prefix: &str| format!("http://{addr}{prefix}{route}");
        for (_, prefix) in ARMS {
            wrk(&url(prefix), 1, conns, pin); // warm-up
        }
        // Per arm and measure: the values, and their per-round ratios to the first arm.
        let mut abs = vec![[const { Vec::new() }; MEASURES]; ARMS.len()];
        let mut rel = vec![[const { Vec::new() }; MEASURES]; ARMS.len()];
        for _ in 0..rounds {
            let mut m = [[0.0f64; MEASURES]; ARMS.len()];
            for a in shuffled::<{ ARMS.len() }>(&mut rng) {
                let (t0, p0) = (clock_ns(clock), process_cpu_ns());
                let w = wrk(&url(ARMS[a].1), secs, conns, pin);
                let (t1, p1) = (clock_ns(clock), process_cpu_ns());
                m[a] = [
                    (t1 - t0) as f64 / 1e3 / w.requests,
                    (p1 - p0) as f64 / 1e3 / w.requests,
                    w.rps,
                    w.p99_ms,
                ];
            }
            for a in 0..ARMS.len() {
                for k in 0..MEASURES {
                    abs[a][k].push(m[a][k]);
                    rel[a][k].push(m[a][k] / m[0][k]);
                }
            }
        }
        println!(
            "\n{route} (medians; ratios to the bare arm of the same round, 95 % CI in \
             brackets):\n\n\
             | arm | server thread CPU us/req | ratio | process CPU ratio | req/s | ratio | \
             p99 ms | ratio |\n\
             |---|---:|---|---|---:|---|---:|---|"
        );
        for (a, (label, _)) in ARMS.iter().enumerate() {
            let ratio = |k: usize| {
                let (lo, r, hi) = median_ci(&rel[a][k]);
                if a == 0 {
                    "1".to_owned()
                } else {
                    format!("{r:.3} [{lo:.3}, {hi:.3}]")
                }
            };
            let v = |k: usize| median_ci(&abs[a][k]).1;
            println!(
                "| {label} | {:.2} | {} | {} | {:.0} | {} | {:.2} | {} |",
                v(0),
                ratio(0),
                ratio(1),
                v(2),
                ratio(2),
                v(3),
                ratio(3)
            );
        }
    }
}
