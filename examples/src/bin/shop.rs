//! The shop example service (see `diag_examples::shop`).
//!
//! Usage: `shop [APP_ADDR]` (default 127.0.0.1:8080), or `shop --bare APP_ADDR` for the same
//! routes without diag's layer (for overhead benches). diag's listener (`/metrics`,
//! `/health`, `/ready`, `/debug/...`) follows `DIAG_ADDR` (default 127.0.0.1:6060). Both
//! addresses are printed on stdout once bound.
//!
//! For A/B benches inside one process (same threads, same placement on the CPUs):
//! `shop --pair APP_ADDR BARE_ADDR` also serves the routes without the layer on `BARE_ADDR`;
//! `shop --pair-bare A_ADDR B_ADDR` serves them without the layer on both (the noise floor).
//! `shop --ab APP_ADDR` serves, on one port, the routes four times under prefixes: `/a/...`
//! and `/c/...` without the layer, `/b/...` with it, `/n/...` with a no-op layer (one
//! process, one listener, the same connections: only the path picks the side).

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some(m @ ("--bare" | "--pair" | "--pair-bare" | "--ab")) => {
            let m = m.to_owned();
            args.remove(0);
            m
        }
        _ => String::new(),
    };
    diag_examples::shop::register_readiness();
    if mode.starts_with("--pair") {
        let Some(second) = args.get(1).cloned() else {
            eprintln!("shop: {mode} needs two addresses");
            std::process::exit(2);
        };
        let listener = diag_examples::bind_or_exit("shop", "bare", Some(&second)).await;
        tokio::spawn(async move {
            if let Err(e) = diag_examples::serve(listener, diag_examples::shop::routes()).await {
                eprintln!("shop: {e}");
                std::process::exit(1);
            }
        });
    }
    let app = if mode == "--bare" || mode == "--pair-bare" {
        diag_examples::shop::routes()
    } else if mode == "--ab" {
        diag_examples::shop::ab_routes()
    } else {
        diag_examples::shop::app()
    };
    diag_examples::run("shop", args.first().cloned(), app).await;
}
