//! A small shop service showing the monitoring essentials: the route layer, a named operation
//! timing and a readiness check.
//!
//! - `GET /items/{id}`: fast; looks the item up through a timed fake database query
//!   (`diag_operation_duration_seconds{operation="db.query"}`).
//! - `GET /catalog?page=N`: a page of 24 catalogue entries rendered as JSON, built from a
//!   timed fake query: a route with a typical handler's work (tens of microseconds of
//!   formatting, allocation and serialization), next to the near-empty `/items/{id}`.
//! - `GET /slow`: answers after 20-40 ms (spread evenly over requests).
//! - `GET /fail`: answers 500.
//! - `POST /db/down`, `POST /db/up`: flip the fake database, so `GET /ready` (served by diag)
//!   answers 503 naming `db`, then 200 again.
//!
//! [`app`] has the layer; [`routes`] is the same service without it and [`plain_routes`]
//! without any diag code (for overhead benches).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};

static DB_UP: AtomicBool = AtomicBool::new(true);
static SLOW_SEQ: AtomicU64 = AtomicU64::new(0);

/// The fake database query: a pure computation standing in for a round trip.
async fn query_item(id: u64) -> Result<String, String> {
    if !DB_UP.load(Ordering::Relaxed) {
        return Err("database is down".into());
    }
    Ok(format!(
        "{{\"id\":{id},\"name\":\"item {id}\",\"price_cents\":{}}}\n",
        100 + id % 900
    ))
}

async fn item(Path(id): Path<u64>) -> Result<String, (StatusCode, String)> {
    diag_core::timed("db.query", query_item(id))
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))
}

/// [`item`] without diag's operation timing (for the diag-free baseline).
async fn item_untimed(Path(id): Path<u64>) -> Result<String, (StatusCode, String)> {
    query_item(id)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))
}

/// One entry of a `/catalog` page.
#[derive(serde::Serialize)]
struct Entry {
    id: u64,
    sku: String,
    name: String,
    price_cents: u64,
    in_stock: bool,
    tags: Vec<String>,
}

/// `?page=N` of `/catalog` (default 0).
#[derive(serde::Deserialize)]
struct Page {
    #[serde(default)]
    page: u64,
}

/// The fake catalogue query: the 24 entries of page `page`.
async fn query_page(page: u64) -> Result<Vec<Entry>, String> {
    if !DB_UP.load(Ordering::Relaxed) {
        return Err("database is down".into());
    }
    Ok((page * 24..page * 24 + 24)
        .map(|id| {
            let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            Entry {
                id,
                sku: format!("SKU-{:08x}", h as u32),
                name: format!("Item number {id} of the catalogue, batch {}", h % 1000),
                price_cents: 100 + h % 100_000,
                in_stock: !h.is_multiple_of(3),
                tags: (0..h % 5)
                    .map(|t| format!("tag-{}", (h >> (8 * t)) % 97))
                    .collect(),
            }
        })
        .collect())
}

async fn catalog(Query(p): Query<Page>) -> Result<axum::Json<Vec<Entry>>, (StatusCode, String)> {
    diag_core::timed("db.catalog", query_page(p.page))
        .await
        .map(axum::Json)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))
}

/// [`catalog`] without diag's operation timing (for the diag-free baseline).
async fn catalog_untimed(
    Query(p): Query<Page>,
) -> Result<axum::Json<Vec<Entry>>, (StatusCode, String)> {
    query_page(p.page)
        .await
        .map(axum::Json)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))
}

/// The delay of the n-th `/slow` request: 20 ms to 40 ms, evenly spread (n * 7 mod 21).
pub fn slow_delay(n: u64) -> Duration {
    Duration::from_millis(20 + (n * 7) % 21)
}

async fn slow() -> &'static str {
    let n = SLOW_SEQ.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(slow_delay(n)).await;
    "slow\n"
}

async fn fail() -> (StatusCode, &'static str) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "this route always fails\n",
    )
}

async fn db_down() -> &'static str {
    DB_UP.store(false, Ordering::Relaxed);
    "db down\n"
}

async fn db_up() -> &'static str {
    DB_UP.store(true, Ordering::Relaxed);
    "db up\n"
}

/// Registers the `db` readiness check with diag (`GET /ready`).
pub fn register_readiness() {
    diag_core::readiness("db", || async {
        if DB_UP.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("database is down".to_owned())
        }
    });
}

/// The routes without diag's layer.
pub fn routes() -> Router {
    with_handlers(get(item), get(catalog))
}

/// The routes with no diag code at all (no layer, no `diag_core::timed`): the baseline of
/// `benches/scripts/service_overhead.sh` (binary `shop_plain`).
pub fn plain_routes() -> Router {
    with_handlers(get(item_untimed), get(catalog_untimed))
}

fn with_handlers(
    item: axum::routing::MethodRouter,
    catalog: axum::routing::MethodRouter,
) -> Router {
    Router::new()
        .route("/items/{id}", item)
        .route("/catalog", catalog)
        .route("/slow", get(slow))
        .route("/fail", get(fail))
        .route("/db/down", post(db_down))
        .route("/db/up", post(db_up))
}

/// For A/B benches in one process on one port: the routes under `/a` and `/c` without the
/// layer, under `/b` with it, and under `/n` with a no-op tower layer (what axum's
/// `Router::layer` costs for any layer) (`shop --ab`; `benches/scripts/layer_overhead.sh` with
/// `PROCESSES=paths`, `benches/scripts/layer_instructions.sh`).
pub fn ab_routes() -> Router {
    Router::new()
        .nest("/a", routes())
        .nest("/b", app())
        .nest("/c", routes())
        .nest("/n", routes().layer(tower_layer::Identity::new()))
}

/// The service with diag's layer: per-route counts, latencies and statuses on `/metrics`.
pub fn app() -> Router {
    routes().layer(diag_core::layer())
}
