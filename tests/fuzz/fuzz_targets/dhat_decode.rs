//! Any bytes through the dhat JSON importer: never a panic, every failure a `Decode` error, and
//! a decoded profile has dhat's four columns and encodes to a pprof that decodes again.
#![no_main]

use diag_core::ErrorKind;
use diag_core::profile::{dhat, pprof_codec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match dhat::decode(data) {
        Ok(p) => {
            assert_eq!(p.sample_types.len(), 4);
            assert!(p.samples.iter().all(|s| s.values.len() == 4));
            let again = pprof_codec::decode(&pprof_codec::encode(&p)).expect("re-decode");
            assert_eq!(again.samples.len(), p.samples.len());
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Decode, "{e}"),
    }
});
