//! Loading a profile of any supported format, and choosing which of its columns to use.

use super::model::Profile;
use super::{dhat, pprof_codec};
use crate::error::{Error, Result};

/// Decodes a profile, detecting its format: pprof protobuf (gzip'd or plain, as served by
/// diag, Go's `net/http/pprof` or pprof-rs) or dhat-rs's `dhat-heap.json` (gzip'd or plain).
///
/// Every failure, including empty, truncated, corrupt or foreign input, is an
/// [`ErrorKind::Decode`](crate::ErrorKind::Decode) error; this never panics.
pub fn load(bytes: &[u8]) -> Result<Profile> {
    if bytes.is_empty() {
        return Err(Error::decode("empty input: not a profile"));
    }
    let raw = pprof_codec::maybe_gunzip(bytes)?;
    if raw.is_empty() {
        return Err(Error::decode(
            "empty input once decompressed: not a profile",
        ));
    }
    let mut profile = if dhat::looks_like_json(&raw) {
        dhat::decode(&raw)?
    } else {
        pprof_codec::decode(&raw)?
    };
    strip_hash_suffixes(&mut profile);
    Ok(profile)
}

/// Removes rustc's legacy-mangling hash (`::h0123456789abcdef`) from function names, as some
/// symbolizers leave it; names must match across builds for diffs.
fn strip_hash_suffixes(profile: &mut Profile) {
    for frame in profile.samples.iter_mut().flat_map(|s| s.stack.iter_mut()) {
        let len = strip_hash(&frame.function).len();
        frame.function.truncate(len);
    }
}

/// `myapp::leak::h0123456789abcdef` -> `myapp::leak`; anything else unchanged.
pub(crate) fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash))
            if !head.is_empty()
                && hash.len() == 16
                && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            head
        }
        _ => name,
    }
}

/// The column of `profile` to use: the one named `sample_type` if given, else the profile's
/// default (its `default_sample_type`, else `inuse_space` if present, else the last column,
/// which is `cpu` for pprof-rs CPU profiles).
///
/// An unknown name is an [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error
/// that lists the available ones.
pub fn select_sample(profile: &Profile, sample_type: Option<&str>) -> Result<usize> {
    match sample_type {
        Some(ty) => profile.sample_index(ty).ok_or_else(|| {
            Error::invalid(format!(
                "sample type `{ty}` is not in this profile (it has: {})",
                sample_type_names(profile)
            ))
        }),
        None => profile
            .default_sample_type
            .as_deref()
            .and_then(|t| profile.sample_index(t))
            .or_else(|| profile.sample_index("inuse_space"))
            .or_else(|| profile.default_index())
            .ok_or_else(|| Error::invalid("the profile has no sample types")),
    }
}

/// The profile's sample types as `inuse_space/bytes, ...`, for messages.
pub fn sample_type_names(profile: &Profile) -> String {
    if profile.sample_types.is_empty() {
        return "none".to_owned();
    }
    profile
        .sample_types
        .iter()
        .map(|t| format!("{}/{}", t.ty, t.unit))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::profile::testutil::{Rng, heap_profile, random_profile};

    #[test]
    fn loads_pprof_plain_and_gzip() {
        let p = heap_profile(&[(&["myapp::a", "myapp::main"], 100)]);
        assert_eq!(load(&pprof_codec::encode(&p)).unwrap(), p);
        assert_eq!(load(&pprof_codec::encode_gzip(&p)).unwrap(), p);
    }

    #[test]
    fn round_trip_random_profiles() {
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let p = random_profile(&mut rng);
            let plain = load(&pprof_codec::encode(&p)).expect("plain");
            assert_eq!(plain, p);
            let gz = load(&pprof_codec::encode_gzip(&p)).expect("gzip");
            assert_eq!(gz, p);
        }
    }

    #[test]
    fn bad_inputs_are_decode_errors() {
        let p = heap_profile(&[(&["myapp::a", "myapp::main"], 100)]);
        let gz = pprof_codec::encode_gzip(&p);
        let plain = pprof_codec::encode(&p);
        let mut cases: Vec<(String, Vec<u8>)> = vec![
            ("empty".into(), Vec::new()),
            ("gzip header only".into(), gz[..10].to_vec()),
            ("json array".into(), b"[1, 2, 3]".to_vec()),
            ("text".into(), b"hello, world\n".to_vec()),
            ("non-dhat json".into(), br#"{"a": 1}"#.to_vec()),
            (
                "truncated json".into(),
                br#"{"dhatFileVersion": 2, "mo"#.to_vec(),
            ),
        ];
        for cut in [1, 2, gz.len() / 2, gz.len() - 1] {
            cases.push((format!("gzip cut at {cut}"), gz[..cut].to_vec()));
        }
        for cut in 1..plain.len() {
            // Some prefixes of a protobuf are themselves valid; they must not panic.
            let _ = load(&plain[..cut]);
        }
        for (name, bytes) in cases {
            let err = load(&bytes).expect_err(&name);
            assert_eq!(err.kind(), ErrorKind::Decode, "{name}: {err}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(99);
        let mut errors = 0;
        for i in 0..2000 {
            let len = rng.below(300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if i % 3 == 0 && len > 2 {
                bytes[0] = 0x1f;
                bytes[1] = 0x8b;
            }
            if i % 3 == 1 && len > 0 {
                bytes[0] = b'{';
            }
            if let Err(e) = load(&bytes) {
                assert_eq!(e.kind(), ErrorKind::Decode);
                errors += 1;
            }
        }
        assert!(
            errors > 1900,
            "only {errors} of 2000 random inputs were refused"
        );
    }

    #[test]
    fn hash_suffixes_are_stripped() {
        assert_eq!(strip_hash("myapp::leak::h0123456789abcdef"), "myapp::leak");
        assert_eq!(strip_hash("myapp::h0123"), "myapp::h0123");
        assert_eq!(
            strip_hash("myapp::hello_world_is_long"),
            "myapp::hello_world_is_long"
        );
        let p = heap_profile(&[(&["myapp::a::h00112233aabbccdd", "myapp::main"], 1)]);
        let loaded = load(&pprof_codec::encode(&p)).unwrap();
        assert_eq!(loaded.samples[0].stack[0].function, "myapp::a");
    }

    #[test]
    fn sample_selection() {
        let p = heap_profile(&[]);
        assert_eq!(select_sample(&p, None).unwrap(), 3);
        assert_eq!(select_sample(&p, Some("alloc_space")).unwrap(), 1);
        let err = select_sample(&p, Some("cpu")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("inuse_space/bytes"), "{err}");
    }
}
