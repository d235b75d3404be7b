//! The shop example's routes with no diag at all: the std `System` allocator, no
//! `diag_core::init`, no layer, no `diag_core::timed` (`diag_examples::shop::plain_routes`).
//! The baseline ("bare") of `benches/scripts/service_overhead.sh`: what a user who does not
//! embed diag would run.
//!
//! Usage: `shop_plain [APP_ADDR]` (default 127.0.0.1:8080); prints `app listening on
//! http://...` once bound. Same runtime as `shop` (`#[tokio::main]`, one worker per core).

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1);
    let listener = diag_examples::bind_or_exit("shop_plain", "app", addr.as_deref()).await;
    if let Err(e) = diag_examples::serve(listener, diag_examples::shop::plain_routes()).await {
        eprintln!("shop_plain: {e}");
        std::process::exit(1);
    }
}
