//! `heap::set_sample_rate` is a barrier for samples: once `set_sample_rate(0)` returns, no
//! sample decided under the earlier rate is still being taken, so no sampled block appears
//! afterwards, even with other threads sampling every allocation right up to the change.
//! (Before, a test had to wait a fixed time after the change and hope.) One test: the
//! allocator is process-global.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use diag_core::DiagAlloc;
use diag_core::heap::{INUSE_SPACE, profile, set_sample_rate, stats};

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// Allocates small blocks and keeps every one (none is freed before the check), until `stop`.
#[inline(never)]
fn churn(stop: Arc<AtomicBool>) -> Vec<Vec<u8>> {
    let mut keep = Vec::with_capacity(1 << 20);
    while !stop.load(Relaxed) && keep.len() < keep.capacity() {
        keep.push(std::hint::black_box(vec![7u8; 40]));
    }
    keep
}

/// Live sampled blocks allocated by [`churn`] (exact at rate 1: each sample weighs one).
/// Counted by stack, so what other code frees meanwhile (the threads' own start-up blocks,
/// sampled too) does not move it.
fn kept_by_churn() -> i64 {
    let p = profile(INUSE_SPACE);
    let objects = p.sample_index("inuse_objects").unwrap();
    p.samples
        .iter()
        .filter(|s| s.stack.iter().any(|f| f.function.ends_with("churn")))
        .map(|s| s.values[objects])
        .sum()
}

#[test]
fn no_sample_lands_after_sampling_is_turned_off() {
    for round in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        // Exact mode before the workers start, so every allocation of theirs is a sample.
        set_sample_rate(1);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || churn(stop))
            })
            .collect();
        // Let them sample for a moment (the condition: some of their samples are tracked).
        let start = stats().tracked_blocks;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stats().tracked_blocks < start + 1000 && std::time::Instant::now() < deadline {
            std::hint::spin_loop();
        }
        set_sample_rate(0);
        let at_off = kept_by_churn();
        // The workers keep allocating (now passed through), then stop; nothing they kept is
        // freed before the check.
        stop.store(true, Relaxed);
        let kept: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let after = kept_by_churn();
        assert!(
            at_off >= 1000,
            "round {round}: {at_off} samples before the change"
        );
        assert_eq!(
            after, at_off,
            "round {round}: a sample landed after set_sample_rate(0) returned"
        );
        drop(kept);
    }
    set_sample_rate(diag_core::heap::DEFAULT_SAMPLE_BYTES);
}
