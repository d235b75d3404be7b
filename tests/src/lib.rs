//! Shared pieces of diag's cross-crate tests.

pub mod workload;
