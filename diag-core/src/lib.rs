#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

#[cfg(feature = "console")]
mod console;
pub mod cpu;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "heap")]
pub mod heap;
#[cfg(feature = "server")]
mod http;
#[cfg(feature = "server")]
mod init;
#[cfg(feature = "server")]
mod layer;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(any(feature = "heap", feature = "server"))]
mod padded;
pub mod profile;
#[cfg(feature = "heap")]
mod stack;
#[cfg(feature = "server")]
mod tasks;

#[cfg(feature = "server")]
#[cfg(feature = "console")]
pub use console::console_layer;
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "heap")]
pub use heap::{DiagAlloc, HeapStats, IgnoreAllocs};
#[cfg(feature = "server")]
pub use init::{Builder, DEFAULT_ADDR, Diag, env, init};
#[cfg(feature = "server")]
pub use layer::{DiagLayer, DiagService, ResponseFuture, layer};
#[cfg(feature = "server")]
pub use metrics::{Timer, readiness, timed, timer};
#[cfg(feature = "server")]
pub use tasks::spawn;

#[cfg(feature = "server")]
static ROUTER_TOKEN: std::sync::Mutex<Option<std::sync::Arc<str>>> = std::sync::Mutex::new(None);

/// The debug endpoints as an `axum::Router` at their full paths (`/debug/pprof/heap`, ...), to
/// `merge` into the application's own router instead of running a second listener. Guarded by
/// the token configured with [`init`] / [`Builder::token`], if any.
#[cfg(feature = "server")]
pub fn router() -> axum::Router {
    let token = ROUTER_TOKEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    http::router_with(http::RouterOptions {
        token,
        ..Default::default()
    })
}
