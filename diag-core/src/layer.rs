//! [`layer()`]: one tower layer for the application's router that records per-route request
//! counts, latency histograms and status codes, and puts every request under the blocking
//! watchdog.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::{RouteEntry, UNMATCHED_ROUTE, global, method_index};
use crate::tasks::Watched;

/// The layer returned by [`layer()`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DiagLayer {
    _private: (),
}

/// Records every request of the router it wraps: `app.layer(diag_core::layer())`.
///
/// Per matched route template (`/users/{id}`, from axum's `MatchedPath`; requests that match
/// no route are labelled `unmatched`) and method: `http_requests_total{route,method,status}`
/// and `http_request_duration_seconds{route,method}` (time to the response head), served on
/// `GET /metrics`. Each request's future is also watched by the blocking watchdog under its
/// route template, and a random one in `DIAG_TASK_SAMPLE` (default 8) is counted by the
/// route's tokio-metrics `TaskMonitor` for `/debug/tasks`.
///
/// Add it with `Router::layer` after the routes, so it sees the matched route.
///
/// Cost: a few hundred nanoseconds per request and no lock; the counters are sharded per
/// thread, so only the TaskMonitor-counted requests write cache lines shared between workers
/// (see `BENCHMARKS.md`, `layer_cost`).
pub fn layer() -> DiagLayer {
    DiagLayer { _private: () }
}

impl<S> Layer<S> for DiagLayer {
    type Service = DiagService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DiagService { inner }
    }
}

/// The service [`DiagLayer`] wraps around each route.
#[derive(Debug, Clone)]
pub struct DiagService<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for DiagService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let entry = match req.extensions().get::<MatchedPath>() {
            Some(p) => global().matched_route(p),
            None => global().route(UNMATCHED_ROUTE),
        };
        let method = method_index(req.method()) as u8;
        // The inner service was polled ready by our poll_ready and is called right here, so
        // no clone of it is needed.
        let inner = entry.task.instrument_sampled(self.inner.call(req));
        ResponseFuture {
            inner,
            entry,
            method,
            start_us: 0,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`DiagService`]: the route's future, watched by the blocking
    /// watchdog and counted by the route's task monitor; records the request when it resolves.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Watched<F>,
        entry: &'static RouteEntry,
        method: u8,
        // Only when the watchdog did not time the first poll (nested in another watched
        // future): then the clock is read here instead (µs on the watchdog's clock; 0: not).
        start_us: u64,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll(cx);
        // The request's start is its first poll's, as the watchdog timed it (no clock read of
        // our own); the first poll follows `call` directly.
        let first = this.inner.first_poll_us();
        if first.is_none() && *this.start_us == 0 {
            *this.start_us = crate::tasks::now_us().max(1);
        }
        let Poll::Ready(res) = polled else {
            return Poll::Pending;
        };
        let start = first.unwrap_or(*this.start_us);
        let elapsed = Duration::from_micros(crate::tasks::now_us().saturating_sub(start));
        // An error never reaches axum's client (axum services are infallible); count it as a
        // 500 for the record.
        let status = res.as_ref().map_or(500, |r| r.status().as_u16());
        this.entry
            .record_at(usize::from(*this.method), status, elapsed);
        Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn latency_spans_all_polls_from_the_first() {
        let app = Router::new()
            .route(
                "/layer-test-slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                    "ok"
                }),
            )
            .layer(super::layer());
        let req = axum::http::Request::get("/layer-test-slow")
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap();
        let text = crate::metrics::render();
        let bucket = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("http_request_duration_seconds_bucket")
                        && l.contains(r#"route="/layer-test-slow""#)
                        && l.contains(&format!(r#"le="{le}""#))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        // 30 ms of sleeping across two polls: the latency is at least that (the sleep's lower
        // bound is guaranteed; how much longer depends on the machine's load, so no upper
        // bound is asserted), where the last poll alone would be microseconds.
        assert_eq!(bucket("0.025").as_deref(), Some("0"), "{text}");
        assert_eq!(bucket("+Inf").as_deref(), Some("1"), "{text}");
    }

    #[tokio::test]
    async fn records_templates_not_raw_paths() {
        let app = Router::new()
            .route("/layer-test/{id}", get(|| async { "ok" }))
            .route(
                "/layer-test-fail",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .layer(super::layer());
        for uri in [
            "/layer-test/1",
            "/layer-test/2",
            "/layer-test-fail",
            "/nope/123",
        ] {
            let req = axum::http::Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let text = crate::metrics::render();
        assert!(
            text.contains(
                r#"http_requests_total{route="/layer-test/{id}",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("/layer-test/1"));
        assert!(text.contains(
            r#"http_requests_total{route="/layer-test-fail",method="GET",status="500"} 1"#
        ));
        assert!(
            text.contains(r#"http_requests_total{route="unmatched",method="GET",status="404"}"#)
        );
        assert!(!text.contains("/nope/123"));
    }
}
