//! What the heap history costs: CPU time of its recording thread per point, as the thread
//! measures it (`CLOCK_THREAD_CPUTIME_ID`, reported by `heap::history_stats()`), and the memory
//! it holds, with N distinct live stacks of which a share changes between two points.
//!
//! Exact mode (every allocation sampled) makes each of N call paths (`2^BITS`, built from two
//! functions chosen by the bits of a number) a stack of its own with one live 64-byte block.
//! The history records every 100 ms for SECONDS (default 4) while the main thread frees and
//! reallocates a share of the blocks at their own stack before each point, so that share of
//! the stacks changes. Printed per configuration: distinct stacks in the table (all
//! configurations so far, plus the program's own), points recorded, mean and last CPU time
//! per point, points, entries and memory held at the end (at most 60 points), of which the
//! points' live sampled blocks (their ages): each configuration runs with ages on, then off
//! (`heap::set_profile_ages`), so the two sit side by side in one run.
//!
//! `cargo bench -p diag-benches --bench history_cost` (env `SECONDS`).

use std::time::{Duration, Instant};

use diag_benches::env_usize;
use diag_core::DiagAlloc;
use diag_core::heap;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

type Block = Box<[u8; 64]>;

#[inline(never)]
fn via_a(bits: u32, path: usize) -> Block {
    let b = step(bits, path);
    std::hint::black_box(0xA);
    b
}

#[inline(never)]
fn via_b(bits: u32, path: usize) -> Block {
    let b = step(bits, path);
    std::hint::black_box(0xB);
    b
}

/// A block allocated at the end of a call path that spells `path` in `bits` calls.
#[inline(never)]
fn step(bits: u32, path: usize) -> Block {
    if bits == 0 {
        return std::hint::black_box(Box::new([0u8; 64]));
    }
    if path & 1 == 0 {
        via_a(bits - 1, path >> 1)
    } else {
        via_b(bits - 1, path >> 1)
    }
}

fn main() {
    let secs = env_usize("SECONDS", 4) as u64;
    let interval = Duration::from_millis(100);
    heap::set_sample_rate(1);
    println!(
        "history_cost: heap history every {} ms for {secs} s; CPU per point from the recorder's \
         thread clock",
        interval.as_millis()
    );
    println!(
        "{:>7} {:>8} {:>5} {:>7} {:>13} {:>13} {:>5} {:>9} {:>11} {:>9}",
        "stacks",
        "changed",
        "ages",
        "points",
        "mean us/pt",
        "last us/pt",
        "held",
        "entries",
        "memory KiB",
        "ages KiB"
    );
    for bits in [10u32, 13] {
        let n = 1usize << bits;
        for (share, ages) in [(10usize, true), (10, false), (100, true), (100, false)] {
            heap::set_profile_ages(ages);
            heap::set_history(Duration::ZERO, 60);
            let before = heap::history_stats();
            heap::set_history(interval, 60);
            let mut blocks: Vec<Option<Block>> = (0..n).map(|_| None).collect();
            let start = Instant::now();
            let mut round = 0usize;
            while start.elapsed() < Duration::from_secs(secs) {
                // The first round allocates every path; later ones renew `share` % of them.
                // One call site, so a path is the same stack every time.
                let changed = if round == 0 { n } else { n * share / 100 };
                for i in 0..changed {
                    let p = (round * changed + i) % n;
                    blocks[p] = Some(step(bits, p));
                }
                round += 1;
                std::thread::sleep(interval);
            }
            let after = heap::history_stats();
            let records = after.records - before.records;
            println!(
                "{:>7} {:>7}% {:>5} {:>7} {:>13.1} {:>13.1} {:>5} {:>9} {:>11} {:>9}",
                heap::stats().stacks,
                share,
                if ages { "on" } else { "off" },
                records,
                (after.record_cpu_ns - before.record_cpu_ns) as f64 / records.max(1) as f64 / 1e3,
                after.last_record_cpu_ns as f64 / 1e3,
                after.points_held,
                after.entries,
                after.memory_bytes / 1024,
                after.age_memory_bytes / 1024
            );
        }
    }
    heap::set_history(Duration::ZERO, 60);
    heap::set_profile_ages(true);
}
