//! Arbitrary query strings sent to the real debug router (`diag_core::router()`, no socket):
//! the first byte picks the route, the rest is the query. The answer must be 200, 400 with a
//! one-line reason, 429 or 501 (heap routes without `DiagAlloc` installed), never a 500 or a
//! panic.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/debug/pprof/heap"),
    (Method::GET, "/debug/pprof/allocs"),
    (Method::GET, "/debug/heap/stats"),
    (Method::POST, "/debug/heap/rate"),
    (Method::GET, "/debug/pprof/"),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

fn router() -> axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER.get_or_init(diag_core::router).clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, query)) = data.split_first() else {
        return;
    };
    let (method, path) = &ROUTES[usize::from(pick) % ROUTES.len()];
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    // A URI the HTTP server would refuse never reaches the router.
    let Ok(request) = Request::builder()
        .method(method.clone())
        .uri(format!("{path}?{query}"))
        .body(Body::empty())
    else {
        return;
    };
    let (status, body) = runtime().block_on(async {
        let response = router().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, body)
    });
    assert!(
        matches!(
            status,
            StatusCode::OK
                | StatusCode::BAD_REQUEST
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::NOT_IMPLEMENTED
        ),
        "{method} {path}?{query} -> {status}"
    );
    if status != StatusCode::OK {
        let text = std::str::from_utf8(&body).expect("reason is UTF-8");
        assert!(
            text.ends_with('\n') && text.trim_end().lines().count() == 1,
            "{method} {path}?{query} -> {status}: {text:?}"
        );
    }
});
