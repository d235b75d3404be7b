//! An actix-web service under `diag_core::actix::Diag` (feature `actix`).
//!
//! - `GET /uploads/{kb}` keeps `kb` KiB (1 to 16384) per request forever: the leak, in
//!   [`keep_upload`]; `GET /kept` answers the exact bytes kept so far;
//! - `GET /hash/{rounds}` spins the CPU in [`hash_rounds`];
//! - `GET /lookup` blocks its worker 300 ms in [`blocking_lookup`] (a synchronous call inside
//!   an async handler);
//! - `GET /users/{id}` answers 200, `GET /fail` a 500 through actix's error type,
//!   `GET /panic` panics in the handler.
//!
//! [`InProcess`] runs it with two workers in this process for the end-to-end tests.

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::work::Kept;

/// How long `/lookup` blocks its worker.
pub const STALL: Duration = Duration::from_millis(300);

static KEPT: Kept = Kept::new();

/// The leak: keeps `kb` KiB forever. Returns the bytes kept by this call.
#[inline(never)]
pub fn keep_upload(kb: usize) -> usize {
    KEPT.keep(vec![0x5Au8; kb * 1024])
}

/// Bytes kept by [`keep_upload`] so far (exact).
pub fn kept_bytes() -> u64 {
    KEPT.bytes()
}

/// CPU work: `rounds` thousand rounds of an FNV-style hash.
#[inline(never)]
pub fn hash_rounds(rounds: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..rounds * 1000 {
        h = std::hint::black_box((h ^ i).wrapping_mul(0x0000_0100_0000_01b3));
    }
    h
}

/// Blocks the calling worker for [`STALL`], as a synchronous database client would.
#[inline(never)]
pub fn blocking_lookup() -> u64 {
    std::thread::sleep(STALL);
    42
}

async fn upload(kb: web::Path<usize>) -> HttpResponse {
    let kb = kb.into_inner().clamp(1, 16 * 1024);
    HttpResponse::Ok().body(format!("kept {}\n", keep_upload(kb)))
}

async fn kept() -> HttpResponse {
    HttpResponse::Ok().body(format!("{}\n", kept_bytes()))
}

async fn hash(rounds: web::Path<u64>) -> HttpResponse {
    let rounds = rounds.into_inner().min(1_000_000);
    HttpResponse::Ok().body(format!("{:x}\n", hash_rounds(rounds)))
}

async fn lookup() -> HttpResponse {
    HttpResponse::Ok().body(format!("{}\n", blocking_lookup()))
}

async fn user(id: web::Path<u64>) -> HttpResponse {
    HttpResponse::Ok().body(format!("user {id}\n"))
}

async fn fail() -> actix_web::Result<HttpResponse> {
    Err(actix_web::error::ErrorInternalServerError(
        "the backend failed",
    ))
}

async fn panics() -> HttpResponse {
    panic!("the handler panicked")
}

/// The service's routes, under diag's middleware.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/uploads/{kb}", web::get().to(upload))
        .route("/kept", web::get().to(kept))
        .route("/hash/{rounds}", web::get().to(hash))
        .route("/lookup", web::get().to(lookup))
        .route("/users/{id}", web::get().to(user))
        .route("/fail", web::get().to(fail))
        .route("/panic", web::get().to(panics));
}

/// Serves the app on `listener` with `workers` workers until the process ends (or the server
/// is stopped): the body of an actix `System`.
///
/// # Errors
/// If the server cannot take the listener.
pub fn server(
    listener: std::net::TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    Ok(HttpServer::new(|| {
        App::new()
            .wrap(diag_core::actix::Diag::default())
            .configure(configure)
    })
    .workers(workers)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// The A/B server of `benches/scripts/layer_instructions.sh` (one worker): `/users/{id}` under
/// `/a` and `/c` bare, under `/n` a no-op middleware (what any actix middleware costs), under
/// `/b` diag's.
///
/// # Errors
/// If the server cannot take the listener.
pub fn ab_server(listener: std::net::TcpListener) -> std::io::Result<actix_web::dev::Server> {
    use actix_web::dev::Service as _;
    Ok(HttpServer::new(|| {
        App::new()
            .service(web::scope("/a").route("/users/{id}", web::get().to(user)))
            .service(
                web::scope("/n")
                    .wrap_fn(|req, srv| srv.call(req))
                    .route("/users/{id}", web::get().to(user)),
            )
            .service(
                web::scope("/b")
                    .wrap(diag_core::actix::Diag::default())
                    .route("/users/{id}", web::get().to(user)),
            )
            .service(web::scope("/c").route("/users/{id}", web::get().to(user)))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// The example running inside the current process (whose binary installs `DiagAlloc`): diag's
/// listener and the app each on a free loopback port, the app with two actix workers. Dropping
/// it stops both.
pub struct InProcess {
    /// `http://127.0.0.1:PORT` of diag's debug listener.
    pub diag_url: String,
    /// `http://127.0.0.1:PORT` of the app.
    pub app_url: String,
    diag: Option<diag_core::Diag>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// Starts diag from `builder` (its address forced to `127.0.0.1:0`) and the app.
    ///
    /// # Panics
    /// If diag or the app cannot start: this is test scaffolding.
    pub fn start(builder: diag_core::Builder) -> Self {
        let diag = builder.addr("127.0.0.1:0").start().expect("diag starts");
        let diag_url = format!("http://{}", diag.local_addr().expect("diag listens"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("app binds");
        let app_url = format!("http://{}", listener.local_addr().expect("app address"));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = server(listener, 2).expect("app starts");
                tx.send(server.handle()).expect("handle sent");
                let _ = server.await;
            });
        });
        let handle = rx.recv().expect("the app's server handle");
        Self {
            diag_url,
            app_url,
            diag: Some(diag),
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let stop = self.handle.stop(false);
        std::thread::spawn(move || futures_lite_block_on(stop));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(d) = self.diag.take() {
            d.shutdown();
        }
    }
}

/// Drives `fut` to completion on a throwaway current-thread runtime.
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to stop the server")
        .block_on(fut)
}
