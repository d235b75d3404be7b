//! The debug routes without sockets (tower `oneshot`), plus the listener's refusal to bind a
//! public address without a token. One test binary with DiagAlloc installed.
#![cfg(feature = "server")]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// The status `GET uri` to `app` answers.
async fn status(app: axum::Router, uri: &str, auth: Option<&str>) -> StatusCode {
    support::oneshot(app, uri, auth).await.status
}

#[inline(never)]
fn retain(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..64 {
        keep.push(vec![7u8; 1 << 20]);
    }
}

#[tokio::test]
async fn routes_then_token_guard() {
    // One test: the router token, the limits and the allocator are process-global.
    // First, while no snapshot was taken yet: the rate limit.
    snapshot_rate_limit().await;
    routes_answer_and_validate().await;
    token_guard_and_public_bind_refusal().await;
}

async fn routes_answer_and_validate() {
    let mut keep = Vec::new();
    retain(&mut keep);
    let app = diag_core::router();

    let (s, ct, body) = support::oneshot(app.clone(), "/debug/pprof/heap", None)
        .await
        .parts();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct, "application/octet-stream");
    let p = diag_core::profile::pprof_codec::decode(&body).expect("a pprof profile");
    assert_eq!(p.default_sample_type.as_deref(), Some("inuse_space"));
    let names: Vec<_> = p.sample_types.iter().map(|t| t.ty.as_str()).collect();
    assert_eq!(
        names,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    let is = p.sample_index("inuse_space").unwrap();
    let retained: i64 = p
        .samples
        .iter()
        .filter(|s| {
            s.stack
                .iter()
                .any(|f| f.function.ends_with("http_router::retain"))
        })
        .map(|s| s.values[is])
        .sum();
    assert!(
        retained > 32 << 20,
        "64 MiB retained, profile says {retained}"
    );

    let (s, _, body) = support::oneshot(app.clone(), "/debug/pprof/allocs", None)
        .await
        .parts();
    assert_eq!(s, StatusCode::OK);
    let p = diag_core::profile::pprof_codec::decode(&body).unwrap();
    assert_eq!(p.default_sample_type.as_deref(), Some("alloc_space"));

    let (s, ct, body) = support::oneshot(app.clone(), "/debug/pprof/heap?debug=1", None)
        .await
        .parts();
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("heap profile: "), "{text}");
    assert!(text.contains("http_router::retain"));

    for bad in [
        "/debug/pprof/heap?debug=2",
        "/debug/pprof/heap?debug=x",
        "/debug/pprof/heap?bogus=1",
        "/debug/pprof/heap?debug=1&debug=1",
        "/debug/heap/stats?x=1",
        "/debug/pprof/goroutine?seconds=0",
        "/debug/pprof/goroutine?seconds=31",
        "/debug/pprof/goroutine?format=xml",
    ] {
        let (s, ct, body) = support::oneshot(app.clone(), bad, None).await.parts();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(ct.starts_with("text/plain"), "{bad}");
        let reason = String::from_utf8(body).unwrap();
        assert_eq!(
            reason.lines().count(),
            1,
            "one-line reason for {bad}: {reason}"
        );
    }

    // This build has no `taskdump` feature: a clear 501 naming what is missing.
    let (s, _, body) = support::oneshot(app.clone(), "/debug/pprof/goroutine", None)
        .await
        .parts();
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    let reason = String::from_utf8(body).unwrap();
    assert!(reason.contains("taskdump"), "{reason}");

    let (s, _, body) = support::oneshot(app.clone(), "/debug/heap/stats", None)
        .await
        .parts();
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["live_bytes"].as_u64().unwrap() >= 64 << 20);
    drop(keep);
}

async fn snapshot_rate_limit() {
    let d = diag_core::Diag::builder()
        .no_listener()
        .snapshot_min_interval(std::time::Duration::from_secs(10))
        .start()
        .unwrap();
    let app = diag_core::router();
    assert_eq!(
        status(app.clone(), "/debug/pprof/heap", None).await,
        StatusCode::OK
    );
    let resp = app
        .clone()
        .oneshot(
            Request::get("/debug/pprof/heap")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("rate limit"));
    // Cheap endpoints are not limited.
    assert_eq!(
        status(app.clone(), "/debug/heap/stats", None).await,
        StatusCode::OK
    );
    d.shutdown();
    let _ = diag_core::Diag::builder()
        .no_listener()
        .snapshot_min_interval(std::time::Duration::ZERO)
        .start()
        .unwrap();
}

async fn token_guard_and_public_bind_refusal() {
    // A public address without a token is refused with a message naming the token.
    let err = diag_core::Diag::builder()
        .addr("0.0.0.0:0")
        .start()
        .expect_err("must refuse");
    assert!(err.to_string().contains("token"), "{err}");

    // With a token, every endpoint wants it (constant-time compare; 401 otherwise).
    let d = diag_core::Diag::builder()
        .addr("127.0.0.1:0")
        .token("s3cret-token")
        .start()
        .unwrap();
    let app = diag_core::router();
    assert_eq!(
        status(app.clone(), "/debug/pprof/heap", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(app.clone(), "/debug/pprof/heap", Some("Bearer wrong-token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            app.clone(),
            "/debug/heap/stats",
            Some("Bearer s3cret-token"),
        )
        .await,
        StatusCode::OK
    );
    // The handle's own router carries its token; so does a later instance's.
    assert_eq!(
        status(d.router(), "/debug/heap/stats", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(d.router(), "/debug/heap/stats", Some("Bearer s3cret-token")).await,
        StatusCode::OK
    );
    let other = diag_core::Diag::builder()
        .no_listener()
        .token("other-token")
        .start()
        .unwrap();
    assert_eq!(
        status(
            other.router(),
            "/debug/heap/stats",
            Some("Bearer other-token"),
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(d.router(), "/debug/heap/stats", Some("Bearer other-token")).await,
        StatusCode::UNAUTHORIZED
    );
    // The free function follows the most recently started one.
    assert_eq!(
        status(
            diag_core::router(),
            "/debug/heap/stats",
            Some("Bearer other-token"),
        )
        .await,
        StatusCode::OK
    );
    d.shutdown();
}
