//! Exact mode (`sample rate = 1`) equals the true totals: diag's exact counters and its
//! exact-mode profile are checked against `dhat::HeapStats` for the same deterministic
//! workload, run under `dhat::Alloc` in a child process. No test harness: one thread, so no
//! other allocations interleave.

use diag_core::DiagAlloc;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

fn workload_totals(p: &diag_core::profile::Profile) -> [i64; 4] {
    let mut t = [0i64; 4];
    for s in &p.samples {
        if s.stack
            .iter()
            .any(|f| f.function.starts_with("diag_tests::workload::workload"))
        {
            for (i, v) in t.iter_mut().enumerate() {
                *v += s.values[i];
            }
        }
    }
    t
}

fn main() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dhat_workload"))
        .output()
        .expect("run dhat_workload");
    assert!(out.status.success(), "dhat_workload failed: {out:?}");
    let dhat: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dhat json");
    let d = |k: &str| dhat[k].as_i64().expect(k);

    diag_core::heap::set_sample_rate(1);
    let before = diag_core::heap::stats();
    let kept = diag_tests::workload::workload();
    let after = diag_core::heap::stats();

    // 1. The exact counters equal dhat's.
    let allocated_objects = (after.allocated_objects - before.allocated_objects) as i64;
    let allocated_bytes = (after.allocated_bytes - before.allocated_bytes) as i64;
    let live_objects = after.live_objects as i64 - before.live_objects as i64;
    let live_bytes = after.live_bytes as i64 - before.live_bytes as i64;
    assert_eq!(allocated_objects, d("total_blocks"), "allocated objects");
    assert_eq!(allocated_bytes, d("total_bytes"), "allocated bytes");
    assert_eq!(live_objects, d("curr_blocks"), "live objects");
    assert_eq!(live_bytes, d("curr_bytes"), "live bytes");
    assert_eq!(after.dropped_samples, 0, "nothing dropped in exact mode");

    // 2. The exact-mode profile, restricted to the workload's stacks, equals them too.
    let p = diag_core::heap::profile("inuse_space");
    let [alloc_objects, alloc_space, inuse_objects, inuse_space] = workload_totals(&p);
    assert_eq!(alloc_objects, d("total_blocks"), "profile alloc_objects");
    assert_eq!(alloc_space, d("total_bytes"), "profile alloc_space");
    assert_eq!(inuse_objects, d("curr_blocks"), "profile inuse_objects");
    assert_eq!(inuse_space, d("curr_bytes"), "profile inuse_space");

    drop(kept);
    let p = diag_core::heap::profile("inuse_space");
    let [_, _, inuse_objects, inuse_space] = workload_totals(&p);
    assert_eq!(
        (inuse_objects, inuse_space),
        (0, 0),
        "freed blocks are forgotten"
    );
    println!(
        "exact mode matches dhat: {} allocations, {} bytes, {} live blocks",
        d("total_blocks"),
        d("total_bytes"),
        d("curr_blocks")
    );
    println!("1 passed, 0 failed");
}
