//! `diag_core::testing::measure`: what a closure leaves live on this thread, exactly, with the
//! sites that hold it when an assertion fails; allocations on other threads do not count. One
//! test: the allocator is process-global.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use diag_core::testing::{measure, measure_future};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The leak the failing assertion must name.
#[inline(never)]
fn keep_forever(kb: usize) {
    let buf = std::hint::black_box(vec![7u8; kb * 1024]);
    KEPT.lock().unwrap().push(buf);
}

#[test]
fn measure_counts_this_threads_growth_and_names_its_sites() {
    // Freed work leaves nothing; its allocations are counted exactly.
    let m = measure(|| std::hint::black_box(vec![1u8; 1 << 20]).len());
    assert_eq!(m.value, 1 << 20);
    assert!(m.alloc_bytes >= 1 << 20, "{m:?}");
    m.assert_live_growth_at_most(0);

    // Another thread allocating 64 MiB meanwhile does not move this thread's count.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) && held.len() < 64 {
                held.push(std::hint::black_box(vec![0u8; 1 << 20]));
            }
            held
        });
        let m = measure(|| keep_forever(256));
        stop.store(true, Ordering::Relaxed);
        let g = m.live_growth();
        assert!((256 * 1024..256 * 1024 + 4096).contains(&g), "{g}: {m:?}");
    });

    // A future, polled on this thread: its leak is counted too.
    let m = measure_future(async {
        keep_forever(64);
        7
    });
    assert_eq!(m.value, 7);
    assert!(
        (64 * 1024..64 * 1024 + 4096).contains(&m.live_growth()),
        "{m:?}"
    );

    // A leak over the bound fails, naming its site and the test that called it.
    let m = measure(|| {
        for _ in 0..4 {
            keep_forever(128);
        }
    });
    let err = std::panic::catch_unwind(|| m.assert_live_growth_at_most(64 * 1024))
        .expect_err("512 KiB kept, 64 KiB allowed");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("more than the 65536 allowed"), "{msg}");
    let first_site = msg.lines().nth(2).unwrap_or("");
    assert!(first_site.contains("keep_forever"), "{msg}");
    let bytes: i64 = first_site
        .trim()
        .trim_start_matches('+')
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // The four buffers, and the growth of the Vec that keeps them.
    assert!((512 * 1024..512 * 1024 + 4096).contains(&bytes), "{msg}");
    assert!(msg.contains("measure_counts_this_threads_growth"), "{msg}");
}
