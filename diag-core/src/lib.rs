#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod error;
#[cfg(feature = "heap")]
pub mod heap;
pub mod profile;

pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "heap")]
pub use heap::{DiagAlloc, HeapStats, IgnoreAllocs};
