//! The stalling example service (see `diag_examples::stall`).
//!
//! Usage: `stall [APP_ADDR]` (default 127.0.0.1:8080). diag's listener follows `DIAG_ADDR`
//! (default 127.0.0.1:6060). Both addresses are printed on stdout once bound.

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[tokio::main]
async fn main() {
    let diag = match diag_core::init() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("stall: diag: {e}");
            std::process::exit(2);
        }
    };
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stall: cannot bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("app listening on http://{a}"),
        Err(e) => eprintln!("stall: {e}"),
    }
    if let Some(a) = diag.local_addr() {
        println!("diag listening on http://{a}");
    }
    if let Err(e) = diag_examples::serve(listener, diag_examples::stall::app()).await {
        eprintln!("stall: {e}");
        std::process::exit(1);
    }
}
