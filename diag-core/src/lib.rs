#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

#[cfg(feature = "server")]
mod builder;
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
#[cfg(feature = "symbolize")]
pub mod symbolize;
#[cfg(feature = "server")]
mod tasks;
pub mod wire;

#[cfg(feature = "server")]
pub use builder::{
    Builder, DEFAULT_ADDR, DEFAULT_BLOCKING_THRESHOLD, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_READINESS_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SNAPSHOT_MIN_INTERVAL,
    DEFAULT_TASK_SAMPLE,
};
#[cfg(feature = "server")]
#[cfg(feature = "console")]
pub use console::console_layer;
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "heap")]
pub use heap::{alloc::DiagAlloc, thread::IgnoreAllocs};
#[cfg(feature = "server")]
pub use init::{Diag, env, init, router};
#[cfg(feature = "server")]
pub use layer::{DiagLayer, DiagService, ResponseFuture, layer};
#[cfg(feature = "server")]
pub use metrics::readiness::readiness;
#[cfg(feature = "server")]
pub use metrics::timed::{Timer, timed, timer};
#[cfg(feature = "server")]
pub use tasks::spawn;
