//! The request deadline and the response size cap of the debug routes (their own test binary:
//! the limits are process-wide settings).
#![cfg(feature = "server")]

use std::time::Duration;

use axum::http::StatusCode;

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// `GET uri` to the crate's router: the status and the body as text.
async fn get(uri: &str) -> (StatusCode, String) {
    let reply = support::oneshot(diag_core::router(), uri, None).await;
    (reply.status, reply.text())
}

fn configure(b: diag_core::Builder) {
    b.no_listener().start().expect("diag starts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_and_response_size() {
    // A response over the cap: 503 naming the limit, and the service goes on.
    configure(
        diag_core::Diag::builder()
            .max_response_bytes(64)
            .request_timeout(Duration::from_secs(30)),
    );
    let (s, reason) = get("/debug/heap/stats").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{reason}");
    assert!(reason.contains("DIAG_MAX_RESPONSE_BYTES"), "{reason}");
    assert_eq!(reason.lines().count(), 1, "{reason}");
    let (s, _) = get("/health").await;
    assert_eq!(s, StatusCode::OK, "small answers still pass");

    // A request past its deadline: a 1 s CPU profile may take 1 s plus the request timeout;
    // with a 1 ms timeout the encoding after the second of sampling runs past it.
    configure(
        diag_core::Diag::builder()
            .max_response_bytes(64 << 20)
            .max_profile_seconds(1)
            .request_timeout(Duration::from_millis(1)),
    );
    let (s, reason) = get("/debug/pprof/profile?seconds=1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{reason}");
    assert!(reason.contains("DIAG_REQUEST_TIMEOUT_MS"), "{reason}");

    // Defaults back: the same requests succeed.
    configure(diag_core::Diag::builder().max_profile_seconds(1));
    let (s, reason) = get("/debug/heap/stats").await;
    assert_eq!(s, StatusCode::OK, "{reason}");
    // The profiler may still be busy with the abandoned profile for a moment.
    let last = support::wait_until_async(
        Duration::from_secs(5),
        "the profiler free of the abandoned profile (not 409)",
        || async {
            let answer = get("/debug/pprof/profile?seconds=1").await;
            support::when(answer, |a| a.0 != StatusCode::CONFLICT)
        },
    )
    .await;
    assert_eq!(last.0, StatusCode::OK, "{}", last.1);
}
