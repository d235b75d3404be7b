//! A service whose routes and background task leak different amounts, to find *which endpoint
//! leaks* from labelled samples (`diag diff --by route`, `--by task`) and which route burns
//! the CPU (`diag top --by route`).
//!
//! - `GET /audit`, `GET /sessions/{id}`, `GET /search`: each request keeps 3, 2 and 1 units
//!   of [`UNIT_KB`] KiB, as 1 KiB strings (many small blocks, as real leaks are), all in one
//!   shared function, [`retain`]: only the route label tells the three apart.
//! - `GET /churn`: allocates and frees 256 KiB per request (no growth).
//! - `POST /compact`: hands one job to the `compactor` task (started with
//!   `diag_core::spawn`), which keeps [`COMPACT_KB`] KiB per job: a leak outside any request.
//! - `GET /cpu/heavy` and `GET /cpu/light`: burn 3 and 1 rounds of [`crate::hot::burn_cpu`].
//! - `GET /truth`: the exact bytes kept so far, per route and for the task, as JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use tokio::sync::mpsc;

/// KiB one leak unit keeps.
pub const UNIT_KB: usize = 16;
/// KiB the compactor keeps per job.
pub const COMPACT_KB: usize = 24;
/// The `n` of one round of `/cpu/*`: ~15 ms in a debug build, several kernel ticks, so the
/// CPU sampler's tick-granular attribution does not blur the two routes.
pub const BURN_N: u64 = 130_000;

/// Everything kept, one `Vec` per request or job (so the list's own growth, 24 bytes a
/// request, stays negligible next to what each entry holds).
static KEPT: Mutex<Vec<Vec<String>>> = Mutex::new(Vec::new());
static TRUTH: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// The routes that leak, in the order of their truth counters.
const ROUTES: [&str; 3] = ["/audit", "/sessions/{id}", "/search"];

/// Keeps `units` units as 1 KiB strings and adds their capacity to truth counter `which`.
#[inline(never)]
pub fn retain(units: usize, which: usize) {
    let mut kept = Vec::with_capacity(units * UNIT_KB);
    let mut bytes = 0;
    for i in 0..units * UNIT_KB {
        let s = format!("{i:>1024}");
        bytes += s.capacity();
        kept.push(s);
    }
    bytes += kept.capacity() * std::mem::size_of::<String>();
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(kept);
    TRUTH[which].fetch_add(bytes as u64, Ordering::Relaxed);
}

/// Allocates and frees 256 KiB in 1 KiB pieces.
#[inline(never)]
pub fn churn() -> usize {
    let v: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 1024]).collect();
    std::hint::black_box(&v).len()
}

/// The compactor's job: keeps [`COMPACT_KB`] KiB.
#[inline(never)]
pub fn compact_job() {
    let kept: Vec<String> = (0..COMPACT_KB).map(|i| format!("{i:>1024}")).collect();
    let bytes = kept.iter().map(String::capacity).sum::<usize>()
        + kept.capacity() * std::mem::size_of::<String>();
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(kept);
    TRUTH[3].fetch_add(bytes as u64, Ordering::Relaxed);
}

async fn audit() -> &'static str {
    retain(3, 0);
    "audited\n"
}

async fn session(Path(_id): Path<u64>) -> &'static str {
    retain(2, 1);
    "session\n"
}

async fn search() -> &'static str {
    retain(1, 2);
    "found\n"
}

async fn churn_route() -> String {
    format!("{}\n", churn())
}

/// The compactor's queue; the task starts with the first job (on the app's runtime).
static JOBS: OnceLock<mpsc::UnboundedSender<()>> = OnceLock::new();

async fn compact() -> &'static str {
    let jobs = JOBS.get_or_init(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        diag_core::spawn("compactor", async move {
            while rx.recv().await.is_some() {
                compact_job();
            }
        });
        tx
    });
    let _ = jobs.send(());
    "queued\n"
}

fn burn(rounds: u64) -> String {
    let mut x = 0;
    for _ in 0..rounds {
        x ^= crate::hot::burn_cpu(BURN_N);
    }
    format!("{x}\n")
}

async fn heavy() -> String {
    burn(3)
}

async fn light() -> String {
    burn(1)
}

async fn truth() -> String {
    let get = |i: usize| TRUTH[i].load(Ordering::Relaxed);
    let routes: Vec<String> = ROUTES
        .iter()
        .enumerate()
        .map(|(i, r)| format!("\"{r}\": {}", get(i)))
        .collect();
    format!(
        "{{\"routes\": {{{}}}, \"compactor\": {}}}\n",
        routes.join(", "),
        get(3)
    )
}

/// The service with diag's layer.
pub fn app() -> Router {
    Router::new()
        .route("/audit", get(audit))
        .route("/sessions/{id}", get(session))
        .route("/search", get(search))
        .route("/churn", get(churn_route))
        .route("/compact", post(compact))
        .route("/cpu/heavy", get(heavy))
        .route("/cpu/light", get(light))
        .route("/truth", get(truth))
        .layer(diag_core::layer())
}
