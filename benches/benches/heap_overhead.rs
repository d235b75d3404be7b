//! Heap profiler overhead, side by side in one run: the same allocation-heavy workloads under
//! `System`, `DiagAlloc` with sampling off, at 512 KiB, in exact mode, and `dhat::Alloc`.
//! Each measurement is a fresh child process; modes are interleaved round by round so machine
//! noise hits them alike; medians are reported with the ratio to `System`.
//!
//! `cargo bench -p diag-benches --bench heap_overhead` (env `ROUNDS`, default 9).

use std::process::Command;

const MODES: [(&str, f64); 5] = [
    ("system", 1.0),
    ("diag-off", 1.0),
    ("diag-512k", 1.0),
    ("diag-exact", 0.05),
    ("dhat", 0.01),
];

fn run(mode: &str, workload: &str, scale: f64) -> f64 {
    let out = Command::new(env!("CARGO_BIN_EXE_alloc_workload"))
        .args([workload, &scale.to_string()])
        .env("DIAG_BENCH_MODE", mode)
        .output()
        .expect("run alloc_workload");
    assert!(out.status.success(), "{mode}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split("\"ns_per_op\": ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse::<f64>().ok());
    v.unwrap_or_else(|| panic!("bad output from {mode}: {text}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, picks workloads.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "heap_overhead: {} cores, {cpu}; {rounds} interleaved rounds, 2 threads per run",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for workload in ["churn", "mixed"] {
        if !filter.is_empty() && !filter.iter().any(|f| workload.contains(f.as_str())) {
            continue;
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
        for r in 0..rounds {
            // Rotate the order each round.
            for k in 0..MODES.len() {
                let i = (k + r) % MODES.len();
                let (mode, scale) = MODES[i];
                samples[i].push(run(mode, workload, scale));
            }
        }
        let base = median(samples[0].clone());
        println!("\nworkload {workload}:");
        println!(
            "{:<12} {:>12} {:>10}",
            "allocator", "ns/op (med)", "vs System"
        );
        for (i, (mode, _)) in MODES.iter().enumerate() {
            let m = median(samples[i].clone());
            println!("{mode:<12} {m:>12.2} {:>9.3}x", m / base);
        }
    }
}
