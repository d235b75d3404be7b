//! Starting diag: `init()` from `DIAG_*` environment variables, or [`Builder`] in code.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::builder::Builder;
use crate::error::Result;

/// Environment variables read by [`init`] and [`Builder::from_env`].
pub mod env {
    /// Listener address, `host:port` (default `127.0.0.1:6060`; port 0 picks a free port).
    pub const ADDR: &str = "DIAG_ADDR";
    /// Mean bytes between heap samples (default 524288; 0 off; 1 every allocation).
    pub const HEAP_SAMPLE_BYTES: &str = "DIAG_HEAP_SAMPLE_BYTES";
    /// Unwinder for the stacks of sampled allocations: `cached` (default: cached DWARF
    /// unwinding with libgcc as the fallback) or `libgcc` (libgcc for every stack).
    pub const HEAP_UNWINDER: &str = "DIAG_HEAP_UNWINDER";
    /// Bearer token required by every debug endpoint; needed to bind a non-loopback address.
    pub const TOKEN: &str = "DIAG_TOKEN";
    /// Cap on sampled blocks tracked at once (default 1048576).
    pub const MAX_TRACKED_BLOCKS: &str = "DIAG_MAX_TRACKED_BLOCKS";
    /// Minimum milliseconds between two heap snapshots (default 200; faster answers 429).
    pub const SNAPSHOT_MIN_INTERVAL_MS: &str = "DIAG_SNAPSHOT_MIN_INTERVAL_MS";
    /// A poll running longer than this many milliseconds is a blocking event (default 100).
    pub const BLOCKING_THRESHOLD_MS: &str = "DIAG_BLOCKING_THRESHOLD_MS";
    /// One request in this many per route is counted by the route's tokio-metrics
    /// `TaskMonitor` in `/debug/tasks` (default 8; 1 counts every request). The blocking
    /// watchdog and `/metrics` see every request regardless.
    pub const TASK_SAMPLE: &str = "DIAG_TASK_SAMPLE";
    /// Longest CPU profile a request may ask for, in seconds (default 120).
    pub const MAX_PROFILE_SECONDS: &str = "DIAG_MAX_PROFILE_SECONDS";
    /// Deadline of a debug request in milliseconds, beyond the time a CPU profile or task dump
    /// asks for (default 30000); later answers 503.
    pub const REQUEST_TIMEOUT_MS: &str = "DIAG_REQUEST_TIMEOUT_MS";
    /// Largest debug response body in bytes (default 67108864); larger answers 503.
    pub const MAX_RESPONSE_BYTES: &str = "DIAG_MAX_RESPONSE_BYTES";
    /// Seconds between two points of the heap history (default 60; 0 turns it off).
    pub const HEAP_HISTORY_INTERVAL_SECS: &str = "DIAG_HEAP_HISTORY_INTERVAL_SECS";
    /// Points the heap history keeps (default 60, from 2 to 1440).
    pub const HEAP_HISTORY_POINTS: &str = "DIAG_HEAP_HISTORY_POINTS";
    /// The application's crates, comma-separated (`myapp,myapp_db`), besides the binary's own
    /// crate and those its profiles show with their source files: heap sites are their
    /// functions, never a dependency's. Recorded in every heap profile (`app_crates=`).
    pub const APP_CRATES: &str = "DIAG_APP_CRATES";
    /// What the symbolizer may keep between debug requests, in bytes (default 8388608).
    pub const SYMBOL_CACHE_BYTES: &str = "DIAG_SYMBOL_CACHE_BYTES";
    /// Seconds without symbolizing after which the symbolizer drops everything (default 60;
    /// fractions allowed).
    pub const SYMBOL_IDLE_SECS: &str = "DIAG_SYMBOL_IDLE_SECS";
    /// `on` (default) or `off`: whether the service names the frames of the profiles it
    /// serves; `off` serves addresses and mappings with build IDs only (as `?symbolize=0`), for
    /// `diag --binary` / `--debug-dir` / debuginfod or `go tool pprof BINARY` to name.
    pub const SYMBOLIZE: &str = "DIAG_SYMBOLIZE";
}

/// Starts diag from `DIAG_*` environment variables: sets the heap sample rate and starts the
/// debug listener on its own thread and runtime.
///
/// Errors (never panics) if a variable is malformed, the address cannot be bound, or a
/// non-loopback address is asked for without `DIAG_TOKEN`.
pub fn init() -> Result<Diag> {
    Builder::default().from_env()?.start()
}

/// A running diag. Dropping it leaves the listener running for the life of the process; call
/// [`Diag::shutdown`] to stop it.
#[derive(Debug)]
pub struct Diag {
    server: Option<crate::http::ServerHandle>,
    token: Option<Arc<str>>,
}

/// The token of the most recently started [`Diag`] (outer `None`: none started yet), for
/// [`router`] alone; [`Diag::router`] and the listener use their handle's own.
static LAST_STARTED_TOKEN: RwLock<Option<Option<Arc<str>>>> = RwLock::new(None);

impl Diag {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The handle of a started diag (from [`Builder::start`]).
    pub(crate) fn started(
        server: Option<crate::http::ServerHandle>,
        token: Option<Arc<str>>,
    ) -> Self {
        *LAST_STARTED_TOKEN
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Self { server, token }
    }

    /// The address the listener is bound to (useful with port 0), if it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr)
    }

    /// The debug endpoints as an `axum::Router` at their full paths (`/debug/pprof/heap`,
    /// ...), to `merge` into the application's own router instead of (or besides) the
    /// listener; see [`Builder::no_listener`]. Guarded by this handle's token
    /// ([`Builder::token`], `DIAG_TOKEN`), if it has one.
    ///
    /// ```no_run
    /// # fn app() -> axum::Router { axum::Router::new() }
    /// let diag = diag_core::Diag::builder().no_listener().start()?;
    /// let app = app().merge(diag.router());
    /// # Ok::<(), diag_core::Error>(())
    /// ```
    pub fn router(&self) -> axum::Router {
        crate::http::router_with(crate::http::RouterOptions {
            token: self.token.clone(),
            ..Default::default()
        })
    }

    /// Stops the listener and waits for its thread.
    pub fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Drop for Diag {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            // Keep serving: the listener lives as long as the process.
            std::mem::forget(s);
        }
    }
}

/// The debug endpoints as an `axum::Router`, for code that has no [`Diag`] handle at hand:
/// [`Diag::router`] of the most recently started diag, guarded by its token; before any
/// start, guarded by `DIAG_TOKEN` if that is set (unguarded otherwise).
pub fn router() -> axum::Router {
    let started = LAST_STARTED_TOKEN
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let token = match started {
        Some(token) => token,
        None => std::env::var(env::TOKEN)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(Into::into),
    };
    crate::http::router_with(crate::http::RouterOptions {
        token,
        ..Default::default()
    })
}
