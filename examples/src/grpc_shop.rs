//! A tonic gRPC service under `diag_core::layer()` (feature `tonic`), written out by hand as
//! tonic's code generator would write it (no protoc at build time), and its client.
//!
//! Service `shop.Shop`, every method a unary call from [`Req`] to [`Reply`]:
//! - `Keep` keeps `n` KiB (1 to 16384) forever: the leak, in [`keep_order`];
//! - `Hash` spins the CPU `n` thousand rounds in [`hash_order`];
//! - `Lookup` blocks its worker 300 ms in [`blocking_stock_check`];
//! - `Fail` answers `UNAVAILABLE` (n even) or `NOT_FOUND` (n odd): a gRPC error travels as
//!   `grpc-status` in an HTTP 200;
//! - `Kept` answers the exact bytes kept so far.
//!
//! [`InProcess`] serves it on a two-worker runtime in this process for the end-to-end tests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::{Service, http};
pub use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use crate::work::Kept;

/// How long `Lookup` blocks its worker.
pub const STALL: Duration = Duration::from_millis(300);

/// The service's gRPC name.
pub const SERVICE: &str = "shop.Shop";

/// Every method's request.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Req {
    /// The method's argument.
    #[prost(uint64, tag = "1")]
    pub n: u64,
}

/// Every method's reply.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Reply {
    /// The method's result.
    #[prost(uint64, tag = "1")]
    pub n: u64,
}

static KEPT: Kept = Kept::new();

/// The leak: keeps `kb` KiB forever. Returns the bytes kept by this call.
#[inline(never)]
pub fn keep_order(kb: usize) -> usize {
    KEPT.keep(vec![0xA5u8; kb * 1024])
}

/// Bytes kept by [`keep_order`] so far (exact).
pub fn kept_bytes() -> u64 {
    KEPT.bytes()
}

/// CPU work: `rounds` thousand rounds of an FNV-style hash.
#[inline(never)]
pub fn hash_order(rounds: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..rounds * 1000 {
        h = std::hint::black_box((h ^ i).wrapping_mul(0x0000_0100_0000_01b3));
    }
    h
}

/// Blocks the calling worker for [`STALL`], as a synchronous client would.
#[inline(never)]
pub fn blocking_stock_check() -> u64 {
    std::thread::sleep(STALL);
    7
}

/// One method: what it does with `n`.
type Handler = fn(u64) -> Result<u64, Status>;

fn handler(path: &str) -> Option<Handler> {
    let method = path.strip_prefix("/shop.Shop/")?;
    Some(match method {
        "Keep" => |n| Ok(keep_order((n as usize).clamp(1, 16 * 1024)) as u64),
        "Hash" => |n| Ok(hash_order(n.min(1_000_000))),
        "Lookup" => |_| Ok(blocking_stock_check()),
        "Fail" => |n| {
            Err(if n % 2 == 0 {
                Status::unavailable("the stock service is down")
            } else {
                Status::not_found("no such order")
            })
        },
        "Kept" => |_| Ok(kept_bytes()),
        _ => return None,
    })
}

/// A unary method as tonic's server drives it.
struct Unary(Handler);

impl tonic::server::UnaryService<Req> for Unary {
    type Response = Reply;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Reply>, Status>> + Send>>;

    fn call(&mut self, req: tonic::Request<Req>) -> Self::Future {
        let f = self.0;
        Box::pin(async move { f(req.into_inner().n).map(|n| tonic::Response::new(Reply { n })) })
    }
}

/// The `shop.Shop` service: add it with `Server::builder().add_service(Shop)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shop;

impl tonic::server::NamedService for Shop {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<B> Service<http::Request<B>> for Shop
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(h) = handler(req.uri().path()) else {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Reply, Req>::default());
            Ok(grpc.unary(Unary(h), req).await)
        })
    }
}

/// Calls `method` (`"Keep"`, `"Fail"`, ...) with `n` on `channel`.
///
/// # Errors
/// The call's status when it is not OK.
pub async fn call(
    channel: &tonic::transport::Channel,
    method: &str,
    n: u64,
) -> Result<u64, Status> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    client
        .ready()
        .await
        .map_err(|e| Status::new(Code::Unavailable, e.to_string()))?;
    let path = format!("/{SERVICE}/{method}")
        .parse()
        .map_err(|_| Status::invalid_argument(format!("method {method}")))?;
    let reply = client
        .unary(
            tonic::Request::new(Req { n }),
            path,
            ProstCodec::<Req, Reply>::default(),
        )
        .await?;
    Ok(reply.into_inner().n)
}

/// Serves [`Shop`] under `diag_core::layer()` on `listener` until the process ends.
///
/// # Errors
/// If serving fails.
pub async fn serve(listener: tokio::net::TcpListener) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .layer(diag_core::layer())
        .add_service(Shop)
        .serve_with_incoming(tokio_stream_of(listener))
        .await
}

fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> tonic::codegen::tokio_stream::wrappers::TcpListenerStream {
    tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener)
}

/// The service running inside the current process (whose binary installs `DiagAlloc`): diag's
/// listener and the gRPC server each on a free loopback port, the server on its own two-worker
/// runtime, which also drives the clients of [`InProcess::call`]. Dropping it stops both.
/// Derefs to the shared [`crate::InProcess`] (`diag_url`, `app_url`).
pub struct InProcess {
    channel: tonic::transport::Channel,
    service: crate::InProcess,
}

impl std::ops::Deref for InProcess {
    type Target = crate::InProcess;

    fn deref(&self) -> &crate::InProcess {
        &self.service
    }
}

impl InProcess {
    /// Starts diag from `builder` (its address forced to `127.0.0.1:0`) and the server.
    ///
    /// # Panics
    /// If diag, the runtime or the listener cannot start: this is test scaffolding.
    pub fn start(builder: diag_core::Builder) -> Self {
        let service = crate::InProcess::start_with(builder, |listener| async move {
            let _ = serve(listener).await;
        });
        let channel = service
            .runtime()
            .block_on(
                tonic::transport::Endpoint::from_shared(service.app_url.clone())
                    .expect("endpoint")
                    .connect(),
            )
            .expect("client connects");
        Self { channel, service }
    }

    /// One call of `method` with `n`, from a client task on the server's runtime (blocks
    /// the calling thread until it answers).
    pub fn call(&self, method: &str, n: u64) -> Result<u64, Status> {
        let (channel, method) = (self.channel.clone(), method.to_owned());
        self.runtime()
            .block_on(async move { rt_call(channel, method, n).await })
    }
}

async fn rt_call(
    channel: tonic::transport::Channel,
    method: String,
    n: u64,
) -> Result<u64, Status> {
    // On its own task, so the client's polls are not inside the test thread's block_on.
    tokio::spawn(async move { call(&channel, &method, n).await })
        .await
        .unwrap_or_else(|e| Err(Status::internal(e.to_string())))
}
