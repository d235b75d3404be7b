//! [`Diag`], the handle of a started diag, and [`router()`]: the debug endpoints as an
//! `axum::Router` for code without the handle.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::env;

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
    /// The handle of a started diag (from [`Builder::start`](crate::Builder::start)).
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
    /// listener; see [`Builder::no_listener`](crate::Builder::no_listener). Guarded by this
    /// handle's token ([`Builder::token`](crate::Builder::token), `DIAG_TOKEN`), if it has one.
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
