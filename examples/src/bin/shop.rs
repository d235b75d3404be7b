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
    diag_examples::shop::register_readiness();
    let app = if bare {
        diag_examples::shop::routes()
    } else {
        diag_examples::shop::app()
    };
    diag_examples::run("shop", args.first().cloned(), app).await;
}
