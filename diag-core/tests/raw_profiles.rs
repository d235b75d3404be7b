//! Unsymbolized profiles (`?symbolize=0`) and naming them from files: the raw heap profile
//! holds addresses only, its mappings carry this binary's build ID and say they are not
//! symbolized, and `diag_core::symbolize` names it from this test binary's file exactly as
//! the service names the same stacks itself. One test binary with DiagAlloc installed.
#![cfg(feature = "server")]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use diag_core::profile::{self, Profile};
use diag_core::symbolize::{Fetched, Sources, build_id, symbolize};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// GET `uri` on the debug router: the status and the body.
async fn get(uri: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    let resp = diag_core::router().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

#[inline(never)]
fn hold_in_raw_test(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..256 {
        keep.push(std::hint::black_box(vec![3u8; 64 << 10]));
    }
}

/// Bytes in use under stacks that pass through the leaking function.
fn held(p: &Profile) -> i64 {
    let i = p.sample_index("inuse_space").unwrap();
    p.samples
        .iter()
        .filter(|s| {
            s.stack
                .iter()
                .any(|f| f.function.ends_with("hold_in_raw_test"))
        })
        .map(|s| s.values[i])
        .sum()
}

/// The raw protobuf of a served profile, for its mapping flags.
fn proto(bytes: &[u8]) -> profile::proto::Profile {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .unwrap();
    <profile::proto::Profile as prost::Message>::decode(&raw[..]).unwrap()
}

#[tokio::test]
async fn raw_profiles_are_named_from_the_binary_as_the_service_names_them() {
    diag_core::heap::set_sample_rate(16 * 1024);
    let mut keep = Vec::new();
    hold_in_raw_test(&mut keep); // 16 MiB

    let (status, named_bytes) = get("/debug/pprof/heap?symbolize=1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, raw_bytes) = get("/debug/pprof/heap?symbolize=0").await;
    assert_eq!(status, StatusCode::OK);
    let named = profile::load(&named_bytes).unwrap();
    let mut raw = profile::load(&raw_bytes).unwrap();

    // Raw: every frame with an address is unnamed, and the profile says so.
    assert!(
        raw.samples
            .iter()
            .flat_map(|s| &s.stack)
            .all(|f| f.address == 0 || f.is_raw()),
        "a raw profile has named frames"
    );
    assert_eq!(
        raw.comment_value(profile::RAW_STACKS_COMMENT),
        Some(profile::RAW_DROP_TOP_MACHINERY)
    );
    assert_eq!(held(&raw), 0);
    // Its main mapping is this binary, with this binary's build ID, and not symbolized; the
    // named profile's main mapping says it is.
    let exe = std::env::current_exe().unwrap();
    let id = build_id(&exe)
        .unwrap()
        .expect("this test binary has a build ID");
    assert_eq!(raw.mappings[0].build_id, id);
    let raw_proto = proto(&raw_bytes);
    assert!(
        !raw_proto.mapping[0].has_functions,
        "{:?}",
        raw_proto.mapping[0]
    );
    let named_proto = proto(&named_bytes);
    assert!(
        named_proto.mapping[0].has_functions,
        "{:?}",
        named_proto.mapping[0]
    );
    assert_eq!(named.mappings[0].build_id, id);

    // Named from the file: the leak is found, with the same estimate as in-process, and the
    // stacks through it are the same frames.
    let mut sources = Sources::default();
    sources.binaries = vec![exe.clone()];
    let mut no_fetch = |_: &str| Fetched::default();
    let outcome = symbolize(&mut raw, &sources, &mut no_fetch).unwrap();
    assert!(outcome.named > 0, "{outcome:?}");
    assert!(held(&named) >= 8 << 20, "in-process: {}", held(&named));
    assert!(
        (held(&raw) - held(&named)).abs() <= held(&named) / 10,
        "from the file {} vs in-process {}",
        held(&raw),
        held(&named)
    );
    let stacks = |p: &Profile| -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = p
            .samples
            .iter()
            .filter(|s| {
                s.stack
                    .iter()
                    .any(|f| f.function.ends_with("hold_in_raw_test"))
            })
            .map(|s| s.stack.iter().map(|f| f.function.clone()).collect())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let (from_file, in_process) = (stacks(&raw), stacks(&named));
    assert!(!in_process.is_empty());
    for s in &from_file {
        assert!(
            in_process.contains(s),
            "named from the file: {s:?}\nnot among the service's: {in_process:#?}"
        );
        assert!(
            !s[0].starts_with("diag_core::"),
            "machinery left on top: {s:?}"
        );
    }
    assert_eq!(raw.comment_value(profile::RAW_STACKS_COMMENT), None);

    // A binary of another build: refused, naming both build IDs.
    let mut again = profile::load(&raw_bytes).unwrap();
    let mut other = Sources::default();
    other.binaries = vec![std::path::PathBuf::from("/bin/sh")];
    let err = symbolize(&mut again, &other, &mut no_fetch).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&id) && msg.contains("/bin/sh has build ID"),
        "{msg}"
    );

    // A profile without build IDs (a Go profile's, an older diag's): a clear reason.
    for m in &mut again.mappings {
        m.build_id.clear();
    }
    let err = symbolize(&mut again, &Sources::default(), &mut no_fetch).unwrap_err();
    assert!(err.to_string().contains("no build IDs"), "{err}");

    // Raw CPU and block profiles are served too; a bad value is refused.
    let (status, _) = get("/debug/pprof/block?symbolize=0").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get("/debug/pprof/heap?symbolize=2").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    drop(keep);
}
