//! Shared harness for diag-core's integration tests: waiting on conditions ([`wait_until`],
//! [`wait_until_async`]), one GET over a real socket ([`get`]) and one request to a router
//! without sockets ([`oneshot`]).

#![allow(dead_code, unreachable_pub, unused_imports)]

mod wait;

pub use wait::{Poll, Timeout, poll_until, wait_until, when};

use std::fmt::Debug;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// [`wait_until`] for async tests: polls `probe().await` without blocking the runtime.
pub async fn wait_until_async<T, E: Debug, F: Future<Output = Result<T, E>>>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let mut poll = Poll::new(within);
    loop {
        match poll.check(probe().await) {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(timeout) => panic!("waited {within:?} for {what} {timeout}"),
        }
        tokio::time::sleep(poll.pause()).await; // the poll interval: then it asks again
    }
}

/// What a server answered: the status and the body's bytes.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `addr` over a fresh HTTP/1.1 connection (read timeout 30 s). Any status is an
/// answer; a connection that fails, or an answer that is not a whole response with a length
/// (chunked), is an error.
pub fn get(addr: &str, path: &str) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("chunked response".into());
    }
    Ok(Answer {
        status,
        body: buf[head_end + 4..].to_vec(),
    })
}

/// Serves `app` on a 2-worker runtime of its own on a free port: the runtime (keep it while
/// the app is needed) and the address.
#[cfg(feature = "server")]
pub fn serve(app: axum::Router) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, addr)
}

/// What a router answered to [`oneshot`].
#[cfg(feature = "server")]
#[derive(Debug)]
pub struct Reply {
    pub status: axum::http::StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[cfg(feature = "server")]
impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// (status, content type, body).
    pub fn parts(self) -> (axum::http::StatusCode, String, Vec<u8>) {
        (self.status, self.content_type, self.body)
    }
}

/// `GET uri` to `app` without a socket (tower's `oneshot`), with `Authorization: auth` if
/// given.
#[cfg(feature = "server")]
pub async fn oneshot(app: axum::Router, uri: &str, auth: Option<&str>) -> Reply {
    use axum::http::{Request, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let mut req = Request::get(uri);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}
