//! gRPC through the tower layer: a request is gRPC when its `content-type` is
//! `application/grpc` (or `application/grpc+proto`, `...;charset`, ...). Its outcome is the
//! `grpc-status` of the response headers (a trailers-only response: an error, or an empty
//! unary answer) or, usually, of the trailers that end the response body; the call is
//! recorded when that status is seen, so its duration runs to the end of the body (for a
//! streaming call, to the end of the stream). A body that ends, fails or is dropped without a
//! status is recorded as `code="missing"`.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};

use crate::recorder::Call;

/// A `HeaderName`, not a `&str`: a string key is parsed and checked for case at every lookup
/// (about 150 instructions each, twice a call, on openraft's tonic service under callgrind).
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Whether the request with these headers is a gRPC call.
#[inline]
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The status in `headers`, if any (a value that is not text counts as an invalid one).
fn status_in(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&GRPC_STATUS)
        .map(|v| v.to_str().unwrap_or("invalid"))
}

/// A gRPC call's response head: records the call now if the status is in the headers, or
/// leaves it to the body's trailers.
pub(super) fn finish_or_follow<B>(resp: Response<B>, call: Call) -> Response<ResponseBody<B>> {
    let status = resp.status().as_u16();
    if let Some(code) = status_in(resp.headers()) {
        call.finish_grpc(status, Some(code));
        return resp.map(ResponseBody::plain);
    }
    resp.map(|inner| ResponseBody {
        inner,
        pending: Some((call, status)),
    })
}

pin_project_lite::pin_project! {
    /// The response body under [`layer()`](super::layer): the inner body, frame for frame;
    /// for a gRPC call whose status travels in trailers, it records the call when they pass.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        // The call to finish and its HTTP status, until the trailers pass.
        pending: Option<(Call, u16)>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some((call, status)) = this.project().pending.take() {
                call.finish_grpc(status, None);
            }
        }
    }
}

impl<B> ResponseBody<B> {
    /// A body passed through with nothing left to record.
    pub(super) fn plain(inner: B) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("pending", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if this.pending.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref()
                        && let Some((call, status)) = this.pending.take()
                    {
                        call.finish_grpc(status, status_in(trailers));
                    }
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                    if let Some((call, status)) = this.pending.take() {
                        call.finish_grpc(status, None);
                    }
                }
                Poll::Pending => {}
            }
        }
        polled
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
