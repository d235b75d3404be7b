//! A small axum service that leaks on purpose, one route per way of leaking, for diag's
//! attribution checks (see `run.sh`).

use std::time::Duration;

use axum::routing::get;

mod handlers;
mod leaks;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

#[tokio::main]
async fn main() {
    let diag = diag_core::init().expect("diag");
    if let Some(a) = diag.local_addr() {
        println!("diag listening on http://{a}");
    }
    let app = axum::Router::new()
        .route("/vec", get(handlers::vec))
        .route("/map", get(handlers::map))
        .route("/bytes", get(handlers::bytes))
        .route("/json", get(handlers::json))
        .route("/handler", get(handlers::leak_in_handler))
        .route("/spawn", get(handlers::spawn))
        .route("/named", get(handlers::named_task))
        .route("/block", get(handlers::block))
        .layer(diag_core::layer());
    let addr = std::env::var("FIXTURE_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!(
        "app listening on http://{}",
        listener.local_addr().expect("addr")
    );
    // Housekeeping that allocates a little and frees it: not a leak.
    tokio::spawn(async {
        loop {
            let v: Vec<u8> = std::hint::black_box(vec![0; 4096]);
            drop(v);
            tokio::time::sleep(Duration::from_millis(50)).await; // workload: housekeeping's pace
        }
    });
    axum::serve(listener, app).await.expect("serve");
}
