//! Example services that embed diag-core, as libraries so the end-to-end tests can run them
//! in-process (with `DiagAlloc` installed by the test binary), and as thin binaries under
//! `src/bin/` for people and for `diag demo`.

#[cfg(feature = "actix")]
pub mod actix_shop;
pub mod aging;
#[cfg(feature = "tonic")]
pub mod grpc_shop;
pub mod hot;
pub mod leaky;
pub mod shop;
pub mod stall;
pub mod tenants;
pub mod work;

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}

/// Binds `addr` (default `127.0.0.1:8080`) and prints `<what> listening on http://...`;
/// exits 2 if it cannot be bound.
pub async fn bind_or_exit(name: &str, what: &str, addr: Option<&str>) -> tokio::net::TcpListener {
    let addr = addr.unwrap_or("127.0.0.1:8080");
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: cannot bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("{what} listening on http://{a}"),
        Err(e) => eprintln!("{name}: {e}"),
    }
    listener
}

/// The whole `main` of an example binary: starts diag from `DIAG_*` variables, binds `addr`
/// (default `127.0.0.1:8080`), prints `app listening on http://...` and `diag listening on
/// http://...` (what `diag demo` and people read), and serves `app`. Exits 2 on a bad
/// configuration or address, 1 if serving fails.
pub async fn run(name: &str, addr: Option<String>, app: axum::Router) {
    let diag = match diag_core::init() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{name}: diag: {e}");
            std::process::exit(2);
        }
    };
    let listener = bind_or_exit(name, "app", addr.as_deref()).await;
    if let Some(a) = diag.local_addr() {
        println!("diag listening on http://{a}");
    }
    if let Err(e) = serve(listener, app).await {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}

/// An example service running inside the current process (whose binary installs `DiagAlloc`),
/// for end-to-end tests: diag's listener and the app each on a free loopback port, the app on
/// its own two-worker runtime. Dropping it stops diag's listener and the runtime.
pub struct InProcess {
    /// `http://127.0.0.1:PORT` of diag's debug listener.
    pub diag_url: String,
    /// `http://127.0.0.1:PORT` of the app.
    pub app_url: String,
    diag: Option<diag_core::Diag>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl InProcess {
    /// Starts diag from `builder` (its address is forced to `127.0.0.1:0`) and serves `app`.
    ///
    /// # Panics
    /// If diag, the runtime or the listener cannot start: this is test scaffolding.
    pub fn start(builder: diag_core::Builder, app: axum::Router) -> Self {
        Self::start_with(builder, move |listener| async move {
            let _ = serve(listener, app).await;
        })
    }

    /// Starts diag from `builder` (its address is forced to `127.0.0.1:0`), binds a free
    /// loopback port and spawns `serve(listener)` on a two-worker runtime of its own: the
    /// scaffolding under every in-process example (axum here, tonic in `grpc_shop`).
    ///
    /// # Panics
    /// If diag, the runtime or the listener cannot start: this is test scaffolding.
    pub fn start_with<F, Fut>(builder: diag_core::Builder, serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let diag = builder.addr("127.0.0.1:0").start().expect("diag starts");
        let diag_url = format!("http://{}", diag.local_addr().expect("diag listens"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("app runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("app binds");
        let app_url = format!("http://{}", listener.local_addr().expect("app address"));
        runtime.spawn(serve(listener));
        Self {
            diag_url,
            app_url,
            diag: Some(diag),
            runtime: Some(runtime),
        }
    }

    /// The app's runtime (running until `self` is dropped).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// `host:port` of the app.
    pub fn app_addr(&self) -> &str {
        self.app_url.trim_start_matches("http://")
    }

    /// `host:port` of diag's listener.
    pub fn diag_addr(&self) -> &str {
        self.diag_url.trim_start_matches("http://")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        if let Some(d) = self.diag.take() {
            d.shutdown();
        }
    }
}
