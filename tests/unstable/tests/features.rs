//! diag-core's `console` and `taskdump` features against a real multi-thread runtime.
//!
//! Built with `--cfg tokio_unstable` (tests/unstable/run.sh): tokio-console's gRPC server
//! answers an HTTP/2 handshake, and `/debug/pprof/goroutine` names the function a task awaits
//! in. Built without the flag (`run.sh --without-unstable`): both features refuse with clear
//! errors.
//!
//! With every worker of the application's runtime blocked inside a task's poll, a dump cannot
//! finish: `?seconds=1` answers 503 after that second, the next request 409 while the first
//! dump is still pending, and `/debug/tasks` still 200. That check runs in a child process
//! (this binary re-run with `BLOCKED_WORKERS_CHILD` set) on a fresh runtime that has never been
//! dumped, because tokio's trace barrier can leave a worker behind after a dump that did
//! succeed: when a worker gives up on the barrier's 250 ms timeout its count stays in, so a
//! later worker "completes" the barrier alone, traces, and then waits forever at the end
//! barrier for a partner that never comes. Under CPU load that happened to one of the earlier
//! 200 dumps about every other run, and the blocker meant for that worker never ran. In the
//! child, each blocker records the worker thread it runs on; the test goes on once every
//! worker holds one (spawning another blocker every second in case a wake-up is slow) and
//! fails with the scheduler's state after 20 s rather than hang. Before that, with one worker
//! blocked in a poll of a task instrumented by `diag_core::spawn`, diag refuses to start a
//! dump at once (503 naming the task) instead of starting one that cannot finish.

#![allow(unexpected_cfgs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

// The wait of the main workspace's tests (one file, included by path).
#[allow(dead_code, unreachable_pub)]
#[path = "../../../diag-core/tests/support/wait.rs"]
mod wait;

use wait::{poll_until, wait_until, when};

/// Set in the environment of the child process that runs [`blocked_workers`].
const BLOCKED_WORKERS_CHILD: &str = "DIAG_UNSTABLE_TESTS_BLOCKED_WORKERS_CHILD";

/// Starts diag on `rt` with a listener on a free port and without tokio-console.
fn start_without_console(rt: &tokio::runtime::Runtime) -> diag_core::Diag {
    rt.block_on(async {
        diag_core::Diag::builder()
            .addr("127.0.0.1:0")
            .console(false)
            .start()
    })
    .expect("diag starts without the console")
}

/// GET `path` on `addr` over HTTP/1.1; (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the debug listener");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the response");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// True if something on `addr` answers the HTTP/2 client preface with a SETTINGS frame (what
/// tokio-console's gRPC client sees first).
fn speaks_http2(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    if s.write_all(preface).is_err() {
        return false;
    }
    let mut head = [0u8; 9];
    s.read_exact(&mut head).is_ok() && head[3] == 0x04
}

async fn parked_in_diag_test_waiter(rx: tokio::sync::oneshot::Receiver<()>) {
    let _ = rx.await;
}

fn main() {
    // A failed assertion must end the process too, not unwind into runtime drops (see below).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
    if std::env::var_os(BLOCKED_WORKERS_CHILD).is_some() {
        blocked_workers();
        println!("blocked_workers: ok");
        // Same reason as below: the runtime still has a dump pending.
        std::process::exit(0);
    }
    console_and_taskdump();
    println!("console_and_taskdump: ok");
    if cfg!(tokio_unstable) {
        run_blocked_workers_child();
    }
    // tokio documents that a runtime can hang in shutdown right after a task dump (seen here:
    // a worker waits in the dump's barrier for one that already stopped, and dropping any
    // runtime's blocking pool then waits forever). End the process instead of unwinding
    // into those drops.
    std::process::exit(0);
}

