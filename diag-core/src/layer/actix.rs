//! The actix-web adapter over [`crate::recorder`] (feature `actix`):
//! `App::new().wrap(diag_core::actix::Diag::default())`.
//!
//! Per request: the route is actix's `match_pattern()` (`/users/{id}`; requests that match no
//! resource are `unmatched`), the method its name, the outcome the response's status (an
//! error returned by the inner service: its `ResponseError` status). Each request's polls are
//! watched by the blocking watchdog under its route, and heap and CPU samples taken meanwhile
//! carry `route`. Each actix worker runs its own current-thread tokio runtime, started after
//! `main`: the middleware watches it (lag probe, runtime figures) as the worker builds the app,
//! under the worker thread's name (`actix-server worker 0`, ...), with no line of the user's.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};

use crate::recorder::{Method, Recorded, Route};

/// The actix-web middleware: `App::new().wrap(diag_core::actix::Diag::default())`.
///
/// Records `http_requests_total{route,method,status}` and
/// `http_request_duration_seconds{route,method}` (time to the response head) per resource
/// pattern, watches each request's polls for blocking, labels heap and CPU samples with the
/// route, and watches each worker's runtime. Wrap it last (outermost), so it times the other
/// middleware too; it sees the pattern either way (`match_pattern()` looks the path up in the
/// app's resource map).
///
/// Cost: the recorder's (as under [`layer()`](crate::layer())) plus actix's pattern lookup,
/// which matches the path against the app's resource map again and allocates the pattern's
/// string: about 7,800 instructions per request in all, against the axum layer's ~1,300
/// (`BENCHMARKS.md`, `layer_instructions.sh` with `ACTIX=1`).
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
        let route = match req.match_pattern() {
            Some(p) => Route::named(&p),
            None => Route::unmatched(),
        };
        let method = Method::new(req.method().as_str());
        DiagFuture {
            inner: route.watch(method, self.service.call(req)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`DiagMiddleware`]: records the request when it resolves.
    pub struct DiagFuture<F> {
        #[pin]
        inner: Recorded<F>,
    }
}

impl<F, B> Future for DiagFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Poll::Ready((res, call)) = self.project().inner.poll(cx) else {
            return Poll::Pending;
        };
        let status = match &res {
            Ok(resp) => resp.status(),
            // actix turns the error into a response with this status.
            Err(e) => e.as_response_error().status_code(),
        };
        call.finish(status.as_u16());
        Poll::Ready(res)
    }
}
