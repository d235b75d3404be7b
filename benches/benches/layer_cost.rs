//! Cost of `diag_core::layer()` per request, in process (no sockets, so the kernel's noise
//! stays out): the shop example's router with and without the layer, driven through
//! `tower::ServiceExt::oneshot` by concurrent tasks on a multi-thread runtime (as many
//! workers as cores), modes interleaved round by round; medians reported.
//!
//! `cargo bench -p diag-benches --bench layer_cost` (env `ROUNDS`, default 9; `REQUESTS`,
//! default 400000; `TASKS`, default 8; `LAYER_COST_ONLY=bare|layer` runs one mode alone, for
//! a profiler such as `perf record`: no ratio is printed then).

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

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
    let modes: [(&str, Router); 2] = [
        // `with_state(())` turns every handler into a route once, as `axum::serve` does for
        // each connection; without it axum would do that per request.
        ("bare routes", diag_examples::shop::routes().with_state(())),
        ("with layer()", diag_examples::shop::app().with_state(())),
    ];
    let only = std::env::var("LAYER_COST_ONLY").ok();
    let picked: Vec<usize> = match only.as_deref() {
        None => vec![0, 1],
        Some("bare") => vec![0],
        Some("layer") => vec![1],
        Some(other) => {
            eprintln!("layer_cost: LAYER_COST_ONLY must be `bare` or `layer`, not {other:?}");
            std::process::exit(2);
        }
    };
    // Warm-up: route entries, monitors, the watchdog and lag probe.
    for (_, app) in picked.iter().map(|&i| &modes[i]) {
        rt.block_on(drive(app.clone(), 10_000, tasks));
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        // Alternate the order each round.
        let mut order = picked.clone();
        if r % 2 == 1 {
            order.reverse();
        }
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
    if picked.len() < 2 {
        return;
    }
    let ratios: Vec<f64> = results[1]
        .iter()
        .zip(&results[0])
        .map(|(l, b)| l / b)
        .collect();
    println!(
        "layer: {:+.0} ns/request; median per-round ratio {:.4}",
        median(results[1].clone()) - median(results[0].clone()),
        median(ratios)
    );
}
