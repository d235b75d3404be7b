//! The tenants example service (see `diag_examples::tenants`): routes and a background task
//! that leak different amounts, and two routes that burn CPU 3:1.
//!
//! Usage: `tenants [APP_ADDR]` (default 127.0.0.1:8080); diag's listener follows `DIAG_ADDR`
//! (default 127.0.0.1:6060).

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1);
    diag_examples::run("tenants", addr, diag_examples::tenants::app()).await;
}
