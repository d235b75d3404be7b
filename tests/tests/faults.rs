//! Faults the heap profiler must survive without harming the host: allocations that fail,
//! huge allocations, the tracked-block cap and the stack table full (drops counted, service
//! unaffected). One test: the allocator and its tables are process-global.

use std::alloc::{GlobalAlloc, Layout};

use diag_core::DiagAlloc;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// Distinct call sites, so each recursion depth is a distinct stack.
#[inline(never)]
fn at_depth(d: usize, keep: &mut Vec<Vec<u8>>) {
    if d == 0 {
        keep.push(vec![1u8; 4096]);
    } else {
        at_depth(d - 1, keep);
        std::hint::black_box(&keep);
    }
}

#[test]
fn failures_huge_blocks_and_full_tables() {
    // Tables sized before the first sample: a small stack table.
    assert!(diag_core::heap::set_max_stacks(64));
    diag_core::heap::set_sample_rate(1);

    // 1. An allocation the system refuses: null, and the counters do not drift.
    let before = diag_core::heap::stats();
    let huge = Layout::from_size_align(1 << 46, 8).unwrap();
    // SAFETY: non-zero size; a null result is handled.
    let p = unsafe { ALLOC.alloc(huge) };
    assert!(p.is_null(), "a 64 TiB allocation cannot succeed");
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve_exact(1 << 46).is_err());
    let after = diag_core::heap::stats();
    assert!(
        after.live_bytes < before.live_bytes + (1 << 20),
        "failed allocations counted as live: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.dropped_samples, before.dropped_samples,
        "a failed allocation is no drop"
    );

    // 2. A huge allocation that succeeds, zeroed, sampled (exact mode), then freed.
    let big = vec![0u8; 1 << 30];
    assert!(big.iter().step_by(4096).all(|&b| b == 0));
    let st = diag_core::heap::stats();
    assert!(st.live_bytes >= 1 << 30);
    let p = diag_core::heap::profile("inuse_space");
    let is = p.sample_index("inuse_space").unwrap();
    assert!(
        p.samples.iter().any(|s| s.values[is] >= 1 << 30),
        "1 GiB block not in the profile"
    );
    drop(big);
    assert!(diag_core::heap::stats().live_bytes < st.live_bytes - (1 << 29));

    // 3. The stack table fills: further stacks go to one overflow entry and are counted; the
    //    program is unaffected and the profile says so.
    let mut keep = Vec::new();
    for d in 0..200 {
        at_depth(d, &mut keep);
    }
    assert_eq!(keep.len(), 200);
    let st = diag_core::heap::stats();
    assert!(st.stacks <= 64, "{st:?}");
    assert!(st.dropped_stacks > 0, "{st:?}");
    let p = diag_core::heap::profile("inuse_space");
    assert!(
        p.samples
            .iter()
            .any(|s| s.stack[0].function == "[diag: stack table full]"),
        "overflow entry missing"
    );
    assert!(
        p.comment_value("dropped_stacks")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    // 4. The tracked-block cap: samples past it are dropped and counted, allocations succeed.
    let tracked = diag_core::heap::stats().tracked_blocks;
    diag_core::heap::set_max_tracked_blocks(10);
    let drops = diag_core::heap::stats().dropped_samples;
    let many: Vec<Box<[u8; 64]>> = (0..1000).map(|_| Box::new([3u8; 64])).collect();
    assert!(many.iter().all(|b| b[63] == 3));
    let st = diag_core::heap::stats();
    assert!(
        st.tracked_blocks <= tracked.max(10),
        "cap not enforced: {st:?}"
    );
    assert!(st.dropped_samples >= drops + 900, "{st:?}");
    drop(many);
    drop(keep);
    diag_core::heap::set_max_tracked_blocks(diag_core::heap::DEFAULT_MAX_TRACKED_BLOCKS);
}
