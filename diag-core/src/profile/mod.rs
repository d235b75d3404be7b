//! The profile model and everything computed from it: pprof encode/decode, dhat import, diffs,
//! top lists, folded stacks and flamegraphs. Pure functions over readers and writers; used by
//! the service (to serve snapshots) and by the `diag` CLI.

mod model;
pub mod pprof_codec;

pub use model::{Frame, Profile, Sample, ValueType};