fn console_and_taskdump() {
    let console_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // SAFETY: set before any other thread of this test binary reads the environment.
    unsafe { std::env::set_var("TOKIO_CONSOLE_BIND", format!("127.0.0.1:{console_port}")) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = rt.block_on(async { diag_core::Diag::builder().addr("127.0.0.1:0").start() });

    if !cfg!(tokio_unstable) {
        let err = started.expect_err("the console feature needs tokio_unstable");
        assert_eq!(err.kind(), diag_core::ErrorKind::Unsupported);
        assert!(err.to_string().contains("tokio_unstable"), "{err}");
        let layer = diag_core::console_layer::<tracing_subscriber::Registry>();
        assert!(layer.is_err());
        let diag = start_without_console(&rt);
        let (status, body) = http_get(diag.local_addr().unwrap(), "/debug/pprof/goroutine");
        assert_eq!(status, 501, "{body}");
        assert!(body.contains("tokio_unstable"), "{body}");
        return;
    }

    let diag = started.expect("diag starts with the console");
    let addr = diag.local_addr().unwrap();

    // tokio-console's endpoint is up.
    let console = SocketAddr::from(([127, 0, 0, 1], console_port));
    wait_until(
        Duration::from_secs(10),
        &format!("a gRPC server on {console} (TOKIO_CONSOLE_BIND)"),
        || when(speaks_http2(console), |&up| up),
    );

    // Tasks parked in a known function show up in the dump with that function.
    let mut senders = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        rt.spawn(parked_in_diag_test_waiter(rx));
        senders.push(tx);
    }
    let (status, body) = http_get(addr, "/debug/pprof/goroutine");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("tokio task dump: "), "{body}");
    assert!(
        body.matches("parked_in_diag_test_waiter").count() >= 3,
        "{body}"
    );
    let (status, body) = http_get(addr, "/debug/pprof/goroutine?format=json");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"tasks\"") && body.contains("parked_in_diag_test_waiter"));
    let (status, _) = http_get(addr, "/debug/pprof/goroutine?seconds=nope");
    assert_eq!(status, 400);

    drop(senders);
    // See main: the runtime is not dropped.
    std::mem::forget(rt);
}

/// Runs [`blocked_workers`] in a child process (see the module docs for why) and fails if it
/// fails or does not end within 90 s. Its output goes to this process's stdout and stderr.
fn run_blocked_workers_child() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(BLOCKED_WORKERS_CHILD, "1")
        .env_remove("TOKIO_CONSOLE_BIND")
        .spawn()
        .expect("start the blocked-workers child process");
    let ended = poll_until(Duration::from_secs(90), || {
        child.try_wait().unwrap().ok_or("running")
    });
    let Ok(status) = ended else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the blocked-workers child did not end within 90 s (killed it)");
    };
    assert!(
        status.success(),
        "the blocked-workers child failed ({status}); its output is above"
    );
}

