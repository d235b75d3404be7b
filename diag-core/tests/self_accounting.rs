//! diag's own allocations are counted apart from the application's: what a thread allocates
//! and frees under `IgnoreAllocs` moves `self_live_bytes`, not `live_bytes`, on this thread and
//! on a thread that holds the guard for its whole life (as diag's own threads do). One test:
//! the allocator is process-global.

use diag_core::{IgnoreAllocs, heap};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

const MIB: usize = 1 << 20;

/// (application live bytes, diag's live bytes)
fn live() -> (i64, i64) {
    let s = heap::stats();
    (s.live_bytes as i64, s.self_live_bytes as i64)
}

#[test]
fn diag_allocations_are_counted_apart() {
    // Counting on, but no sample will land in the blocks below (one per TiB).
    heap::set_sample_rate(1 << 40);
    // This thread's counter slot claimed before the first reading.
    let _warm = std::hint::black_box(Box::new(0u64));
    let (app0, own0) = live();

    // On this thread, under the guard: diag's.
    let own_block = {
        let _g = IgnoreAllocs::new();
        std::hint::black_box(vec![1u8; 8 * MIB])
    };
    let (app1, own1) = live();
    assert!((app1 - app0).abs() < 64 * 1024, "app moved {}", app1 - app0);
    assert!(own1 - own0 >= 8 * MIB as i64, "own moved {}", own1 - own0);

    // Outside the guard: the application's, exactly this thread's 4 MiB (measured on this
    // thread's counters by `testing::measure`), and diag's count does not move.
    let m = diag_core::testing::measure(|| std::hint::black_box(vec![2u8; 4 * MIB]));
    assert!(m.live_growth() >= 4 * MIB as i64, "{m:?}");
    m.assert_live_growth_at_most(4 * MIB as u64 + 1024);
    let app_block = m.value;
    let (app2, own2) = live();
    assert!((own2 - own1).abs() < 64 * 1024, "own moved {}", own2 - own1);

    // Freed under the guard, diag's block comes off diag's count.
    {
        let _g = IgnoreAllocs::new();
        drop(own_block);
    }
    let (app3, own3) = live();
    assert!((app3 - app2).abs() < 64 * 1024, "app moved {}", app3 - app2);
    assert!(own2 - own3 >= 8 * MIB as i64, "own moved {}", own3 - own2);

    // A thread that is diag's for its whole life (the guard taken before its first
    // allocation, as diag's listener and blocking threads do).
    let (app4, own4) = live();
    let (during_app, during_own) = std::thread::spawn(|| {
        std::mem::forget(IgnoreAllocs::new());
        let b = std::hint::black_box(vec![3u8; 2 * MIB]);
        let l = live();
        drop(b);
        l
    })
    .join()
    .unwrap();
    assert!(
        during_own - own4 >= 2 * MIB as i64,
        "own moved {}",
        during_own - own4
    );
    assert!(
        (during_app - app4).abs() < 256 * 1024,
        "app moved {}",
        during_app - app4
    );
    let (app5, own5) = live();
    assert!(
        (own5 - own4).abs() < 256 * 1024,
        "own moved {}",
        own5 - own4
    );
    assert!(
        (app5 - app4).abs() < 256 * 1024,
        "app moved {}",
        app5 - app4
    );

    drop(app_block);
    let (app6, _) = live();
    assert!(app5 - app6 >= 4 * MIB as i64, "app moved {}", app6 - app5);
}
