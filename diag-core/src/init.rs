//! [`init()`]: diag started in one call, from the `DIAG_*` environment variables.

use crate::builder::Builder;
use crate::error::Result;
use crate::handle::Diag;

/// Starts diag from `DIAG_*` environment variables: sets the heap sample rate and starts the
/// debug listener on its own thread and runtime.
///
/// Errors (never panics) if a variable is malformed, the address cannot be bound, or a
/// non-loopback address is asked for without `DIAG_TOKEN`.
pub fn init() -> Result<Diag> {
    Builder::default().from_env()?.start()
}
