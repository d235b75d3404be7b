//! `GET /metrics` (Prometheus text exposition), `GET /health` and `GET /ready`.

use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::HttpError;
use super::query::Params;
use crate::metrics;

/// `GET /metrics`: every metric in the Prometheus text format, version 0.0.4.
pub(crate) async fn metrics(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    Params::parse(raw.as_deref(), &[])?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response())
}

/// `GET /health`: 200 with the process uptime while the process is alive.
pub(crate) async fn health(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    Params::parse(raw.as_deref(), &[])?;
    Ok(axum::Json(serde_json::json!({
        "status": "ok",
        "uptime_seconds": metrics::process_uptime_seconds(),
    }))
    .into_response())
}

/// `GET /ready`: runs the registered readiness checks; 200 listing them when all pass, 503
/// naming the failing ones otherwise.
pub(crate) async fn ready(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    Params::parse(raw.as_deref(), &[])?;
    let results = metrics::readiness::run_all().await;
    let failing: Vec<&str> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.name.as_str())
        .collect();
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if failing.is_empty() { "ready" } else { "not ready" },
        "failing": failing,
        "checks": results,
    });
    Ok((status, axum::Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(uri: &str) -> (StatusCode, String) {
        let app = crate::http::router_with(Default::default());
        let r = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    // One test: readiness checks are process-global.
    #[tokio::test]
    async fn metrics_health_and_ready() {
        let (s, body) = get("/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            body.contains("# TYPE process_resident_memory_bytes gauge"),
            "{body}"
        );
        let (s, body) = get("/metrics?x=1").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");

        let (s, body) = get("/health").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("uptime_seconds"), "{body}");

        let (s, body) = get("/ready").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        crate::readiness("db", || async { Ok(()) });
        crate::readiness("cache", || async { Err("connection refused".to_owned()) });
        let (s, body) = get("/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["failing"], serde_json::json!(["cache"]));
        assert!(body.contains("connection refused"));
        crate::metrics::readiness::set_timeout(std::time::Duration::from_millis(50));
        crate::readiness("cache", || async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Ok(())
        });
        let (s, body) = get("/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("timed out after 50 ms"), "{body}");
        crate::readiness("cache", || async { Ok(()) });
        let (s, body) = get("/ready").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(body.contains(r#""name":"db""#) && body.contains(r#""name":"cache""#));
    }
}
