//! Soak: the profilers must not deadlock or crash their host. A multi-threaded axum service
//! allocates through `DiagAlloc` sampling every 4 KiB (so the heap sampler's unwinder runs
//! constantly: the cached unwinder and libgcc's `_Unwind_Backtrace` in turns, switched every
//! profile, and both are often interrupted by `SIGPROF`), does syscalls on its workers and its
//! blocking pool, blocks a worker for 150 ms of allocation-heavy work at a time (so the
//! blocking watchdog's signal lands on threads in the middle of their own stack captures), and
//! serves four clients, while CPU profiles at 1000 Hz are taken back to back through
//! `/debug/pprof/profile` (every format) with heap snapshots in between. A watchdog aborts the
//! process if no request completes for 20 s (a hang); every request must succeed, and the
//! blocking events must carry the blocking function's stack.
//!
//! Short by default (CI, ~12 s). Full run: `DIAG_SOAK_SECS=120 cargo test -p diag-core --test
//! cpu_soak --release -- --nocapture`. One test: the allocator and the profiler are global.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// No completed request for this long counts as a hang.
const HANG: Duration = Duration::from_secs(20);

/// `GET path` on `addr`: the status and the body's length.
fn get_status(addr: &str, path: &str) -> Result<(u16, usize), String> {
    support::get(addr, path).map(|a| (a.status, a.body.len()))
}

/// Allocation-heavy work with a syscall: the request handler.
#[inline(never)]
fn churn(seed: u64) -> usize {
    let mut map = std::collections::HashMap::new();
    for i in 0..200u64 {
        map.insert(
            i ^ seed,
            format!("value {i} {}", "y".repeat((i % 64) as usize)),
        );
    }
    let stat = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let v: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; 1000 + i * 300]).collect();
    map.len() + stat.len() + v.iter().map(Vec::len).sum::<usize>()
}

/// 150 ms of allocation-heavy work inside one poll: a blocking event.
#[inline(never)]
fn stall_work() -> usize {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(150) {
        n += churn(n as u64);
    }
    n
}

fn app() -> Router {
    Router::new()
        .route("/churn", get(|| async { format!("{}\n", churn(7)) }))
        .route("/stall", get(|| async { format!("{}\n", stall_work()) }))
        .route(
            "/blocking",
            get(|| async {
                let n = tokio::task::spawn_blocking(|| {
                    std::thread::sleep(Duration::from_millis(1)); // workload: a blocking syscall
                    churn(11)
                })
                .await
                .unwrap();
                format!("{n}\n")
            }),
        )
        .layer(diag_core::layer())
}

#[test]
fn profiler_under_allocation_syscalls_and_requests() {
    let secs: u64 = std::env::var("DIAG_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let diag = diag_core::Diag::builder()
        .addr("127.0.0.1:0")
        .heap_sample_bytes(4096)
        .snapshot_min_interval(Duration::from_millis(0))
        .blocking_threshold(Duration::from_millis(50))
        .start()
        .expect("diag");
    let diag_addr = diag.local_addr().unwrap().to_string();
    let (_rt, app_addr) = support::serve(app());
    let soak = Soak::new();
    abort_on_hang(&soak);

    let mut threads = four_clients(&soak, &app_addr);
    threads.push(user_churn(&soak));
    let (reader, writer) = blocked_read(&soak);
    threads.push(reader);
    threads.push(heap_snapshots(&soak, &diag_addr));
    let caught = profiles_back_to_back(&soak, &diag_addr, secs);

    soak.stop.store(true, Ordering::Relaxed);
    writer.join().unwrap(); // drops the write end: the blocked reader sees the end and exits
    let mut requests = 0;
    for t in threads {
        requests += t.join().expect("a client failed");
    }
    eprintln!(
        "{} CPU profiles, {requests} requests/iterations in {:?}, 0 failures",
        caught.profiles,
        soak.start.elapsed()
    );
    assert!(caught.profiles >= 2);
    assert!(requests > 0);
    caught.assert_in_malloc_and_the_unwinder();
    assert_the_watchdog_caught_the_stalls(&diag_addr);
    let unwind = diag_core::heap::stats().unwind;
    eprintln!("heap unwinder: {unwind:?}");
    assert!(unwind.cached > 0, "{unwind:?}");
}

/// What the soak's threads share: when to stop, and when a request last completed.
#[derive(Clone)]
struct Soak {
    stop: Arc<AtomicBool>,
    last_ms: Arc<AtomicU64>,
    start: Instant,
}

impl Soak {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            last_ms: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
        }
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// A request (or a round of work) completed.
    fn tick(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Runs `work` on a thread named `name` until the soak stops; `work` returns how many
    /// requests or iterations it did.
    fn spawn(
        &self,
        name: &str,
        work: impl FnOnce(Soak) -> u64 + Send + 'static,
    ) -> JoinHandle<u64> {
        let soak = self.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(soak))
            .unwrap()
    }
}

