//! The shop example's `/catalog` route (the "typical handler" of the layer benches): it
//! answers its page, rejects a bad page, follows the fake database, and is instrumented by
//! `diag_core::layer()` and `diag_core::timed` like the other routes.

mod support;

use support::agent;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// Status and body of a request.
fn call(method: &str, url: &str) -> (u16, String) {
    let a = agent();
    let mut r = match method {
        "POST" => a.post(url).send_empty(),
        _ => a.get(url).call(),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let body = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), body)
}

#[test]
fn catalog_pages_errors_and_metrics() {
    let service =
        diag_examples::InProcess::start(diag_core::Diag::builder(), diag_examples::shop::app());
    let app = service.app_url.clone();

    let (status, body) = call("GET", &format!("{app}/catalog?page=2"));
    assert_eq!(status, 200, "{body}");
    let page: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let ids: Vec<u64> = page.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (48..72).collect::<Vec<_>>());
    assert!(
        page.iter()
            .all(|e| e["sku"].as_str().unwrap().starts_with("SKU-"))
    );
    let (status, body) = call("GET", &format!("{app}/catalog"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()[0]["id"],
        0
    );

    let (status, _) = call("GET", &format!("{app}/catalog?page=x"));
    assert_eq!(status, 400, "a page that is not a number");

    assert_eq!(call("POST", &format!("{app}/db/down")).0, 200);
    let (status, body) = call("GET", &format!("{app}/catalog?page=1"));
    assert_eq!(call("POST", &format!("{app}/db/up")).0, 200);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("database is down"), "{body}");

    let (status, metrics) = call("GET", &format!("{}/metrics", service.diag_url));
    assert_eq!(status, 200);
    for needle in [
        r#"route="/catalog",method="GET",status="200""#,
        r#"route="/catalog",method="GET",status="400""#,
        r#"route="/catalog",method="GET",status="503""#,
        r#"operation="db.catalog""#,
    ] {
        assert!(
            metrics.lines().any(|l| l.contains(needle)),
            "{needle} not in /metrics:\n{metrics}"
        );
    }
}
