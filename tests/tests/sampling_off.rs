//! Sampling off (`DIAG_HEAP_SAMPLE_BYTES=0`) is a pure pass-through: nothing is counted or
//! sampled, and blocks sampled before it went off are still freed and reallocated correctly
//! (back to diag's region, contents kept). One test: the allocator is process-global.

use diag_core::DiagAlloc;
use diag_core::heap::{set_sample_rate, stats};

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// Turns sampling off. `set_sample_rate` returns once samples other threads decided on just
/// before (the test harness's own thread allocates too) have finished, so none lands between
/// two `stats()` calls below and reads as sampling while off.
fn off() {
    set_sample_rate(0);
}

fn filled(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn off_is_a_pass_through_and_sampled_blocks_survive_it() {
    const N: usize = 200;
    // Off before anything was sampled (unless the harness's own allocations drew a sample at
    // the default rate): blocks allocated, grown and freed pass straight through.
    off();
    let before = stats();
    let kept: Vec<Vec<u8>> = (0..1000).map(|i| filled(16 + i % 700, 3)).collect();
    for (i, b) in kept.iter().enumerate() {
        assert_eq!(b, &filled(16 + i % 700, 3));
    }
    let mut grown = kept;
    for b in &mut grown {
        b.extend_from_slice(&[9; 100]);
    }
    drop(grown);
    let after = stats();
    assert_eq!(after.allocated_objects, before.allocated_objects);
    assert_eq!(after.tracked_blocks, before.tracked_blocks);
    assert_eq!(after.region_used_bytes, before.region_used_bytes);

    // Exact mode: every block below is sampled.
    set_sample_rate(1);
    let tracked0 = stats().tracked_blocks;
    let mut blocks: Vec<Vec<u8>> = (0..N).map(|i| filled(1000 + i, i as u8)).collect();
    let tracked_on = stats().tracked_blocks;
    assert!(
        tracked_on >= tracked0 + N as u64,
        "{tracked0} -> {tracked_on}"
    );

    off();
    let before = stats();
    // Churn while off: not counted, not sampled.
    for i in 0..10_000 {
        std::hint::black_box(filled(16 + i % 512, 7));
    }
    let after = stats();
    assert_eq!(after.allocated_objects, before.allocated_objects);
    assert_eq!(after.freed_objects, before.freed_objects);
    assert_eq!(after.tracked_blocks, before.tracked_blocks);

    // Grow half of the sampled blocks (they move out of the region, contents kept) and free
    // the other half; all of them leave the tracking table.
    for (i, b) in blocks.iter_mut().enumerate().take(N / 2) {
        b.reserve_exact(100_000);
        b.push(1);
        assert_eq!(&b[..1000 + i], &filled(1000 + i, i as u8)[..], "block {i}");
    }
    blocks.truncate(N / 2);
    let tracked_off = stats().tracked_blocks;
    assert!(
        tracked_off + N as u64 <= tracked_on,
        "sampled blocks freed or moved while off are forgotten: {tracked_on} -> {tracked_off}"
    );
    drop(blocks);

    // Back on: counting and sampling resume.
    set_sample_rate(1);
    let s0 = stats();
    let kept: Vec<Vec<u8>> = (0..10).map(|i| filled(64, i)).collect();
    let s1 = stats();
    assert!(s1.allocated_objects >= s0.allocated_objects + 10);
    assert!(s1.tracked_blocks >= s0.tracked_blocks + 10);
    drop(kept);
}