/// A hang fails loudly instead of blocking CI forever: the process aborts when no request
/// completed for [`HANG`].
fn abort_on_hang(soak: &Soak) {
    let soak = soak.clone();
    std::thread::spawn(move || {
        while soak.running() {
            std::thread::sleep(Duration::from_millis(500)); // the watchdog's tick: checks that no hang happens
            let idle =
                soak.start.elapsed().as_millis() as u64 - soak.last_ms.load(Ordering::Relaxed);
            if idle > HANG.as_millis() as u64 {
                eprintln!("WATCHDOG: no request completed for {idle} ms: deadlock; aborting");
                std::process::abort();
            }
        }
    });
}

/// Four clients on the app, every request a success.
fn four_clients(soak: &Soak, app_addr: &str) -> Vec<JoinHandle<u64>> {
    ["/churn", "/blocking", "/churn", "/stall"]
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let addr = app_addr.to_owned();
            soak.spawn(&format!("client-{i}"), move |soak| {
                let mut n = 0u64;
                while soak.running() {
                    match get_status(&addr, path) {
                        Ok((200, _)) => soak.tick(),
                        other => panic!("{path} failed: {other:?}"),
                    }
                    n += 1;
                }
                n
            })
        })
        .collect()
}

/// A user thread that allocates and does syscalls outside any runtime.
fn user_churn(soak: &Soak) -> JoinHandle<u64> {
    soak.spawn("user-churn", |soak| {
        let mut n = 0u64;
        while soak.running() {
            std::hint::black_box(churn(n));
            n += 1;
            if n.is_multiple_of(64) {
                soak.tick();
            }
        }
        n
    })
}

