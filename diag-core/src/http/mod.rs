//! The HTTP surface: routes, the access guard, and the debug listener's own thread and runtime.

#[cfg(feature = "cpu")]
mod cpu;
pub(crate) mod error;
mod heap;
pub(crate) mod limits;
mod metrics;
pub(crate) mod query;
pub(crate) mod server;
mod tasks;

pub(crate) use server::{ServerConfig, ServerHandle, start_server};

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use error::HttpError;

/// Runs CPU-heavy work (symbolization, encoding) off the async workers, with diag's own
/// allocations left unsampled.
async fn run_blocking<F>(f: F) -> Result<Response, HttpError>
where
    F: FnOnce() -> Response + Send + 'static,
{
    blocking("profile task", f).await
}

/// [`run_blocking`] for work that returns a value; `what` names it if the task fails.
async fn blocking<T, F>(what: &str, f: F) -> Result<T, HttpError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        let out = f();
        // What building a profile freed goes back to the system before the answer leaves.
        crate::stack::resolve::trim_after_request();
        out
    })
    .await
    .map_err(|e| {
        HttpError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed: {e}"),
        )
    })
}

/// A profile as a gzip'd pprof download named `filename`.
fn pprof_response(p: &crate::profile::Profile, filename: &str) -> Response {
    use axum::http::header;
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        crate::profile::pprof_codec::encode_gzip(p),
    )
        .into_response()
}

async fn index() -> Response {
    concat!(
        "diag debug endpoints\n",
        "  /debug/pprof/heap      heap profile (in-use), gzip'd pprof; ?debug=1 for text; ?at=T: as recorded at T; ?seconds=N: the change over N s\n",
        "  /debug/pprof/allocs    heap profile (allocated), gzip'd pprof; ?debug=1 for text; ?seconds=N: allocated over N s\n",
        "  /debug/pprof/profile   CPU profile, ?seconds=30&frequency=99&format=pprof|svg|folded\n",
        "  /debug/tasks           blocking events, event-loop lag, runtime and task health, JSON; ?debug=1 for text\n",
        "  /debug/pprof/block     where polls blocked the runtime, gzip'd pprof\n",
        "  (every profile above: ?symbolize=0 for addresses and mappings with build IDs only)\n",
        "  /debug/pprof/goroutine where every task awaits (tokio task dump, `taskdump` feature), text; ?seconds=5&format=json\n",
        "  /debug/heap/stats      exact allocation counters and sampler state, JSON\n",
        "  /debug/heap/history    the heap history's points (one a minute by default), JSON; POST ?interval_ms=N&points=M\n",
        "  /debug/leaks           the leak alarm: stacks growing steadily over the heap history, JSON\n",
        "  /debug/heap/rate       POST ?bytes=N: set the heap sample rate (0 off, 1 exact)\n",
        "  /metrics               Prometheus text exposition (routes, operations, process, heap)\n",
        "  /health                200 with uptime while alive\n",
        "  /ready                 readiness checks: 200 when all pass, 503 naming the failing\n",
    )
    .into_response()
}

/// Options for [`router_with`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RouterOptions {
    pub(crate) token: Option<Arc<str>>,
    /// Cap on `/debug/pprof/profile?seconds=`; `None` uses [`crate::cpu::max_seconds`].
    pub(crate) max_profile_seconds: Option<u64>,
}

/// The debug routes at their full paths (`/debug/pprof/heap`, ...), guarded as configured.
pub(crate) fn router_with(opts: RouterOptions) -> Router {
    let r = Router::new()
        .route("/debug/pprof/", get(index))
        .route("/debug/pprof", get(index))
        .route("/debug/pprof/heap", get(heap::heap_profile))
        .route("/debug/pprof/allocs", get(heap::allocs_profile))
        .route("/debug/heap/stats", get(heap::stats))
        .route(
            "/debug/heap/history",
            get(heap::history).post(heap::set_history),
        )
        .route("/debug/heap/rate", post(heap::set_rate))
        .route("/debug/leaks", get(heap::leaks))
        .route("/debug/tasks", get(tasks::tasks))
        .route("/debug/pprof/block", get(tasks::block_profile))
        .route("/debug/pprof/goroutine", get(tasks::goroutine))
        .route("/metrics", get(metrics::metrics))
        .route("/health", get(metrics::health))
        .route("/ready", get(metrics::ready));
    let max_profile_seconds = opts.max_profile_seconds;
    let r = r.route(
        "/debug/pprof/profile",
        get(move |q: axum::extract::RawQuery| cpu::profile(max_profile_seconds, q)),
    );
    // The limits run inside the token guard: an unauthenticated request is refused before
    // any work.
    let r = r.layer(axum::middleware::from_fn(limits::enforce));
    match opts.token {
        Some(token) => r.layer(axum::middleware::from_fn(move |req, next| {
            server::require_token(token.clone(), req, next)
        })),
        None => r,
    }
}
