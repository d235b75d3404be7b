//! gRPC through `diag_core::layer()` without tonic: a tower service in the test answers
//! gRPC-shaped responses (HTTP 200, `grpc-status` in the headers or in the trailers at the
//! end of the body), driven through the layer with `oneshot`, then `/metrics` read. Also: a
//! handler that panics is counted as a 500, and odd paths under `layer_with` are counted.

#![cfg(feature = "server")]

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A gRPC response body: one data frame, then the trailers (if any), after `delay`.
struct GrpcBody {
    data: Option<Bytes>,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(sleep) = self.delay.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.delay = None;
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

fn trailers(code: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_str(code).unwrap());
    t
}

/// The test server: the method path picks the answer.
async fn answer(req: Request<String>) -> Result<Response<GrpcBody>, Infallible> {
    let body = |trailers, delay_ms: u64| GrpcBody {
        data: Some(Bytes::from_static(b"\0\0\0\0\0")),
        delay: (delay_ms > 0)
            // workload: a stream whose end comes later
            .then(|| Box::pin(tokio::time::sleep(Duration::from_millis(delay_ms)))),
        trailers,
    };
    let mut resp = match req.uri().path() {
        "/shop.Catalog/Get" => Response::new(body(Some(trailers("0")), 0)),
        "/shop.Catalog/Fail" => Response::new(body(Some(trailers("13")), 0)),
        // A streaming call whose stream lasts 60 ms past the response head.
        "/shop.Catalog/Watch" => Response::new(body(Some(trailers("0")), 60)),
        "/shop.Catalog/NoStatus" => Response::new(body(None, 0)),
        _ => {
            // Trailers-only: the status in the headers, no body.
            let mut r = Response::new(GrpcBody {
                data: None,
                delay: None,
                trailers: None,
            });
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("12"));
            r
        }
    };
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(resp)
}

async fn call(path: &str) {
    let svc = ServiceBuilder::new()
        .layer(diag_core::layer())
        .service(service_fn(answer));
    let req = Request::post(path)
        .header("content-type", "application/grpc+proto")
        .body(String::new())
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    // The client reads the whole body, trailers included.
    resp.into_body().collect().await.unwrap();
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn grpc_calls_are_counted_by_method_path_and_status() {
    for _ in 0..3 {
        call("/shop.Catalog/Get").await;
    }
    call("/shop.Catalog/Fail").await;
    call("/shop.Catalog/Fail").await;
    call("/shop.Catalog/Nope").await;
    call("/shop.Catalog/NoStatus").await;
    call("/shop.Catalog/Watch").await;
    let text = diag_core::metrics::render();
    let grpc = |route: &str, code: &str| {
        metric(
            &text,
            &format!(r#"grpc_requests_total{{route="{route}",code="{code}"}}"#),
        )
    };
    assert_eq!(grpc("/shop.Catalog/Get", "0"), Some(3.0), "{text}");
    assert_eq!(grpc("/shop.Catalog/Fail", "13"), Some(2.0), "{text}");
    // Trailers-only (status in the headers).
    assert_eq!(grpc("/shop.Catalog/Nope", "12"), Some(1.0), "{text}");
    // A body that ended without a status.
    assert_eq!(
        grpc("/shop.Catalog/NoStatus", "missing"),
        Some(1.0),
        "{text}"
    );
    // The HTTP side: every call answered 200, under POST.
    assert_eq!(
        metric(
            &text,
            r#"http_requests_total{route="/shop.Catalog/Fail",method="POST",status="200"}"#
        ),
        Some(2.0),
        "{text}"
    );
    // The streaming call's duration runs to the end of its body (60 ms after the head).
    let watch_le = |le: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("http_request_duration_seconds_bucket")
                    && l.contains(r#"route="/shop.Catalog/Watch""#)
                    && l.contains(&format!(r#"le="{le}""#))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(watch_le("0.05").as_deref(), Some("0"), "{text}");
    assert_eq!(watch_le("+Inf").as_deref(), Some("1"), "{text}");
}

#[tokio::test]
async fn a_grpc_body_dropped_before_its_trailers_counts_as_missing() {
    // Under `layer_with` too, a gRPC call is named by its method path.
    let req = Request::post("/shop.Catalog/Get")
        .header("content-type", "application/grpc")
        .body(String::new())
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(diag_core::layer_with(
            |_: &Request<String>| "ignored for grpc",
        ))
        .service(service_fn(answer));
    let resp = svc.oneshot(req).await.unwrap();
    let before = metric(
        &diag_core::metrics::render(),
        r#"grpc_requests_total{route="/shop.Catalog/Get",code="missing"}"#,
    )
    .unwrap_or(0.0);
    drop(resp);
    let text = diag_core::metrics::render();
    assert_eq!(
        metric(
            &text,
            r#"grpc_requests_total{route="/shop.Catalog/Get",code="missing"}"#
        ),
        Some(before + 1.0),
        "{text}"
    );
    assert!(!text.contains("ignored for grpc"), "{text}");
}

#[tokio::test]
async fn a_handler_that_panics_is_counted_as_a_500() {
    let svc = ServiceBuilder::new()
        .layer(diag_core::layer_with(|_: &Request<String>| "/panics"))
        .service(service_fn(|_req: Request<String>| async move {
            if std::hint::black_box(true) {
                panic!("handler panicked on purpose");
            }
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let req = Request::get("/panics").body(String::new()).unwrap();
    let joined = tokio::spawn(svc.oneshot(req)).await;
    assert!(joined.unwrap_err().is_panic());
    let text = diag_core::metrics::render();
    assert_eq!(
        metric(
            &text,
            r#"http_requests_total{route="/panics",method="GET",status="500"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

/// `%XX` escapes decoded to bytes.
fn percent_decode(p: &str) -> Vec<u8> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = p
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test]
async fn odd_paths_and_methods_are_counted() {
    // The `http` crate refuses raw bytes that are not UTF-8 in a URI, so such a path reaches a
    // tower service percent-encoded; a route closure that decodes it gets bytes that are not
    // UTF-8, and names the route lossily.
    let raw: &[u8] = b"/\xff\xfe/x";
    assert!(http::Uri::try_from(raw).is_err());
    let svc = ServiceBuilder::new()
        .layer(diag_core::layer_with(|req: &Request<String>| {
            let bytes = percent_decode(req.uri().path());
            let first = bytes[1..].split(|&c| c == b'/').next().unwrap_or(b"");
            format!("/odd/{}", String::from_utf8_lossy(first))
        }))
        .service(service_fn(|_req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let req = Request::builder()
        .method("BREW")
        .uri("/%FF%FE/x")
        .body(String::new())
        .unwrap();
    svc.clone().oneshot(req).await.unwrap();
    let text = diag_core::metrics::render();
    assert!(
        text.contains(
            "http_requests_total{route=\"/odd/\u{FFFD}\u{FFFD}\",method=\"OTHER\",status=\"200\"} 1"
        ),
        "{text}"
    );
}
