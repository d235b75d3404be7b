//! A service whose handlers block the runtime, beside healthy routes.
//!
//! - `GET /sleep` calls [`slow_io`]: a blocking `std::thread::sleep` of 300 ms (a synchronous
//!   client or file read inside an async handler);
//! - `GET /burn` calls [`burn_300ms`]: 300 ms of CPU work in the handler;
//! - `GET /ok` and `GET /work` are healthy (the latter does a little async work).
//!
//! Every route runs under `diag_core::layer()`, so each request's polls are watched: the
//! blocking ones show up in `/debug/tasks` and `/debug/pprof/block` with these functions on
//! their stacks.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

/// How long the blocking handlers block.
pub const STALL: Duration = Duration::from_millis(300);

/// Blocks the calling worker thread for `d`, as a synchronous I/O call would.
#[inline(never)]
pub fn slow_io(d: Duration) {
    std::thread::sleep(d);
}

/// Spins the CPU for `d` (hashing a counter), returning the result so it is not optimised out.
#[inline(never)]
pub fn burn_300ms(d: Duration) -> u64 {
    let start = Instant::now();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    while start.elapsed() < d {
        for i in 0..10_000u64 {
            h = std::hint::black_box((h ^ i).wrapping_mul(0x0000_0100_0000_01b3));
        }
    }
    h
}

async fn sleep_route() -> &'static str {
    slow_io(STALL);
    "slept\n"
}

async fn burn_route() -> String {
    format!("burned {:x}\n", burn_300ms(STALL))
}

async fn ok() -> &'static str {
    "ok\n"
}

async fn work() -> String {
    tokio::time::sleep(Duration::from_millis(2)).await;
    let v: Vec<u64> = (0..1000).collect();
    format!("sum {}\n", v.iter().sum::<u64>())
}

/// The router, with diag's layer on every route.
pub fn app() -> Router {
    Router::new()
        .route("/sleep", get(sleep_route))
        .route("/burn", get(burn_route))
        .route("/ok", get(ok))
        .route("/work", get(work))
        .layer(diag_core::layer())
}
