#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod error;
pub mod profile;

pub use error::{Error, ErrorKind, Result};
