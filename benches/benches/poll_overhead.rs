//! Cost per instrumented poll, side by side in one run: the same task (N `yield_now` polls) on
//! a current-thread runtime spawned plainly (`tokio::spawn`), under a bare tokio-metrics
//! `TaskMonitor`, and with `diag_core::spawn` (TaskMonitor + the blocking watchdog's poll hook,
//! with the watchdog thread running). Modes are interleaved round by round; medians reported.
//!
//! `cargo bench -p diag-benches --bench poll_overhead` (env `ROUNDS`, default 9; `POLLS`,
//! default 2000000).

use std::time::Instant;

use diag_benches::{env_usize, median};

async fn yields(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

fn main() {
    let rounds = env_usize("ROUNDS", 9);
    let polls = env_usize("POLLS", 2_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let monitor = tokio_metrics::TaskMonitor::new();
    let modes = ["tokio::spawn", "TaskMonitor", "diag_core::spawn"];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    // Warm-up (also starts diag's watchdog thread and lag probe).
    rt.block_on(async {
        let _ = diag_core::spawn("bench", yields(1000)).await;
    });
    for _ in 0..rounds {
        for (i, mode) in modes.iter().enumerate() {
            let ns = rt.block_on(async {
                let start = Instant::now();
                match *mode {
                    "tokio::spawn" => tokio::spawn(yields(polls)).await.expect("task"),
                    "TaskMonitor" => tokio::spawn(monitor.instrument(yields(polls)))
                        .await
                        .expect("task"),
                    _ => diag_core::spawn("bench", yields(polls))
                        .await
                        .expect("task"),
                }
                start.elapsed().as_nanos() as f64
            });
            results[i].push(ns / (polls + 1) as f64);
        }
    }
    let base = median(results[0].clone());
    println!("poll_overhead: {polls} polls per run, {rounds} rounds, current-thread runtime");
    println!("{:<18} {:>12} {:>14}", "mode", "ns/poll", "+ns vs plain");
    for (i, mode) in modes.iter().enumerate() {
        let m = median(results[i].clone());
        println!("{mode:<18} {m:>12.1} {:>14.1}", m - base);
    }
    let hook = median(results[2].clone()) - median(results[1].clone());
    println!("watchdog hook alone (diag_core::spawn - TaskMonitor): {hook:+.1} ns/poll");
}
