//! Allocator stress: many threads allocating, reallocating (growing and shrinking, across the
//! sampled/unsampled boundary), freeing on other threads, big and over-aligned blocks, threads
//! that start and exit, and allocation in TLS destructors. Every block's contents are checked,
//! and the exact counters must balance at the end. One test: the allocator is process-global.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

use diag_core::DiagAlloc;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

fn fill(p: *mut u8, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: p points to at least n writable bytes.
        unsafe { *p.add(i) = seed.wrapping_add(i as u8) };
    }
}

fn check(p: *const u8, n: usize, seed: u8) {
    for i in 0..n {
        // SAFETY: p points to at least n readable bytes.
        let v = unsafe { *p.add(i) };
        assert_eq!(v, seed.wrapping_add(i as u8), "corrupt byte {i} of {n}");
    }
}

struct AllocInDtor(Vec<u8>);
impl Drop for AllocInDtor {
    fn drop(&mut self) {
        // Allocating (and freeing) while thread-locals are being torn down.
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.len() + self.0.len(), 1000 + 16);
    }
}
thread_local! {
    static LATE: std::cell::RefCell<Option<AllocInDtor>> = const { std::cell::RefCell::new(None) };
}

fn worker(seed: u64, tx: mpsc::Sender<Vec<u8>>) {
    LATE.with(|l| *l.borrow_mut() = Some(AllocInDtor(vec![0; 16])));
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
    for i in 0..20_000 {
        let r = rnd();
        match r % 8 {
            0..=3 => {
                let size = 1 + (r >> 8) as usize % if r % 997 == 0 { 2 << 20 } else { 4096 };
                let align = [1, 8, 16, 64, 4096, 8192][(r >> 40) as usize % 6];
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe {
                    if r % 3 == 0 {
                        ALLOC.alloc_zeroed(layout)
                    } else {
                        ALLOC.alloc(layout)
                    }
                };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "misaligned block");
                if r % 3 == 0 {
                    check_zero(p, size);
                }
                fill(p, size, i as u8);
                live.push((p, layout, i as u8));
            }
            4 | 5 if !live.is_empty() => {
                let k = (r >> 16) as usize % live.len();
                let (p, layout, seed) = live.swap_remove(k);
                let new_size = 1 + (r >> 24) as usize % ((layout.size() * 2).min(4 << 20) + 64);
                // SAFETY: p was allocated with layout; new_size is non-zero.
                let q = unsafe { ALLOC.realloc(p, layout, new_size) };
                assert!(!q.is_null());
                assert_eq!(q as usize % layout.align(), 0, "misaligned after realloc");
                check(q, layout.size().min(new_size), seed);
                fill(q, new_size, seed);
                live.push((
                    q,
                    Layout::from_size_align(new_size, layout.align()).unwrap(),
                    seed,
                ));
            }
            6 if !live.is_empty() => {
                let k = (r >> 16) as usize % live.len();
                let (p, layout, seed) = live.swap_remove(k);
                check(p, layout.size(), seed);
                // SAFETY: p was allocated with layout.
                unsafe { ALLOC.dealloc(p, layout) };
            }
            _ => {
                // Hand a Vec to the main thread: freed on another thread.
                let _ = tx.send(vec![r as u8; (r >> 32) as usize % 2000]);
            }
        }
    }
    for (p, layout, seed) in live {
        check(p, layout.size(), seed);
        // SAFETY: p was allocated with layout.
        unsafe { ALLOC.dealloc(p, layout) };
    }
}

fn check_zero(p: *const u8, n: usize) {
    for i in 0..n {
        // SAFETY: p points to n readable bytes.
        assert_eq!(unsafe { *p.add(i) }, 0, "alloc_zeroed byte {i} not zero");
    }
}

/// One round: eight workers and a drain thread that frees what they hand over, each round with
/// its own channel, so that when the round ends nothing the workers allocated stays alive (a
/// shared channel would keep its current slot block, allocated by a worker's `send`).
struct Round {
    workers: Vec<std::thread::JoinHandle<()>>,
    drain: std::thread::JoinHandle<usize>,
}

impl Round {
    fn start(seed: u64) -> Self {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let drain = std::thread::spawn(move || rx.into_iter().map(|v| v.len()).sum::<usize>());
        let workers = (0..8u64)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || worker(seed * 100 + t + 1, tx))
            })
            .collect();
        Self { workers, drain }
    }

    /// Waits for the workers, then for the drain (the channel closes with the last sender).
    fn finish(self) {
        for h in self.workers {
            h.join().expect("worker panicked");
        }
        self.drain.join().expect("drain panicked");
    }
}

#[test]
fn threads_realloc_big_aligned_and_tls_destructors() {
    // A high sampling rate so that many blocks take the sampled path.
    diag_core::heap::set_sample_rate(4096);
    for r in 0..4u64 {
        let round = Round::start(r);
        // Switch modes while the workers run (exact, off, sampled) and take profiles.
        diag_core::heap::set_sample_rate([1, 0, 4096, 65536][r as usize]);
        let p = diag_core::heap::profile("inuse_space");
        assert_eq!(p.sample_types.len(), 4);
        round.finish();
    }
    // Every sampled block of the workers was forgotten when freed.
    let p = diag_core::heap::profile("inuse_space");
    let is = p.sample_index("inuse_space").unwrap();
    let worker_live: i64 = p
        .samples
        .iter()
        .filter(|s| {
            s.stack
                .iter()
                .any(|f| f.function.contains("allocator_stress::worker"))
        })
        .map(|s| s.values[is])
        .sum();
    assert_eq!(worker_live, 0, "freed sampled blocks still counted");

    // The exact counters balance: a round in exact mode with no profile taken meanwhile (a
    // profile's symbol cache is diag's own live memory) leaves live objects where they were.
    diag_core::heap::set_sample_rate(1);
    let before = diag_core::heap::stats();
    Round::start(9).finish();
    let after = diag_core::heap::stats();
    let live_delta = after.live_objects as i64 - before.live_objects as i64;
    assert!(
        live_delta.abs() < 100,
        "live objects drifted by {live_delta}: {after:?}"
    );
    assert!(
        after.tracked_blocks < 100,
        "sampled blocks leaked: {after:?}"
    );
    assert!(after.allocated_objects - before.allocated_objects > 8 * 10_000);
    assert_eq!(after.dropped_samples, 0, "{after:?}");
}
