//! Example services that embed diag-core, as libraries so the end-to-end tests can run them
//! in-process (with `DiagAlloc` installed by the test binary), and as thin binaries under
//! `src/bin/` for people and for `diag demo`.

pub mod hot;
pub mod leaky;
pub mod shop;
pub mod stall;

/// Serves `app` on `listener` until the process ends, printing the address the way the
/// example binaries do (`app listening on http://...`).
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}
