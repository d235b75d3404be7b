//! Heap profiler overhead, side by side in one run against the anchors a user would pick
//! instead: the same allocation-heavy workloads under
//!
//! - `system`: the std `System` allocator (glibc malloc), the baseline of every ratio;
//! - `diag-off`, `diag-512k`, `diag-exact`: `DiagAlloc` with sampling off, at a mean of one
//!   sample per 512 KiB (the default), and recording every allocation;
//! - `diag-512k-libgcc`: as `diag-512k` with every stack unwound by libgcc (the fallback of
//!   the default cached unwinder; what `diag-512k` was before it);
//! - `dhat`: `dhat::Alloc` with its profiler running;
//! - `jemalloc`, `jemalloc-prof` (cargo feature `anchors`): tikv-jemallocator with profiling
//!   off, and with jemalloc's heap profiler on at the same mean rate as ours
//!   (`_RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19`, set in the child's
//!   environment; the child reads `opt.prof` and `prof.active` back and fails if they are
//!   not on);
//! - `heaptrack`: Debian's `heaptrack` (LD_PRELOAD tracer) running the child in `system`
//!   mode, its trace written to a temporary directory that is deleted after each run. Its
//!   figure includes `heaptrack_interpret`, the helper process that digests the trace while
//!   the workload runs and competes with it for the cores (as it would in real use).
//!   Skipped with a note when `heaptrack` is not on `PATH`.
//!
//! Each measurement is a fresh child process (`alloc_workload`); the child times only its
//! worker threads, so process start-up and a profiler's set-up and shutdown (dhat writing its
//! file, heaptrack attaching and finishing its trace) are outside every figure. Before the
//! clock starts, every mode runs an untimed warm-up (10 % of its operations on two fresh
//! threads, then a 200 ms pause): without it heaptrack's figure depended on the run's length
//! (ns/op fell 4x from 0.4 M to 6 M operations) because its helper process was still resolving
//! the program's code addresses, a start-up cost, when timing began. Modes are
//! interleaved round by round, in an order rotated each round, so machine noise hits them
//! alike; medians are reported with the ratio to `system`.
//!
//! **Dispatch.** The child's global allocator is one switch on a mode read from the
//! environment at the first allocation (a relaxed load and a compare or two on every call),
//! so every mode pays the same dispatch. jemalloc is one
//! more arm of that switch rather than a separate binary: one binary cannot link two builds
//! of jemalloc, so `jemalloc` and `jemalloc-prof` share one build with the profiler compiled
//! in (tikv-jemallocator's `profiling` feature) and differ only in the run-time option. What
//! that costs `jemalloc` against a build without the profiler (not measured here): in
//! jemalloc 5.3 a sample is a thread event counted on the same allocation counter as its
//! other events, so `malloc`'s fast path is the same; the sized-free fast path (what Rust's
//! `dealloc` calls) tests the pointer's page alignment (sampled blocks are page-aligned), one
//! AND and compare.
//!
//! **Slow modes run fewer operations** (the `ops/thread` column says how many): `diag-exact`
//! 5 %, `heaptrack` 10 %, `dhat` 1 % of the full count. Every figure is ns per operation, so
//! they stay comparable; the fast modes run the full count (10 M pairs per thread on `churn`,
//! 1 M replacements per thread on `mixed`, 200 k documents per thread on `json`).
//!
//! ```sh
//! ROUNDS=9 cargo bench -p diag-benches --bench heap_overhead                      # no jemalloc
//! ROUNDS=9 cargo bench -p diag-benches --features anchors --bench heap_overhead   # all modes
//! ```
//!
//! Arguments after `--` pick workloads by substring (`churn`, `mixed`, `json`; see
//! `benches/src/workloads.rs`). Environment:
//! - `ROUNDS` (default 9): interleaved rounds per workload;
//! - `HEAP_BENCH_SCALE` (default 1): multiplies every mode's operation count (e.g. `0.1` for
//!   a quick check);
//! - `HEAP_BENCH_MODES` (default all): comma-separated modes to run, e.g.
//!   `system,jemalloc,jemalloc-prof`; `system` is always run (it is the baseline);
//! - `HEAP_BENCH_WARMUP` (default 0.1): the warm-up's share of each run's operation count,
//!   read by the child; `0` turns the warm-up and the pause off.

use std::path::PathBuf;
use std::process::Command;

use diag_benches::median;

/// Every mode: name, label in the tables, share of the full operation count it runs.
const MODES: [(&str, &str, f64); 9] = [
    ("system", "System", 1.0),
    ("diag-off", "DiagAlloc, sampling off", 1.0),
    ("diag-512k", "DiagAlloc, 512 KiB", 1.0),
    (
        "diag-512k-libgcc",
        "DiagAlloc, 512 KiB, libgcc unwinder",
        1.0,
    ),
    ("diag-exact", "DiagAlloc, exact", 0.05),
    ("dhat", "dhat::Alloc", 0.01),
    ("jemalloc", "jemalloc", 1.0),
    ("jemalloc-prof", "jemalloc, prof 512 KiB", 1.0),
    ("heaptrack", "heaptrack (System)", 0.1),
];

/// jemalloc's options for `jemalloc-prof`: profiling on, one sample per 2^19 B = 512 KiB.
const JEMALLOC_PROF_CONF: &str = "prof:true,prof_active:true,lg_prof_sample:19";

/// Full operation counts per thread (as in `alloc_workload`).
fn full_ops(workload: &str) -> f64 {
    diag_benches::workloads::by_name(workload).map_or(0.0, |w| w.full_ops as f64)
}

