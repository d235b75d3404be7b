//! The HTTP face of errors: a status code and a one-line plain-text reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorKind};

/// An error answered to an HTTP client.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
    /// Seconds for a `Retry-After` header (429), if any.
    pub(crate) retry_after_ms: Option<u64>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            retry_after_ms: None,
        }
    }

    /// 429 with a `Retry-After` of at least one second.
    pub(crate) fn too_many(reason: impl Into<String>, retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, reason)
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Decode => StatusCode::BAD_REQUEST,
            ErrorKind::Busy => StatusCode::CONFLICT,
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
        ) {
            tracing::info!(
                target: "diag",
                status = self.status.as_u16(),
                reason = %self.reason,
                "debug request refused"
            );
        }
        let mut reason = self.reason.replace('\n', " ");
        reason.push('\n');
        let mut r = (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            reason,
        )
            .into_response();
        if let Some(ms) = self.retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        r
    }
}
