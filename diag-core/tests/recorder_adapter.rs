//! An adapter for a framework diag does not know is one small piece of code over
//! `diag_core::recorder`, with no type of that framework in diag's signatures: here a toy
//! "framework" whose requests are `(method, path)` string pairs and whose handlers answer a
//! status code, recorded as the tower layer records axum's.

#![cfg(feature = "server")]

use diag_core::recorder::{Method, Route};

/// The toy framework's request and its router's match.
struct ToyRequest {
    method: &'static str,
    path: String,
    /// The pattern the toy router matched (`/users/{id}`), if any.
    pattern: Option<&'static str>,
}

/// The whole adapter: name the route, watch the handler, finish with its status.
async fn serve<F: Future<Output = u16>>(req: &ToyRequest, handler: F) -> u16 {
    let route = req.pattern.map_or_else(Route::unmatched, Route::named);
    let (status, call) = route.watch(Method::new(req.method), handler).await;
    call.finish(status);
    status
}

#[tokio::test]
async fn a_toy_framework_is_recorded_through_the_recorder() {
    for id in 0..3 {
        let req = ToyRequest {
            method: "GET",
            path: format!("/users/{id}"),
            pattern: Some("/toy/users/{id}"),
        };
        assert!(req.path.starts_with("/users/"));
        serve(&req, async { 200 }).await;
    }
    let missing = ToyRequest {
        method: "DELETE",
        path: "/nowhere".into(),
        pattern: None,
    };
    serve(&missing, async {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await; // workload: a handler that takes time
        404
    })
    .await;
    let text = diag_core::metrics::render();
    assert!(
        text.contains(
            r#"http_requests_total{route="/toy/users/{id}",method="GET",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{route="unmatched",method="DELETE",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"http_request_duration_seconds_count{route="unmatched",method="DELETE"} 1"#
        ),
        "{text}"
    );
}
