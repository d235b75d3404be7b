//! The first sample reserves diag's sampled-block region while other threads already count on
//! their fast paths, whose free test holds a copy of the region's bounds taken before the
//! region existed. A sampled block freed on such a thread must still go back to the region:
//! handed to `malloc`'s `free` it would abort the process or corrupt its heap. The exact
//! counters must add up afterwards. No test harness: the region must still be unreserved when
//! the test starts, and no other thread may sample first.

use std::sync::mpsc;

use diag_core::DiagAlloc;
use diag_core::heap::{set_sample_rate, stats};

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// Mean bytes between samples: far more than the few kilobytes the process allocates before
/// the blocks below, so nothing is sampled before them (probability about 1e-4), and a 64th
/// of the gigabyte allocated in them, so they are sampled (all but certainly: e^-16).
const RATE: u64 = 64 << 20;
/// Blocks allocated on the main thread and freed on the other, and their size (address space
/// only: `malloc` maps them and nothing touches their pages).
const BLOCKS: usize = 16;
const SIZE: usize = 64 << 20;

/// Runs the test afresh in a child process (at most twice) when the few hundred bytes the
/// runtime allocates before `main`, at the default rate, drew a sample (about one run in a
/// thousand): the precondition is then gone, but not by any fault of the code under test.
fn again() -> ! {
    const TRY: &str = "DIAG_FIRST_SAMPLE_TRY";
    let tries: u32 = std::env::var(TRY)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        tries < 2,
        "the region was reserved before main in three runs; the test cannot check the first sample"
    );
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(TRY, (tries + 1).to_string())
        .status()
        .expect("run the test again");
    std::process::exit(status.code().unwrap_or(1));
}

fn main() {
    let at_start = stats();
    if at_start.region_reserved_bytes != 0 {
        again();
    }
    // Off first: the rate change readies the unwinder (which allocates) before the new rate
    // applies, and at the default rate that could draw a sample.
    set_sample_rate(0);
    set_sample_rate(RATE);
    let at_start = at_start.allocated_bytes;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (blocks_tx, blocks_rx) = mpsc::channel::<Vec<Vec<u8>>>();
    let other = std::thread::spawn(move || {
        // Counting on the fast path, and freeing, before the region exists.
        let warm: Vec<Box<[u8; 32]>> = (0..64).map(|_| Box::new([1; 32])).collect();
        drop(warm);
        ready_tx.send(()).expect("main thread gone");
        let blocks = blocks_rx.recv().expect("main thread gone");
        // Freed here: the sampled ones among them must go back to the region.
        drop(blocks);
    });
    ready_rx.recv().expect("other thread gone");
    assert_eq!(
        stats().region_reserved_bytes,
        0,
        "the other thread's warm-up was sampled; the test cannot check the first sample"
    );

    let before = stats();
    let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|_| Vec::with_capacity(SIZE)).collect();
    let sampled = stats();
    assert!(
        sampled.region_reserved_bytes > 0 && sampled.tracked_blocks > before.tracked_blocks,
        "none of {BLOCKS} blocks of {SIZE} bytes was sampled at {RATE}: {sampled:?}"
    );
    blocks_tx.send(blocks).expect("other thread gone");
    other.join().expect("the other thread panicked");

    let after = stats();
    assert_eq!(
        after.tracked_blocks, before.tracked_blocks,
        "sampled blocks freed on the other thread are forgotten"
    );
    assert_eq!(after.region_used_bytes, before.region_used_bytes);
    let freed = after.freed_bytes - before.freed_bytes;
    assert!(
        freed >= (BLOCKS * SIZE) as u64,
        "the frees of {BLOCKS} blocks of {SIZE} bytes are counted: {freed}"
    );
    println!(
        "first sample: {} of {BLOCKS} blocks sampled, all freed on another thread; {freed} bytes \
         freed; {at_start} bytes allocated before main",
        sampled.tracked_blocks - before.tracked_blocks
    );
}
