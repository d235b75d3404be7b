//! The hot example service (see `diag_examples::hot`): `GET /burn` is CPU-bound.
//!
//! Usage: `hot [APP_ADDR]` (default 127.0.0.1:8080). diag's listener follows `DIAG_ADDR`
//! (default 127.0.0.1:6060). Both addresses are printed on stdout once bound.

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[tokio::main]
async fn main() {
    diag_examples::run("hot", std::env::args().nth(1), diag_examples::hot::app()).await;
}
