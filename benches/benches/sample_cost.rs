//! Cost of one sampled allocation, by stack depth and unwinder, side by side in one run:
//! `DiagAlloc` in exact mode (every allocation sampled), a 64-byte allocation and its free made
//! at the bottom of a recursion `DEPTH` frames deep (plus the ~10 frames of `main` and the
//! runtime below it), with the stack unwound by the default cached unwinder (learnt steps in
//! front of framehop) and by libgcc alone (`diag_core::heap::set_unwinder`). The figure is ns
//! per sampled alloc/free pair: stack capture, stack-table lookup, region block and header,
//! and the free. Unwinders alternate round by round; medians reported. The run fails if the
//! cached unwinder gave any stack to libgcc (then it would not be measuring itself).
//!
//! (A third column once measured framehop's rule cache without the step table, through a
//! benchmark-only `Unwinder::Framehop`, removed together with that unwinder; BENCHMARKS.md
//! keeps those figures with the commit they were taken at.)
//!
//! `cargo bench -p diag-benches --bench sample_cost` (env `ROUNDS`, default 9; `PAIRS`,
//! default 20000 per round).

use std::time::Instant;

use diag_benches::{env_usize, median};
use diag_core::DiagAlloc;
use diag_core::heap::{self, Unwinder};

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// Recurses `depth` frames, then times `pairs` sampled alloc/free pairs; ns per pair.
#[inline(never)]
fn at_depth(depth: usize, pairs: usize) -> f64 {
    if depth > 0 {
        return std::hint::black_box(at_depth(std::hint::black_box(depth - 1), pairs));
    }
    let start = Instant::now();
    for i in 0..pairs {
        let b = std::hint::black_box(Box::new([i as u8; 64]));
        drop(b);
    }
    start.elapsed().as_nanos() as f64 / pairs as f64
}

fn main() {
    let rounds = env_usize("ROUNDS", 9);
    let pairs = env_usize("PAIRS", 20_000);
    heap::set_sample_rate(1);
    let unwinders = [Unwinder::Cached, Unwinder::Libgcc];
    println!(
        "sample_cost: ns per sampled alloc/free pair (exact mode), medians of {rounds} rounds of {pairs} pairs"
    );
    println!(
        "{:>6} {:>12} {:>12} {:>14}",
        "depth", "cached", "libgcc", "libgcc/cached"
    );
    for depth in [8usize, 32, 56] {
        let mut results = [Vec::new(), Vec::new()];
        for u in unwinders {
            heap::set_unwinder(u);
            at_depth(depth, pairs / 10); // warm-up: rule caches, stack table entry
        }
        let before = heap::stats().unwind;
        for round in 0..rounds {
            for k in 0..unwinders.len() {
                let k = (k + round) % unwinders.len();
                heap::set_unwinder(unwinders[k]);
                results[k].push(at_depth(depth, pairs));
            }
        }
        let after = heap::stats().unwind;
        assert_eq!(
            after.fallbacks, before.fallbacks,
            "the cached unwinder fell back to libgcc during the run"
        );
        let [c, l] = results.map(median);
        println!("{depth:>6} {c:>12.0} {l:>12.0} {:>13.2}x", l / c);
    }
    heap::set_unwinder(Unwinder::Cached);
}
