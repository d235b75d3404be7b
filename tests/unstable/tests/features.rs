//! diag-core's `console` and `taskdump` features against a real multi-thread runtime.
//!
//! Built with `--cfg tokio_unstable` (tests/unstable/run.sh): tokio-console's gRPC server
//! answers an HTTP/2 handshake, and `/debug/pprof/goroutine` names the function a task awaits
//! in. Built without the flag (`run.sh --without-unstable`): both features refuse with clear
//! errors. With every worker blocked (two tasks that count themselves in, so each worker is
//! known to be inside one), a dump cannot finish: diag answers 503 when the
//! asked seconds pass, and 409 to the next request while that dump is still pending.

#![allow(unexpected_cfgs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

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
    console_and_taskdump();
    println!("console_and_taskdump: ok");
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
        let diag = rt
            .block_on(async {
                diag_core::Diag::builder()
                    .addr("127.0.0.1:0")
                    .console(false)
                    .start()
            })
            .expect("diag starts without the console");
        let (status, body) = http_get(diag.local_addr().unwrap(), "/debug/pprof/goroutine");
        assert_eq!(status, 501, "{body}");
        assert!(body.contains("tokio_unstable"), "{body}");
        return;
    }

    let diag = started.expect("diag starts with the console");
    let addr = diag.local_addr().unwrap();

    // tokio-console's endpoint is up.
    let console = SocketAddr::from(([127, 0, 0, 1], console_port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !speaks_http2(console) {
        assert!(
            Instant::now() < deadline,
            "no gRPC server on {console} (TOKIO_CONSOLE_BIND)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

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

    // Both workers blocked: the dump cannot complete. Each task counts itself in and then
    // blocks its worker until released; the test goes on once both run (a bounded wait, so a
    // scheduler that never runs the second task cannot hang the test).
    let running = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    for _ in 0..2 {
        let (running, release) = (running.clone(), release.clone());
        rt.spawn(async move {
            running.fetch_add(1, SeqCst);
            while !release.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.load(SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(running.load(SeqCst), 2, "both workers should be blocked");
    let t = Instant::now();
    let (status, body) = http_get(addr, "/debug/pprof/goroutine?seconds=1");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("a worker of the application's runtime is blocked"),
        "{body}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let (status, body) = http_get(addr, "/debug/pprof/goroutine?seconds=1");
    assert_eq!(status, 409, "the first dump is still pending: {body}");
    assert!(body.contains("already running"), "{body}");
    // The debug listener itself still answers.
    let (status, _) = http_get(addr, "/debug/tasks");
    assert_eq!(status, 200);
    release.store(true, SeqCst);

    // See main: the runtime is not dropped.
    std::mem::forget(rt);
}
