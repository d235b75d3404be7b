//! Cost of `diag_core::layer()` per request, in process (no sockets, so the kernel's noise
//! stays out): the shop example's router with and without the layer, driven through
//! `tower::ServiceExt::oneshot` by concurrent tasks on a multi-thread runtime (as many
//! workers as cores), modes interleaved round by round; medians reported.
//!
//! `cargo bench -p diag-benches --bench layer_cost` (env `ROUNDS`, default 9; `REQUESTS`,
//! default 400000; `TASKS`, default 8; `LAYER_COST_ONLY=bare|noop|layer` runs one mode alone,
//! for a profiler such as `perf record`: no ratio is printed then).
//!
//! Three modes: the bare routes; the same routes with a no-op layer
//! (`tower::layer::util::Identity`), which is what axum's `Router::layer` costs for any layer;
//! and the routes with `diag_core::layer()`. Diag's own cost is the last minus the second.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use diag_benches::{env_usize, median};
use tower::ServiceExt;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

async fn drive(app: Router, requests: usize, tasks: usize) {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..requests / tasks {
                    let uri = format!("/items/{}", (t * 7919 + i) % 1000);
                    let req = Request::get(uri).body(Body::empty()).expect("request");
                    let res = app.clone().oneshot(req).await.expect("infallible");
                    assert!(res.status().is_success());
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
}

fn main() {
    let rounds = env_usize("ROUNDS", 9);
    let requests = env_usize("REQUESTS", 400_000);
    let tasks = env_usize("TASKS", 8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let modes: [(&str, Router); 3] = [
        // `with_state(())` turns every handler into a route once, as `axum::serve` does for
        // each connection; without it axum would do that per request.
        ("bare routes", diag_examples::shop::routes().with_state(())),
        // What axum charges for any layer: `Router::layer` wraps each route in one more boxed
        // `Route` (cloned per request) and response mapping. Diag's own share is the
        // difference between the next two rows.
        (
            "no-op layer",
            diag_examples::shop::routes()
                .layer(tower::layer::util::Identity::new())
                .with_state(()),
        ),
        ("with layer()", diag_examples::shop::app().with_state(())),
    ];
    let only = std::env::var("LAYER_COST_ONLY").ok();
    let picked: Vec<usize> = match only.as_deref() {
        None => vec![0, 1, 2],
        Some("bare") => vec![0],
        Some("noop") => vec![1],
        Some("layer") => vec![2],
        Some(other) => {
            eprintln!(
                "layer_cost: LAYER_COST_ONLY must be `bare`, `noop` or `layer`, not {other:?}"
            );
            std::process::exit(2);
        }
    };
    // Warm-up: route entries, monitors, the watchdog and lag probe.
    for (_, app) in picked.iter().map(|&i| &modes[i]) {
        rt.block_on(drive(app.clone(), 10_000, tasks));
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        // Rotate the order each round.
        let mut order = picked.clone();
        order.rotate_left(r % picked.len());
        for i in order {
            let start = Instant::now();
            rt.block_on(drive(modes[i].1.clone(), requests, tasks));
            results[i].push(start.elapsed().as_nanos() as f64 / requests as f64);
        }
    }
    println!(
        "layer_cost: {requests} requests x {rounds} rounds, {tasks} tasks, {} workers",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<14} {:>12}", "mode", "ns/request");
    for &i in &picked {
        println!("{:<14} {:>12.0}", modes[i].0, median(results[i].clone()));
    }
    if picked.len() < 3 {
        return;
    }
    // Per-round differences, medians: rounds share the machine's state.
    let diff = |a: usize, b: usize| {
        median(
            results[a]
                .iter()
                .zip(&results[b])
                .map(|(x, y)| x - y)
                .collect(),
        )
    };
    let ratio = |a: usize, b: usize| {
        median(
            results[a]
                .iter()
                .zip(&results[b])
                .map(|(x, y)| x / y)
                .collect(),
        )
    };
    println!(
        "layer() vs bare:        {:+.0} ns/request; median per-round ratio {:.4}",
        diff(2, 0),
        ratio(2, 0)
    );
    println!(
        "no-op layer vs bare:    {:+.0} ns/request (axum's cost of any layer)",
        diff(1, 0)
    );
    println!(
        "layer() vs no-op layer: {:+.0} ns/request (diag's own work)",
        diff(2, 1)
    );
}
