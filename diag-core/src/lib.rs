#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

// One direction of imports. A module uses only modules on floors below its own; modules on
// one floor do not use each other; submodules of one module use each other freely.
// `tests/layers.rs` reads every `crate::` path and fails on one against this order.
// Floors, lowest first:
//
//   error, padded, wire,      leaves: the error type, cache-line padding, the JSON shapes,
//   defaults, names, env,     every DEFAULT_* (and MAX_FRAMES), the label keys and the one
//   units                       name past a cap, the DIAG_* variable names, values for
//                               people (`12.4 MiB`, `350.0ms`)
//   alloc_state               the allocator's shared state: configuration word, per-thread
//                               countdown and counters, drop counters, IgnoreAllocs
//   profile                   the profile model: pprof codec, diff, folded stacks, flamegraphs
//   symbolize                 names from files: ELF symbol tables, DWARF, debug files by
//                               build ID, the naming rules (the CLI uses it too)
//   stack                     this process's stacks: capture, unwinding, the loaded images,
//                               naming them with bounded caches
//   tasks                     poll slots, blocking watchdog, lag probe, task names and health
//   heap                      DiagAlloc's sampling, the stack table, heap profiles and history,
//                               the leak alarm, captures to DIAG_CAPTURE_DIR
//   cpu                       the SIGPROF sampler, CPU profiles
//   metrics                   the Prometheus registry, timings, readiness
//   recorder                  the framework-neutral request recorder (route, method,
//                               outcome, timing, watchdog, task monitor) over plain `&str`s
//   http, layer, console      the debug routes and listener; the tower/axum/gRPC adapter
//                               over the recorder; console
//   handle, fuzzing, testing  `Diag` and `router()`; fuzz entry points; leak assertions in tests
//   builder                   `Builder`, `Diag::builder()`
//   init                      `init()`

#[cfg(feature = "heap")]
mod alloc_state;
#[cfg(feature = "server")]
mod builder;
#[cfg(feature = "console")]
mod console;
pub mod cpu;
mod defaults;
#[cfg(feature = "server")]
pub mod env;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
mod handle;
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
mod names;
#[cfg(any(feature = "heap", feature = "server"))]
mod padded;
pub mod profile;
#[cfg(feature = "server")]
pub mod recorder;
#[cfg(feature = "heap")]
mod stack;
#[cfg(feature = "symbolize")]
pub mod symbolize;
#[cfg(feature = "server")]
mod tasks;
#[cfg(feature = "heap")]
pub mod testing;
pub mod units;
pub mod wire;

#[cfg(feature = "heap")]
pub use alloc_state::IgnoreAllocs;
#[cfg(feature = "server")]
pub use builder::Builder;
#[cfg(feature = "server")]
#[cfg(feature = "console")]
pub use console::console_layer;
#[cfg(feature = "server")]
pub use defaults::{
    DEFAULT_ADDR, DEFAULT_BLOCKING_THRESHOLD, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_READINESS_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SNAPSHOT_MIN_INTERVAL,
    DEFAULT_TASK_SAMPLE,
};
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "server")]
pub use handle::{Diag, router};
#[cfg(feature = "heap")]
pub use heap::alloc::DiagAlloc;
#[cfg(feature = "server")]
pub use init::init;
#[cfg(feature = "actix")]
pub use layer::actix;
#[cfg(feature = "server")]
pub use layer::{
    DiagLayer, DiagService, MatchedRoutes, ResponseBody, ResponseFuture, RouteFn, RouteNamer,
    layer, layer_with,
};
#[cfg(feature = "server")]
pub use metrics::readiness::readiness;
#[cfg(feature = "server")]
pub use metrics::timed::{Timer, timed, timer};
#[cfg(feature = "server")]
pub use tasks::{spawn, watch_runtime, watch_runtime_named};
