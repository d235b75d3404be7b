//! `console` feature: console-subscriber, so `tokio-console` can attach to the service.
//!
//! [`Builder::start`](crate::Builder::start) (and so [`init()`](crate::init)) installs a
//! global tracing subscriber carrying console-subscriber's layer, which serves tokio-console's
//! gRPC API on `127.0.0.1:6669` (`TOKIO_CONSOLE_BIND` and the other `TOKIO_CONSOLE_*`
//! variables apply). Applications with their own subscriber add [`console_layer()`] to it and
//! turn the automatic one off with `Builder::console(false)`.
//!
//! tokio only emits the task events tokio-console reads when built with
//! `RUSTFLAGS="--cfg tokio_unstable"`; without it this returns an `Unsupported` error rather
//! than panicking as console-subscriber would.

// `tokio_unstable` is set by the application's RUSTFLAGS, not a cargo feature.
#![allow(unexpected_cfgs)]

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::error::{Error, ErrorKind, Result};

const NEEDS_UNSTABLE: &str = "the `console` feature needs the application built with RUSTFLAGS=\"--cfg tokio_unstable\" (tokio only reports tasks to tokio-console then); rebuild with it or drop the feature";

/// console-subscriber's layer (with its gRPC server started on its own thread), for an
/// application that installs its own tracing subscriber.
///
/// # Errors
///
/// `Unsupported` when the build lacks `--cfg tokio_unstable`.
pub fn console_layer<S>() -> Result<impl tracing_subscriber::Layer<S>>
where
    S: tracing_core::Subscriber + for<'a> LookupSpan<'a>,
{
    if !cfg!(tokio_unstable) {
        return Err(Error::new(ErrorKind::Unsupported, NEEDS_UNSTABLE));
    }
    Ok(console_subscriber::ConsoleLayer::builder()
        .with_default_env()
        .spawn())
}

/// Installs the global subscriber with the console layer, once per process.
pub(crate) fn start() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), (ErrorKind, String)>> = OnceLock::new();
    DONE.get_or_init(|| {
        if !cfg!(tokio_unstable) {
            return Err((ErrorKind::Unsupported, NEEDS_UNSTABLE.to_owned()));
        }
        if tracing_core::dispatcher::has_been_set() {
            return Err((
                ErrorKind::Config,
                "a global tracing subscriber is already installed: add diag_core::console_layer() to it and start diag with Builder::console(false)".to_owned(),
            ));
        }
        let layer = console_layer().map_err(|e| (e.kind(), e.to_string()))?;
        tracing_subscriber::registry()
            .with(layer)
            .try_init()
            .map_err(|e| (ErrorKind::Config, format!("installing the console subscriber: {e}")))
    })
    .clone()
    .map_err(|(kind, msg)| Error::new(kind, msg))
}
