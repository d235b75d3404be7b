//! A leaky axum service.
//!
//! - `GET /leak?kb=N` retains N KiB (default 64, at most 16384) per request in a global cache
//!   that is never pruned: the leak, in [`remember_request`].
//! - `GET /churn` allocates and frees a few hundred small buffers: normal traffic that must not
//!   look like a leak.
//! - `GET /warm?key=K&kb=N` stores N KiB (default 64) under key K in a bounded cache of the
//!   last [`WARM_ENTRIES`] keys, in [`warm_cache`]: memory that grows while the cache fills,
//!   then stays level. Not a leak, though a diff taken while it fills shows it growing.
//! - `GET /leaked` answers the exact bytes retained so far, so tests know the truth.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::Query;
use axum::routing::get;

static CACHE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static LEAKED: AtomicU64 = AtomicU64::new(0);
static WARM: Mutex<VecDeque<(u64, Vec<u8>)>> = Mutex::new(VecDeque::new());

/// Entries the warm cache keeps; the oldest goes when a new key arrives.
pub const WARM_ENTRIES: usize = 32;

#[derive(serde::Deserialize)]
struct LeakParams {
    kb: Option<usize>,
}

/// The leak: every request's buffer is kept forever. Returns the bytes retained.
#[inline(never)]
pub fn remember_request(kb: usize) -> usize {
    let mut buf = Vec::with_capacity(kb * 1024);
    buf.resize(kb * 1024, 0xAB);
    let n = buf.capacity();
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
    LEAKED.fetch_add(n as u64, Ordering::Relaxed);
    n
}

async fn leak(Query(p): Query<LeakParams>) -> String {
    let kb = p.kb.unwrap_or(64).clamp(1, 16 * 1024);
    format!("retained {} bytes\n", remember_request(kb))
}

#[derive(serde::Deserialize)]
struct WarmParams {
    key: Option<u64>,
    kb: Option<usize>,
}

/// A bounded cache: stores `kb` KiB under `key` unless the key is there already, dropping the
/// oldest entry beyond [`WARM_ENTRIES`]. Returns the entries held.
#[inline(never)]
pub fn warm_cache(key: u64, kb: usize) -> usize {
    let mut cache = WARM.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.iter().any(|(k, _)| *k == key) {
        let mut buf = Vec::with_capacity(kb * 1024);
        buf.resize(kb * 1024, 0xCD);
        cache.push_back((key, buf));
        if cache.len() > WARM_ENTRIES {
            cache.pop_front();
        }
    }
    cache.len()
}

async fn warm(Query(p): Query<WarmParams>) -> String {
    let kb = p.kb.unwrap_or(64).clamp(1, 16 * 1024);
    format!("{} entries\n", warm_cache(p.key.unwrap_or(0), kb))
}

/// Normal churn: allocations that are all freed before the response. Returns the page size.
#[inline(never)]
pub fn render_page() -> usize {
    let rows: Vec<String> = (0..200)
        .map(|i| format!("row {i}: {}", "x".repeat(i % 50)))
        .collect();
    let page = rows.join("\n");
    page.len()
}

async fn churn() -> String {
    format!("rendered {} bytes\n", render_page())
}

/// Bytes retained by [`remember_request`] so far (exact).
pub fn leaked_bytes() -> u64 {
    LEAKED.load(Ordering::Relaxed)
}

async fn leaked() -> String {
    format!("{}\n", leaked_bytes())
}

/// The service's routes.
pub fn app() -> Router {
    Router::new()
        .route("/leak", get(leak))
        .route("/churn", get(churn))
        .route("/warm", get(warm))
        .route("/leaked", get(leaked))
}
