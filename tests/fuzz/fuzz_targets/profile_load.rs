//! Any bytes through the format-detecting profile loader (gzip'd or plain pprof, dhat JSON) and
//! the pprof decoder: never a panic, every failure a `Decode` error, and whatever decodes
//! encodes to a pprof that decodes again to the same samples.
#![no_main]

use diag_core::ErrorKind;
use diag_core::profile::{Profile, load, pprof_codec};
use libfuzzer_sys::fuzz_target;

fn check(decoded: diag_core::Result<Profile>) {
    match decoded {
        Ok(p) => {
            let again = pprof_codec::decode(&pprof_codec::encode(&p))
                .expect("a decoded profile must re-encode to a valid pprof");
            assert_eq!(again.sample_types, p.sample_types);
            assert_eq!(again.samples.len(), p.samples.len());
            for (a, b) in again.samples.iter().zip(&p.samples) {
                assert_eq!(a.values, b.values);
                assert_eq!(a.stack.len(), b.stack.len());
            }
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Decode, "{e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check(load(data));
    check(pprof_codec::decode(data));
});
