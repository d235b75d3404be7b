//! The shop example service (see `diag_examples::shop`).
//!
//! Usage: `shop [APP_ADDR]` (default 127.0.0.1:8080), or `shop --bare APP_ADDR` for the same
//! routes without diag's layer (for overhead benches). diag's listener (`/metrics`,
//! `/health`, `/ready`, `/debug/...`) follows `DIAG_ADDR` (default 127.0.0.1:6060). Both
//! addresses are printed on stdout once bound.

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let bare = args.first().is_some_and(|a| a == "--bare");
    if bare {
        args.remove(0);
    }
    let diag = match diag_core::init() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("shop: diag: {e}");
            std::process::exit(2);
        }
    };
    diag_examples::shop::register_readiness();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shop: cannot bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("app listening on http://{a}"),
        Err(e) => eprintln!("shop: {e}"),
    }
    if let Some(a) = diag.local_addr() {
        println!("diag listening on http://{a}");
    }
    let app = if bare {
        diag_examples::shop::routes()
    } else {
        diag_examples::shop::app()
    };
    if let Err(e) = diag_examples::serve(listener, app).await {
        eprintln!("shop: {e}");
        std::process::exit(1);
    }
}
