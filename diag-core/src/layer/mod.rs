//! The tower adapter over [`crate::recorder`]: [`layer()`] for axum routers (route =
//! `MatchedPath`), [`layer_with`] for routers without templates (a closure names the route),
//! and gRPC recognised by either (route = the method path, outcome = `grpc-status`).
//!
//! The layer is written over the `http` crate's types; the axum part is only how
//! [`MatchedRoutes`] reads the template (`matched.rs`), the gRPC part how a response's status
//! is read from its headers or trailers (`grpc.rs`). The actix-web middleware (`actix.rs`,
//! feature `actix`) is the other adapter over the same recorder.

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "actix")]
mod actix_routes;
mod grpc;
mod matched;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::recorder::{Method, Recorded, Route};

pub use grpc::ResponseBody;
pub use matched::MatchedRoutes;

/// How the layer names a request's route (implemented by [`MatchedRoutes`] and
/// [`RouteFn`]).
pub trait RouteNamer<B> {
    /// The route of `req`.
    fn route(&self, req: &Request<B>) -> Route;
}

/// The route namer of [`layer_with`]: a closure from the request to its route's name.
#[derive(Clone, Copy)]
pub struct RouteFn<F>(F);

impl<F> std::fmt::Debug for RouteFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteFn")
    }
}

impl<B, F, N> RouteNamer<B> for RouteFn<F>
where
    F: Fn(&Request<B>) -> N,
    N: AsRef<str>,
{
    #[inline]
    fn route(&self, req: &Request<B>) -> Route {
        Route::named((self.0)(req).as_ref())
    }
}

/// The layer returned by [`layer()`] and [`layer_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DiagLayer<R = MatchedRoutes> {
    routes: R,
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
/// gRPC requests (`content-type: application/grpc*`, e.g. under tonic's
/// `Server::builder().layer(diag_core::layer())`) are named by their method path
/// (`/pkg.Service/Method`) and also counted in `grpc_requests_total{route,code}` by their
/// `grpc-status` (from the response headers, or from the trailers at the end of the body);
/// their duration runs to the end of the response body, so a streaming call's is the
/// stream's.
///
/// Add it with `Router::layer` after the routes, so it sees the matched route.
///
/// Cost: a few hundred nanoseconds per request and no lock; the counters are sharded per
/// thread, so only the TaskMonitor-counted requests write cache lines shared between workers
/// (see `BENCHMARKS.md`, `layer_cost`).
pub fn layer() -> DiagLayer {
    DiagLayer {
        routes: MatchedRoutes::default(),
    }
}

/// [`layer()`] for routers that carry no route template (plain hyper or tower services): `f`
/// names each request's route, e.g. `diag_core::layer_with(|req| req.uri().path().to_owned())`
/// or a match over known prefixes. At most [`MAX_ROUTES`](crate::metrics::MAX_ROUTES)
/// distinct names get their own series; requests under later names are recorded as
/// `route="(other)"` (counted in `diag_route_names_folded_total`), so a closure that returns
/// raw paths cannot grow the metrics without bound. gRPC requests are named by their method
/// path, as under [`layer()`].
pub fn layer_with<F, B, N>(f: F) -> DiagLayer<RouteFn<F>>
where
    F: Fn(&Request<B>) -> N + Clone,
    N: AsRef<str>,
{
    DiagLayer { routes: RouteFn(f) }
}

impl<S, R: Clone> Layer<S> for DiagLayer<R> {
    type Service = DiagService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        DiagService {
            inner,
            routes: self.routes.clone(),
        }
    }
}

/// The service [`DiagLayer`] wraps around each route.
#[derive(Debug, Clone)]
pub struct DiagService<S, R = MatchedRoutes> {
    inner: S,
    routes: R,
}

impl<S, R, B, RB> Service<Request<B>> for DiagService<S, R>
where
    S: Service<Request<B>, Response = Response<RB>>,
    R: RouteNamer<B>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let grpc = grpc::is_grpc(req.headers());
        let route = if grpc {
            Route::named(req.uri().path())
        } else {
            self.routes.route(&req)
        };
        let method = Method::new(req.method().as_str());
        // The inner service was polled ready by our poll_ready and is called right here, so
        // no clone of it is needed.
        let inner = route.watch(method, self.inner.call(req));
        ResponseFuture { inner, grpc }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`DiagService`]: the route's future, watched by the blocking
    /// watchdog and counted by the route's task monitor; records the request when it resolves
    /// (a gRPC call whose status comes in trailers: when its body ends).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Recorded<F>,
        grpc: bool,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<ResponseBody<RB>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready((res, call)) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        Poll::Ready(match res {
            Ok(resp) if *this.grpc => Ok(grpc::finish_or_follow(resp, call)),
            Ok(resp) => {
                call.finish(resp.status().as_u16());
                Ok(resp.map(ResponseBody::plain))
            }
            Err(e) => {
                // An error never reaches axum's client (axum services are infallible); count
                // it as a 500 for the record.
                call.finish(500);
                Err(e)
            }
        })
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
