//! Faults the heap profiler must survive without harming the host: allocations that fail,
//! huge allocations, the tracked-block cap and the stack table full (drops counted, service
//! unaffected). One test: the allocator and its tables are process-global.

use std::alloc::{GlobalAlloc, Layout};

use diag_core::DiagAlloc;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// An allocator that refuses every request.
struct Refuse;

// SAFETY: never hands out a block, so there is nothing to free.
unsafe impl GlobalAlloc for Refuse {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        std::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
        unreachable!("Refuse hands out no blocks")
    }
}

static REFUSING: DiagAlloc<Refuse> = DiagAlloc::new(Refuse);

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

    // 1b. At the default rate, an unsampled allocation of CHECKED_SIZE bytes or more takes
    //     the checked path (smaller ones are tail calls): an inner allocator that refuses
    //     it leaves the counters as they were. Sampled ones come from diag's region and
    //     succeed; they are freed again.
    diag_core::heap::set_sample_rate(diag_core::heap::DEFAULT_SAMPLE_BYTES);
    let before = diag_core::heap::stats();
    let block = Layout::from_size_align(2 * diag_core::heap::CHECKED_SIZE, 8).unwrap();
    let mut refused = 0;
    for i in 0..200 {
        // SAFETY: non-zero size; a null result is handled, a block is freed with its layout.
        unsafe {
            let p = if i % 2 == 0 {
                REFUSING.alloc(block)
            } else {
                REFUSING.alloc_zeroed(block)
            };
            if p.is_null() {
                refused += 1;
            } else {
                REFUSING.dealloc(p, block);
            }
        }
    }
    let after = diag_core::heap::stats();
    assert!(
        refused > 100,
        "only {refused} of 200 reached the inner allocator"
    );
    assert!(
        after.live_bytes < before.live_bytes + (1 << 20),
        "refused allocations counted as live at 512 KiB: {before:?} -> {after:?}"
    );
    diag_core::heap::set_sample_rate(1);

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
