#![forbid(unsafe_code)]
//! The `diag` command.
fn main() {}
