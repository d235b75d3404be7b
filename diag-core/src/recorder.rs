//! The framework-neutral request recorder: what every adapter (the tower/axum layer, its gRPC
//! side, a closure-named router) records per request, over plain `&str`s and numbers.
//!
//! A request's life in three calls:
//!
//! 1. [`Route::named`] (or [`Route::unmatched`]) names the route: a template (`/users/{id}`),
//!    a gRPC method path (`/pkg.Service/Method`) or any name an adapter chooses. At most
//!    [`MAX_ROUTES`](crate::metrics::MAX_ROUTES) distinct names get their own series; later
//!    ones fold into `(other)`.
//! 2. [`Route::watch`] wraps the request's future with its [`Method`]: each poll is timed by the
//!    blocking watchdog under the route's name (and the route labels heap and CPU samples
//!    taken meanwhile), one future in `DIAG_TASK_SAMPLE` is counted by the route's
//!    TaskMonitor, the request's clock starts at its first poll, and the runtime it is called
//!    on is marked as serving requests (`/debug/tasks`' `runtimes[].serves_requests`). It
//!    resolves to the
//!    future's output and a [`Call`].
//! 3. [`Call::finish`] records the outcome (HTTP status) and the time since the first poll;
//!    [`Call::finish_grpc`] records a gRPC call's `grpc-status` beside it. An adapter may hold
//!    the `Call` past the future (a streamed response body) and finish it later.
//!
//! A future dropped while its thread panics (a handler that panicked) is recorded as a 500.
//! A future dropped otherwise before it resolved (a client gone) records nothing.
//!
//! An adapter for another framework is one file over these: it names the route and the method
//! as strings and maps its response to a status.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::metrics::{RouteEntry, UNMATCHED_ROUTE, global, grpc_code_key, method_index};
use crate::tasks::Watched;

/// A route's recording handle: cheap to copy, valid for the life of the process.
#[derive(Clone, Copy)]
pub struct Route(&'static RouteEntry);

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Route").field(&self.name()).finish()
    }
}

impl Route {
    /// The route called `name`: its own series, or `(other)`'s past the cap. After a thread's
    /// first lookup of a name, finding it again costs an index and a string compare.
    #[inline]
    pub fn named(name: &str) -> Self {
        Self(global().route(name))
    }

    /// The route of requests that matched no route (`unmatched`).
    #[inline]
    pub fn unmatched() -> Self {
        Self::named(UNMATCHED_ROUTE)
    }

    /// The route's label: the name it was created with, or `(other)` when it was folded.
    pub fn name(&self) -> &str {
        &self.0.route
    }

    /// Watches `fut`, the handling of one request with `method`, under this route.
    #[inline]
    pub fn watch<F: Future>(self, method: Method, fut: F) -> Recorded<F> {
        let inner = self.0.task.instrument_sampled(fut);
        crate::tasks::note_request();
        Recorded {
            inner,
            call: Call {
                route: self.0,
                method: method.0,
                start_us: 0,
            },
            done: false,
        }
    }
}

/// A request's method as recorded: one of the nine standard methods, or `OTHER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method(u8);

impl Method {
    /// The method called `name` (`"GET"`, ...; case-sensitive, as HTTP methods are).
    #[inline]
    pub fn new(name: &str) -> Self {
        Self(method_index(name) as u8)
    }
}

/// One request on its way: finish it with its outcome.
#[derive(Clone, Copy)]
#[must_use = "a call records nothing until it is finished"]
pub struct Call {
    route: &'static RouteEntry,
    method: u8,
    /// When its first poll started (µs on the watchdog's clock).
    start_us: u64,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("route", &&*self.route.route)
            .field("method", &self.method)
            .finish()
    }
}

impl Call {
    /// The route this call is recorded under.
    pub fn route(&self) -> Route {
        Route(self.route)
    }

    /// Records the call under `route` instead (an adapter that learns the request's true route
    /// only once it is answered). Its polls stay counted under the route it was watched with.
    #[inline]
    pub fn set_route(&mut self, route: Route) {
        self.route = route.0;
    }

    fn elapsed(&self) -> Duration {
        Duration::from_micros(crate::tasks::now_us().saturating_sub(self.start_us))
    }

    /// Records the call as answered with HTTP `status`, now.
    #[inline]
    pub fn finish(self, status: u16) {
        self.route
            .record_at(usize::from(self.method), status, self.elapsed());
    }

    /// Records a gRPC call answered with HTTP `status` and `grpc_status` (the header's or
    /// trailer's value, `None` when the response carried none), now: in
    /// `http_requests_total` by `status` and in `grpc_requests_total` by code.
    pub fn finish_grpc(self, status: u16, grpc_status: Option<&str>) {
        let elapsed = self.elapsed();
        self.route
            .record_at(usize::from(self.method), status, elapsed);
        self.route.record_grpc(grpc_code_key(grpc_status));
    }
}

pin_project_lite::pin_project! {
    /// A request's future under [`Route::watch`]: resolves to its output and the [`Call`] to
    /// finish.
    pub struct Recorded<F> {
        #[pin]
        inner: Watched<F>,
        call: Call,
        done: bool,
    }

    impl<F> PinnedDrop for Recorded<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Unwinding out of the handler's poll: the request failed; count it (diag itself
            // must not panic here, and recording does not).
            if !*this.done && std::thread::panicking() {
                if let Some(first) = this.inner.first_poll_us() {
                    this.call.start_us = first;
                } else if this.call.start_us == 0 {
                    this.call.start_us = crate::tasks::now_us();
                }
                this.call.finish(500);
            }
        }
    }
}

impl<F: Future> Future for Recorded<F> {
    type Output = (F::Output, Call);

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll(cx);
        // The request's start is its first poll's, as the watchdog timed it (no clock read of
        // our own); only when that poll was nested in another watched future, and so not
        // timed, is the clock read here.
        let first = this.inner.first_poll_us();
        if first.is_none() && this.call.start_us == 0 {
            this.call.start_us = crate::tasks::now_us().max(1);
        }
        let Poll::Ready(out) = polled else {
            return Poll::Pending;
        };
        *this.done = true;
        if let Some(first) = first {
            this.call.start_us = first;
        }
        Poll::Ready((out, *this.call))
    }
}
