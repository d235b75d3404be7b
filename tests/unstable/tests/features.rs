//! diag-core's `console` and `taskdump` features against a real multi-thread runtime.
//!
//! Built with `--cfg tokio_unstable` (tests/unstable/run.sh): tokio-console's gRPC server
//! answers an HTTP/2 handshake, and `/debug/pprof/goroutine` names the function a task awaits
//! in. Built without the flag (`run.sh --without-unstable`): both features refuse with clear
//! errors. (The blocked-worker path, 503 then 409, is not tested here yet: whether tokio's
//! dump waits for a blocked worker depends on when the worker picks the blocking task up.)

#![allow(unexpected_cfgs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
    // See main: the runtime is not dropped.
    std::mem::forget(rt);
}
