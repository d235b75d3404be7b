//! The actix-web adapter over [`crate::recorder`] (feature `actix`):
//! `App::new().wrap(diag_core::actix::Diag::default())`.
//!
//! Per request: the route is the resource's pattern as actix's `match_pattern()` gives it
//! (`/users/{id}`; requests that match no resource are `unmatched`), learned per worker so that
//! most requests do not pay for actix's lookup (`actix_routes.rs`), the method its name, the outcome the response's status (an
//! error returned by the inner service: its `ResponseError` status). Each request's polls are
//! watched by the blocking watchdog under its route, and heap and CPU samples taken meanwhile
//! carry `route`. Each actix worker runs its own current-thread tokio runtime, started after
//! `main`: the middleware watches it (lag probe, runtime figures) as the worker builds the app,
//! under the worker thread's name (`actix-rt|system:0|arbiter:0`, ... with actix-web 4.18),
//! with no line of the user's.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};

use super::actix_routes::{self, Naming};
use crate::recorder::{Method, Recorded, Route};

/// The actix-web middleware: `App::new().wrap(diag_core::actix::Diag::default())`.
///
/// Records `http_requests_total{route,method,status}` and
/// `http_request_duration_seconds{route,method}` (time to the response head) per resource
/// pattern, watches each request's polls for blocking, labels heap and CPU samples with the
/// route, and watches each worker's runtime. Wrap it last (outermost), so it times the other
/// middleware too; it sees the pattern either way.
///
/// Cost: the recorder's (as under [`layer()`](crate::layer())) plus naming the route. actix's
/// own answer before routing (`match_pattern()`) matches the path against the app's resource
/// map again, a regex run per dynamic resource: ~7,000 instructions a request. So each worker
/// learns the patterns actix returns and names later paths by them with string compares,
/// checked against the parameters actix captured once it has routed the request (a path a
/// learned pattern claims wrongly is recorded under the right route, and its route learned
/// ahead). A path matching a pattern with a regex (`{id:\d+}`; a last `{tail}*` or
/// `{tail:.*}` is learned) or a parameter inside a segment, matching no resource, or served
/// by a prefix service (actix-files' `Files`, named by its mount: `/` for one at the root)
/// still pays actix's lookup. Measured side by side with the axum layer (`BENCHMARKS.md`,
/// `layer_instructions.sh` with `ACTIX=1`): ~1,300 instructions a request for a learned route,
/// as under `layer()`; ~3,000 for a path that matches no resource.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Diag;

impl<S, B> Transform<S, ServiceRequest> for Diag
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = DiagMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        // Called on each worker's thread, inside its runtime, as it builds the app.
        crate::tasks::watch_this_threads_runtime();
        ready(Ok(DiagMiddleware { service }))
    }
}

/// The service [`Diag`] wraps around the app.
#[derive(Debug)]
pub struct DiagMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for DiagMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = DiagFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let (route, naming) = actix_routes::name(&req);
        let method = Method::new(req.method().as_str());
        DiagFuture {
            inner: route.watch(method, self.service.call(req)),
            route,
            naming,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`DiagMiddleware`]: records the request when it resolves.
    pub struct DiagFuture<F> {
        #[pin]
        inner: Recorded<F>,
        route: Route,
        naming: Naming,
    }
}

impl<F, B> Future for DiagFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready((res, mut call)) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        let status = match &res {
            Ok(resp) => {
                call.set_route(actix_routes::confirm(
                    *this.route,
                    this.naming,
                    resp.request(),
                ));
                resp.status()
            }
            // actix turns the error into a response with this status.
            Err(e) => e.as_response_error().status_code(),
        };
        call.finish(status.as_u16());
        Poll::Ready(res)
    }
}
