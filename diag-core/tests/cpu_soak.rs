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
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// No completed request for this long counts as a hang.
const HANG: Duration = Duration::from_secs(20);

/// One GET: the status and the body's bytes.
fn get_bytes(addr: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("chunked response".into());
    }
    Ok((status, buf[head_end + 4..].to_vec()))
}

fn get_status(addr: &str, path: &str) -> Result<(u16, usize), String> {
    get_body(addr, path).map(|(status, body)| (status, body.len()))
}

/// One GET over a fresh connection: the status and the whole response (head and body).
fn get_body(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {text:?}"))?;
    let whole = String::from_utf8_lossy(&buf).into_owned();
    let body = whole
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
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
                    std::thread::sleep(Duration::from_millis(1));
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let app_addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move { axum::serve(listener, app()).await });

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let last_ms = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tick = {
        let (done, last_ms) = (done.clone(), last_ms.clone());
        move || {
            done.fetch_add(1, Ordering::Relaxed);
            last_ms.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    };

    // Watchdog: a hang fails loudly instead of blocking CI forever.
    {
        let (stop, last_ms) = (stop.clone(), last_ms.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let idle = start.elapsed().as_millis() as u64 - last_ms.load(Ordering::Relaxed);
                if idle > HANG.as_millis() as u64 {
                    eprintln!("WATCHDOG: no request completed for {idle} ms: deadlock; aborting");
                    std::process::abort();
                }
            }
        });
    }

    let mut threads = Vec::new();
    // Four clients on the app.
    for (i, path) in ["/churn", "/blocking", "/churn", "/stall"]
        .into_iter()
        .enumerate()
    {
        let (stop, addr, tick) = (stop.clone(), app_addr.clone(), tick.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("client-{i}"))
                .spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        match get_status(&addr, path) {
                            Ok((200, _)) => tick(),
                            other => panic!("{path} failed: {other:?}"),
                        }
                        n += 1;
                    }
                    n
                })
                .unwrap(),
        );
    }
    // A user thread that allocates and does syscalls outside any runtime.
    {
        let (stop, tick) = (stop.clone(), tick.clone());
        threads.push(
            std::thread::Builder::new()
                .name("user-churn".into())
                .spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(churn(n));
                        n += 1;
                        if n.is_multiple_of(64) {
                            tick();
                        }
                    }
                    n
                })
                .unwrap(),
        );
    }

    // A thread blocked in a syscall for seconds at a time while profiles run: each read must
    // come back whole with what was written (the sampler's signal must not break it).
    let (mut pipe_r, mut pipe_w) = std::io::pipe().expect("pipe");
    {
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("blocked-read".into())
                .spawn(move || {
                    let mut n = 0u64;
                    let mut buf = [0u8; 8];
                    while !stop.load(Ordering::Relaxed) {
                        if pipe_r.read_exact(&mut buf).is_err() {
                            break; // the writer closed: the test is over
                        }
                        assert_eq!(u64::from_le_bytes(buf), n, "the blocked read lost data");
                        n += 1;
                    }
                    n
                })
                .unwrap(),
        );
    }
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(3));
                pipe_w.write_all(&n.to_le_bytes()).unwrap();
                n += 1;
            }
        })
    };
    // Heap snapshots concurrently with the profiles, so samples land in the symbolizer too.
    {
        let (stop, addr, tick) = (stop.clone(), diag_addr.clone(), tick.clone());
        threads.push(
            std::thread::Builder::new()
                .name("snapshots".into())
                .spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // 429: the main loop's snapshot is being served (one at a time).
                        match get_status(&addr, "/debug/pprof/heap") {
                            Ok((200, _)) => {
                                tick();
                                n += 1;
                            }
                            Ok((429, _)) => {}
                            other => panic!("heap snapshot failed: {other:?}"),
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    n
                })
                .unwrap(),
        );
    }

    // Profiles back to back at 1000 Hz, every format, heap snapshots in between. Where the
    // pprof ones caught threads: inside malloc, inside the heap sampler's unwinder.
    let (mut in_malloc, mut in_unwinder, mut in_symbolizer, mut truncated, mut total) =
        (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut profiles = 0;
    let formats = ["pprof", "svg", "folded"];
    // At least two profiles whatever the time (one with each unwinder): on a loaded machine a
    // profile and its decoding can take most of the short run.
    while profiles < 2 || start.elapsed() < Duration::from_secs(secs) {
        diag_core::heap::set_unwinder(if profiles % 2 == 0 {
            diag_core::heap::Unwinder::Cached
        } else {
            diag_core::heap::Unwinder::Libgcc
        });
        let format = formats[profiles % formats.len()];
        let path = format!("/debug/pprof/profile?seconds=2&frequency=1000&format={format}");
        let (status, body) = get_bytes(&diag_addr, &path).expect("profile request");
        assert_eq!(status, 200, "{path}");
        assert!(body.len() > 100, "{path}: {} bytes", body.len());
        if format == "pprof" {
            let p = diag_core::profile::load(&body).expect("decode the profile");
            let i = p.sample_index("cpu").unwrap();
            for s in &p.samples {
                let has = |pat: &str| s.stack.iter().any(|f| f.function.contains(pat));
                let v = s.values[i];
                total += v;
                in_malloc += v * i64::from(has("malloc") || has("_int_free") || has("cfree"));
                in_unwinder += v * i64::from(has("stack::unwind"));
                in_symbolizer += v * i64::from(has("symboliz") || has("addr2line") || has("gimli"));
                truncated +=
                    v * i64::from(s.stack.last().is_some_and(|f| f.function == "[truncated]"));
            }
        }
        tick();
        let (status, _) = get_status(&diag_addr, "/debug/pprof/heap").expect("heap snapshot");
        // 429: the snapshot thread's is being served (one at a time).
        assert!(status == 200 || status == 429, "heap snapshot: {status}");
        tick();
        profiles += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap(); // drops the write end: the blocked reader sees the end and exits
    let mut requests = 0;
    for t in threads {
        requests += t.join().expect("a client failed");
    }
    eprintln!(
        "{profiles} CPU profiles, {requests} requests/iterations in {:?}, 0 failures",
        start.elapsed()
    );
    assert!(profiles >= 2);
    assert!(requests > 0);
    let ms = |ns: i64| ns / 1_000_000;
    eprintln!(
        "pprof profiles: {} ms of CPU, {} in malloc/free, {} in the heap unwinder, {} in the \
         symbolizer, {} truncated",
        ms(total),
        ms(in_malloc),
        ms(in_unwinder),
        ms(in_symbolizer),
        ms(truncated)
    );
    assert!(in_malloc > 0, "no CPU sample landed inside malloc/free");
    assert!(
        in_unwinder > 0,
        "no CPU sample landed inside the heap sampler's unwinder"
    );
    assert!(
        (truncated as f64) < 0.05 * total as f64,
        "{} of {} ms truncated",
        ms(truncated),
        ms(total)
    );

    // The blocking watchdog caught the stalls with their stacks.
    let (status, body) = get_body(&diag_addr, "/debug/tasks").expect("tasks");
    assert_eq!(status, 200);
    let tasks: serde_json::Value = serde_json::from_str(&body).expect("tasks json");
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
    let unwind = diag_core::heap::stats().unwind;
    eprintln!("heap unwinder: {unwind:?}");
    assert!(unwind.cached > 0, "{unwind:?}");
}