/// A thread blocked in a syscall for seconds at a time while profiles run: each read must
/// come back whole with what was written (the sampler's signal must not break it). The
/// reader, and the writer (which closes the pipe when it ends).
fn blocked_read(soak: &Soak) -> (JoinHandle<u64>, JoinHandle<()>) {
    let (mut pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    let reader = soak.spawn("blocked-read", move |soak| {
        let mut n = 0u64;
        let mut buf = [0u8; 8];
        while soak.running() {
            if pipe_r.read_exact(&mut buf).is_err() {
                break; // the writer closed: the test is over
            }
            assert_eq!(u64::from_le_bytes(buf), n, "the blocked read lost data");
            n += 1;
        }
        n
    });
    let soak = soak.clone();
    let writer = std::thread::spawn(move || {
        let mut n = 0u64;
        while soak.running() {
            std::thread::sleep(Duration::from_secs(3)); // workload: the reader stays blocked 3 s
            pipe_w.write_all(&n.to_le_bytes()).unwrap();
            n += 1;
        }
    });
    (reader, writer)
}

/// Heap snapshots concurrently with the profiles, so samples land in the symbolizer too.
fn heap_snapshots(soak: &Soak, diag_addr: &str) -> JoinHandle<u64> {
    let addr = diag_addr.to_owned();
    soak.spawn("snapshots", move |soak| {
        let mut n = 0u64;
        while soak.running() {
            // 429: the main loop's snapshot is being served (one at a time).
            match get_status(&addr, "/debug/pprof/heap") {
                Ok((200, _)) => {
                    soak.tick();
                    n += 1;
                }
                Ok((429, _)) => {}
                other => panic!("heap snapshot failed: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(100)); // workload: a snapshot every 100 ms
        }
        n
    })
}

/// Where the pprof profiles caught threads, in nanoseconds of CPU.
#[derive(Default)]
struct Caught {
    profiles: usize,
    total: i64,
    in_malloc: i64,
    in_unwinder: i64,
    in_symbolizer: i64,
    truncated: i64,
}

/// Profiles back to back at 1000 Hz, every format, heap snapshots in between, for `secs`;
/// where the pprof ones caught threads: inside malloc, inside the heap sampler's unwinder.
fn profiles_back_to_back(soak: &Soak, diag_addr: &str, secs: u64) -> Caught {
    let mut c = Caught::default();
    let formats = ["pprof", "svg", "folded"];
    // At least two profiles whatever the time (one with each unwinder): on a loaded machine a
    // profile and its decoding can take most of the short run.
    while c.profiles < 2 || soak.start.elapsed() < Duration::from_secs(secs) {
        diag_core::heap::set_unwinder(if c.profiles % 2 == 0 {
            diag_core::heap::Unwinder::Cached
        } else {
            diag_core::heap::Unwinder::Libgcc
        });
        let format = formats[c.profiles % formats.len()];
        let path = format!("/debug/pprof/profile?seconds=2&frequency=1000&format={format}");
        let answer = support::get(diag_addr, &path).expect("profile request");
        assert_eq!(answer.status, 200, "{path}");
        let body = answer.body;
        assert!(body.len() > 100, "{path}: {} bytes", body.len());
        if format == "pprof" {
            let p = diag_core::profile::load(&body).expect("decode the profile");
            let i = p.sample_index("cpu").unwrap();
            for s in &p.samples {
                let has = |pat: &str| s.stack.iter().any(|f| f.function.contains(pat));
                let v = s.values[i];
                c.total += v;
                c.in_malloc += v * i64::from(has("malloc") || has("_int_free") || has("cfree"));
                c.in_unwinder += v * i64::from(has("stack::unwind"));
                c.in_symbolizer +=
                    v * i64::from(has("symboliz") || has("addr2line") || has("gimli"));
                c.truncated +=
                    v * i64::from(s.stack.last().is_some_and(|f| f.function == "[truncated]"));
            }
        }
        soak.tick();
        let (status, _) = get_status(diag_addr, "/debug/pprof/heap").expect("heap snapshot");
        // 429: the snapshot thread's is being served (one at a time).
        assert!(status == 200 || status == 429, "heap snapshot: {status}");
        soak.tick();
        c.profiles += 1;
    }
    c
}

impl Caught {
    fn assert_in_malloc_and_the_unwinder(&self) {
        let ms = |ns: i64| ns / 1_000_000;
        eprintln!(
            "pprof profiles: {} ms of CPU, {} in malloc/free, {} in the heap unwinder, {} in \
             the symbolizer, {} truncated",
            ms(self.total),
            ms(self.in_malloc),
            ms(self.in_unwinder),
            ms(self.in_symbolizer),
            ms(self.truncated)
        );
        assert!(
            self.in_malloc > 0,
            "no CPU sample landed inside malloc/free"
        );
        assert!(
            self.in_unwinder > 0,
            "no CPU sample landed inside the heap sampler's unwinder"
        );
        assert!(
            (self.truncated as f64) < 0.05 * self.total as f64,
            "{} of {} ms truncated",
            ms(self.truncated),
            ms(self.total)
        );
    }
}

/// The blocking watchdog caught the stalls with their stacks.
fn assert_the_watchdog_caught_the_stalls(diag_addr: &str) {
    let answer = support::get(diag_addr, "/debug/tasks").expect("tasks");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let tasks: serde_json::Value = serde_json::from_slice(&answer.body).expect("tasks json");
    let events = tasks["blocking_events"].as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["stack"].as_array().is_some_and(|s| s
                .iter()
                .any(|f| f.as_str().is_some_and(|f| f.contains("stall_work"))))),
        "no blocking event with stall_work on its stack: {}",
        tasks["blocking_events"]
    );
    eprintln!("watchdog: {}", tasks["watchdog"]);
}
