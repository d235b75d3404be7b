//! The tonic example service (see `diag_examples::grpc_shop`), built with `--features tonic`.
//!
//! Usage: `grpc_shop [APP_ADDR]` (default 127.0.0.1:50051). diag's listener follows
//! `DIAG_ADDR` (default 127.0.0.1:6060). Both addresses are printed on stdout once bound.
//! Exits 2 on a bad configuration or address, 1 if serving fails.

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[tokio::main]
async fn main() {
    let diag = match diag_core::init() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("grpc_shop: diag: {e}");
            std::process::exit(2);
        }
    };
    let addr = std::env::args().nth(1);
    let listener = diag_examples::bind_or_exit(
        "grpc_shop",
        "app",
        Some(addr.as_deref().unwrap_or("127.0.0.1:50051")),
    )
    .await;
    if let Some(a) = diag.local_addr() {
        println!("diag listening on http://{a}");
    }
    if let Err(e) = diag_examples::grpc_shop::serve(listener).await {
        eprintln!("grpc_shop: {e}");
        std::process::exit(1);
    }
}
