//! Any bytes as the query string of the debug endpoints, through the same strict parser
//! (`Params::parse`, `u64_in`, `one_of`); the invariants are checked in `diag_core::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| diag_core::fuzzing::query(data));