/// Runs one measurement and returns its ns/op.
fn run(mode: &str, workload: &str, scale: f64, seq: usize) -> f64 {
    let exe = env!("CARGO_BIN_EXE_alloc_workload");
    let args = [workload.to_owned(), scale.to_string()];
    let mut trace_dir: Option<PathBuf> = None;
    let mut cmd = if mode == "heaptrack" {
        let dir =
            std::env::temp_dir().join(format!("diag-bench-heaptrack-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("heaptrack temp dir");
        let mut c = Command::new("heaptrack");
        c.arg("-o").arg(dir.join("trace")).arg(exe).args(&args);
        c.env("DIAG_BENCH_MODE", "system");
        trace_dir = Some(dir);
        c
    } else {
        let mut c = Command::new(exe);
        c.args(&args).env("DIAG_BENCH_MODE", mode);
        c
    };
    if mode == "jemalloc-prof" {
        cmd.env("_RJEM_MALLOC_CONF", JEMALLOC_PROF_CONF);
    } else {
        cmd.env_remove("_RJEM_MALLOC_CONF");
    }
    let out = cmd.output().expect("run alloc_workload");
    if let Some(dir) = trace_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(
        out.status.success(),
        "{mode}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split("\"ns_per_op\": ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse::<f64>().ok());
    v.unwrap_or_else(|| panic!("bad output from {mode}: {text}"))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn heaptrack_installed() -> bool {
    Command::new("heaptrack")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Formats a figure with about four significant digits.
fn fmt(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Formats a ratio: three decimals near 1, fewer for large ones.
fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.3}")
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, picks workloads.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds: usize = env_or("ROUNDS", 9usize).max(1);
    let global_scale: f64 = env_or("HEAP_BENCH_SCALE", 1.0f64);
    let wanted: Option<Vec<String>> = std::env::var("HEAP_BENCH_MODES")
        .ok()
        .map(|s| s.split(',').map(|m| m.trim().to_owned()).collect());
    if let Some(w) = &wanted {
        for m in w {
            assert!(
                MODES.iter().any(|(n, _, _)| n == m),
                "HEAP_BENCH_MODES: unknown mode {m:?}"
            );
        }
    }
    let mut skipped = Vec::new();
    let mut jemalloc_noted = false;
    let modes: Vec<(&str, &str, f64)> = MODES
        .iter()
        .copied()
        .filter(|(m, _, _)| {
            *m == "system" || wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == m))
        })
        .filter(|(m, _, _)| match *m {
            "jemalloc" | "jemalloc-prof" if cfg!(not(feature = "anchors")) => {
                if !jemalloc_noted {
                    jemalloc_noted = true;
                    skipped.push(
                        "jemalloc, jemalloc-prof: skipped (build with the `anchors` feature: \
                         cargo bench -p diag-benches --features anchors --bench heap_overhead)"
                            .to_owned(),
                    );
                }
                false
            }
            "heaptrack" if !heaptrack_installed() => {
                skipped.push(format!(
                    "{m}: skipped (`heaptrack` not found on PATH; Debian: apt-get install heaptrack)"
                ));
                false
            }
            _ => true,
        })
        .collect();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!(
        "heap_overhead: {} cores, {cpu}; {rounds} interleaved rounds, 2 threads per run; \
         load average {load}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if global_scale != 1.0 {
        println!("HEAP_BENCH_SCALE={global_scale}: every operation count scaled");
    }
    for s in &skipped {
        println!("{s}");
    }
    if modes.iter().any(|(m, _, _)| *m == "jemalloc-prof") {
        println!("jemalloc-prof: _RJEM_MALLOC_CONF={JEMALLOC_PROF_CONF} (checked in the child)");
    }

    let workloads: Vec<&str> = diag_benches::workloads::WORKLOADS
        .iter()
        .map(|w| w.name)
        .filter(|w| filter.is_empty() || filter.iter().any(|f| w.contains(f.as_str())))
        .collect();
    let mut seq = 0;
    // medians[workload][mode]
    let mut medians: Vec<Vec<f64>> = Vec::new();
    for &workload in &workloads {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        for r in 0..rounds {
            // Rotate the order each round.
            for k in 0..modes.len() {
                let i = (k + r) % modes.len();
                let (mode, _, share) = modes[i];
                seq += 1;
                samples[i].push(run(mode, workload, share * global_scale, seq));
            }
        }
        let meds: Vec<f64> = samples.into_iter().map(median).collect();
        let base = meds[0];
        println!("\nworkload {workload}:");
        println!(
            "{:<14} {:>11} {:>12} {:>10}",
            "mode", "ops/thread", "ns/op (med)", "vs System"
        );
        for (i, (mode, _, share)) in modes.iter().enumerate() {
            let ops = full_ops(workload) * share * global_scale;
            println!(
                "{mode:<14} {ops:>11.0} {:>12.2} {:>9.3}x",
                meds[i],
                meds[i] / base
            );
        }
        medians.push(meds);
    }

    // The summary in the form of BENCHMARKS.md.
    println!("\nsummary (medians; slow modes ran fewer operations, see ops/thread above):\n");
    let mut head = String::from("| allocator |");
    let mut rule = String::from("|---|");
    for w in &workloads {
        head.push_str(&format!(" {w} ns/op | vs System |"));
        rule.push_str("---:|---:|");
    }
    println!("{head}\n{rule}");
    for (i, (_, label, _)) in modes.iter().enumerate() {
        let mut row = format!("| {label} |");
        for meds in &medians {
            row.push_str(&format!(
                " {} | {} |",
                fmt(meds[i]),
                fmt_ratio(meds[i] / meds[0])
            ));
        }
        println!("{row}");
    }
}
