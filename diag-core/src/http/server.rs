//! The debug listener: its own OS thread and its own single-threaded tokio runtime, so the
//! endpoints answer even when every worker of the application's runtime is stuck.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::error::HttpError;
use super::{RouterOptions, router_with};
use crate::error::{Error, ErrorKind, Result};

/// What the listener needs to start.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<Arc<str>>,
}

/// A running debug listener.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    pub(crate) local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops accepting, lets requests in flight finish, and joins the thread.
    pub(crate) fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `cfg.addr` now (so a bad address is an error here) and serves on a new thread.
pub(crate) fn start_server(cfg: ServerConfig) -> Result<ServerHandle> {
    if !cfg.addr.ip().is_loopback() && cfg.token.is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "refusing to serve debug endpoints on non-loopback address {} without a token: \
                 set DIAG_TOKEN (or Builder::token) to require `Authorization: Bearer <token>`",
                cfg.addr
            ),
        ));
    }
    let listener = TcpListener::bind(cfg.addr).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!("cannot bind the diag listener to {}: {e}", cfg.addr),
            e,
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::with_source(ErrorKind::Io, "cannot configure the listener", e))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::with_source(ErrorKind::Io, "cannot read the listener address", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("diag-blocking")
        .max_blocking_threads(4)
        .on_thread_start(crate::alloc_state::ignore_this_thread)
        .build()
        .map_err(|e| Error::with_source(ErrorKind::Io, "cannot build the diag runtime", e))?;
    let (tx, rx) = oneshot::channel::<()>();
    let router = router_with(RouterOptions {
        token: cfg.token,
        ..Default::default()
    });
    let thread = std::thread::Builder::new()
        .name("diag-http".into())
        .spawn(move || {
            crate::alloc_state::ignore_this_thread();
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        })
        .map_err(|e| Error::with_source(ErrorKind::Io, "cannot spawn the diag thread", e))?;
    Ok(ServerHandle {
        local_addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// Answers 401 unless the request carries `Authorization: Bearer <token>` (constant-time).
pub(crate) async fn require_token(token: Arc<str>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        next.run(req).await
    } else {
        let mut r = HttpError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer <DIAG_TOKEN>",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    }
}
