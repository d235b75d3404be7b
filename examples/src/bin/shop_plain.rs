//! The shop example's routes with no diag at all: the std `System` allocator, no
//! `diag_core::init`, no layer, no `diag_core::timed`. The baseline ("bare") of
//! `benches/scripts/service_overhead.sh`: what a user who does not embed diag would run.
//!
//! Usage: `shop_plain [APP_ADDR]` (default 127.0.0.1:8080); prints `app listening on
//! http://...` once bound. Same runtime as `shop` (`#[tokio::main]`, one worker per core).
//!
//! The handlers are copies of `diag_examples::shop`'s, less the `timed("db.query", ...)`
//! wrapper (that is diag code: it records into diag's operation histogram); keep them in step
//! with that module.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};

static DB_UP: AtomicBool = AtomicBool::new(true);
static SLOW_SEQ: AtomicU64 = AtomicU64::new(0);

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
    query_item(id)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))
}

async fn slow() -> &'static str {
    let n = SLOW_SEQ.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(20 + (n * 7) % 21)).await;
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

#[tokio::main]
async fn main() {
    let app = Router::new()
        .route("/items/{id}", get(item))
        .route("/slow", get(slow))
        .route("/fail", get(fail))
        .route("/db/down", post(db_down))
        .route("/db/up", post(db_up));
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shop_plain: cannot bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("app listening on http://{a}"),
        Err(e) => eprintln!("shop_plain: {e}"),
    }
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("shop_plain: {e}");
        std::process::exit(1);
    }
}