/// The scheduler's queues, for failure messages.
fn scheduler_state(rt: &tokio::runtime::Runtime) -> String {
    let m = rt.metrics();
    // Per-worker counts are unstable metrics (the child only runs with tokio_unstable).
    #[cfg(tokio_unstable)]
    let workers = (0..m.num_workers())
        .map(|w| {
            format!(
                "worker {w}: {} queued, {} polls, {} parks",
                m.worker_local_queue_depth(w),
                m.worker_poll_count(w),
                m.worker_park_count(w)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    #[cfg(not(tokio_unstable))]
    let workers = format!("{} workers", m.num_workers());
    format!(
        "{} alive tasks, {} in the inject queue; {workers}",
        m.num_alive_tasks(),
        m.global_queue_depth(),
    )
}

/// In the child process: a dump of a runtime whose workers are all blocked answers 503, the
/// next request 409 while it is pending, and the listener still serves `/debug/tasks`.
fn blocked_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let diag = start_without_console(&rt);
    let addr = diag.local_addr().unwrap();
    let workers = rt.metrics().num_workers();

    // A blocked poll the watchdog sees (an instrumented task): diag refuses to start a dump at
    // once, naming the task, instead of starting one that cannot finish (and that would leave
    // tokio's trace barrier miscounted: tokio-rs/tokio#8370). No dump runs on this runtime.
    let watched_started = Arc::new(AtomicBool::new(false));
    let watched_release = Arc::new(AtomicBool::new(false));
    let watched_done = Arc::new(AtomicBool::new(false));
    {
        let (started, release, done) = (
            watched_started.clone(),
            watched_release.clone(),
            watched_done.clone(),
        );
        let _guard = rt.enter();
        diag_core::spawn("diag_test_watched_blocker", async move {
            started.store(true, SeqCst);
            while !release.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(10)); // workload: the poll that blocks
            }
            done.store(true, SeqCst);
        });
    }
    wait_until(Duration::from_secs(20), "the watched blocker to run", || {
        when(watched_started.load(SeqCst), |&s| s)
    });
    // The watchdog files the poll as an ongoing blocking event once it has run past the
    // blocking threshold (100 ms), which is past the 50 ms after which a dump is refused.
    wait_until(
        Duration::from_secs(20),
        "an ongoing blocking event in /debug/tasks",
        || {
            let (status, body) = http_get(addr, "/debug/tasks");
            when((status, body), |(s, b)| *s == 200 && b.contains("\"ongoing\":true"))
        },
    );
    let t = Instant::now();
    let (status, body) = http_get(addr, "/debug/pprof/goroutine?seconds=5");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("a worker of the application's runtime is blocked")
            && body.contains("diag_test_watched_blocker")
            && body.contains("no dump started"),
        "{body}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "refused at once, not after the asked 5 s: {:?}",
        t.elapsed()
    );
    watched_release.store(true, SeqCst);
    wait_until(Duration::from_secs(10), "the watched blocker to end", || {
        when(watched_done.load(SeqCst), |&d| d)
    });

    // Blockers, spawned from outside the runtime (the inject queue, which every worker takes
    // from; never a worker's LIFO slot, which others cannot steal). Each records the thread it
    // runs on and then holds it until released. A blocker never returns while blocking, so
    // the recorded threads are distinct workers of `rt`.
    let on_threads: Arc<Mutex<Vec<ThreadId>>> = Arc::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let spawn_blocker = || {
        let (on_threads, finished, release) =
            (on_threads.clone(), finished.clone(), release.clone());
        rt.spawn(async move {
            if release.load(SeqCst) {
                return; // a spare that ran only after the check
            }
            let me = std::thread::current().id();
            {
                let mut on = on_threads.lock().unwrap();
                assert!(!on.contains(&me), "two blockers on one worker thread");
                on.push(me);
            }
            while !release.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(10)); // workload: the worker held
            }
            finished.fetch_add(1, SeqCst);
        });
    };
    for _ in 0..workers {
        spawn_blocker();
    }
    let mut next_spare = Instant::now() + Duration::from_secs(1);
    wait_until(
        Duration::from_secs(20),
        &format!("all {workers} workers to run a blocker"),
        || {
            let blocked = on_threads.lock().unwrap().len();
            if Instant::now() >= next_spare {
                // A worker slow to wake: another task in the inject queue wakes one again.
                spawn_blocker();
                next_spare += Duration::from_secs(1);
            }
            when(blocked, |&b| b == workers)
                .map_err(|b| format!("{b} blockers; {}", scheduler_state(&rt)))
        },
    );

    // No worker can reach the dump's barrier: 503 once the asked second has passed.
    let t = Instant::now();
    let (status, body) = http_get(addr, "/debug/pprof/goroutine?seconds=1");
    assert_eq!(status, 503, "{body} ({})", scheduler_state(&rt));
    assert!(
        body.contains("a worker of the application's runtime is blocked"),
        "{body}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // That dump still holds the slot.
    let (status, body) = http_get(addr, "/debug/pprof/goroutine?seconds=1");
    assert_eq!(status, 409, "the first dump is still pending: {body}");
    assert!(body.contains("already running"), "{body}");
    // The debug listener itself still answers.
    let (status, body) = http_get(addr, "/debug/tasks");
    assert_eq!(status, 200, "{body}");

    release.store(true, SeqCst);
    wait_until(Duration::from_secs(10), "the released blockers to end", || {
        when(finished.load(SeqCst), |&f| f >= workers)
            .map_err(|f| format!("{f} ended; {}", scheduler_state(&rt)))
    });
    // See main: the runtime (with its dump still pending) is not dropped.
    std::mem::forget(rt);
}
