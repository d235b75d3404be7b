//! The allocation-heavy workload behind `benches/heap_overhead.rs`, run as a child process
//! once per allocator so each run has a fresh heap.
//!
//! `alloc_workload MODE WORKLOAD SCALE` prints `{"ns_per_op": ...}`. MODE picks the global
//! allocator at the first allocation: `system`, `diag-off`, `diag-512k`, `diag-exact`, `dhat`.
//! Every mode pays the same one-branch dispatch, so the comparison is fair.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::Instant;

use diag_core::DiagAlloc;

const UNSET: u8 = u8::MAX;
static MODE: AtomicU8 = AtomicU8::new(UNSET);
static DIAG: DiagAlloc = DiagAlloc::system();
static DHAT: dhat::Alloc = dhat::Alloc;

const MODES: [&str; 5] = ["system", "diag-off", "diag-512k", "diag-exact", "dhat"];

#[cold]
fn init_mode() -> u8 {
    // SAFETY: getenv with a NUL-terminated name; read before any thread is spawned.
    let p = unsafe { libc::getenv(c"DIAG_BENCH_MODE".as_ptr()) };
    let name = if p.is_null() {
        &b"system"[..]
    } else {
        // SAFETY: getenv returns a NUL-terminated string that lives as long as the environment.
        unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes()
    };
    let m = MODES.iter().position(|m| m.as_bytes() == name).unwrap_or(0) as u8;
    match m {
        1 => diag_core::heap::set_sample_rate(0),
        2 => diag_core::heap::set_sample_rate(512 * 1024),
        3 => diag_core::heap::set_sample_rate(1),
        _ => {}
    }
    MODE.store(m, Relaxed);
    m
}

#[inline(always)]
fn mode() -> u8 {
    let m = MODE.load(Relaxed);
    if m != UNSET { m } else { init_mode() }
}

struct Switch;

// SAFETY: each call is forwarded to one allocator chosen once for the whole process, so every
// block is freed by the allocator that made it.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            match mode() {
                0 => System.alloc(l),
                4 => DHAT.alloc(l),
                _ => DIAG.alloc(l),
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe {
            match mode() {
                0 => System.dealloc(p, l),
                4 => DHAT.dealloc(p, l),
                _ => DIAG.dealloc(p, l),
            }
        }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            match mode() {
                0 => System.realloc(p, l, n),
                4 => DHAT.realloc(p, l, n),
                _ => DIAG.realloc(p, l, n),
            }
        }
    }
}

#[global_allocator]
static ALLOC: Switch = Switch;

/// Small alloc/free pairs: the worst case for an allocator wrapper.
#[inline(never)]
fn churn(iters: usize, seed: u64) -> u64 {
    let mut x = seed | 1;
    let mut sum = 0u64;
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = 16 + (x % 240) as usize;
        let mut v: Vec<u8> = Vec::with_capacity(n);
        v.push(x as u8);
        sum = sum.wrapping_add(std::hint::black_box(&v)[0] as u64);
    }
    sum
}

/// A service-like mix: a working set of 1024 live buffers of log-uniform sizes (8 B to
/// 64 KiB) replaced at random, touched, plus string formatting.
#[inline(never)]
fn mixed(iters: usize, seed: u64) -> u64 {
    let mut x = seed | 1;
    let mut live: Vec<Vec<u8>> = (0..1024).map(|_| Vec::new()).collect();
    let mut sum = 0u64;
    for i in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 8usize << (x % 14);
        let size = size + (x >> 20) as usize % size;
        let mut v = vec![0u8; size];
        v[size - 1] = i as u8;
        let slot = (x >> 40) as usize % live.len();
        live[slot] = v;
        if i % 8 == 0 {
            let s = format!("request {i} from {:x}", x);
            sum = sum.wrapping_add(s.len() as u64);
        }
        sum = sum.wrapping_add(live[slot][0] as u64);
    }
    sum
}

fn main() {
    let m = mode();
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).map(String::as_str).unwrap_or("churn");
    let scale: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let (f, base_iters): (fn(usize, u64) -> u64, usize) = match workload {
        "churn" => (churn, 10_000_000),
        "mixed" => (mixed, 1_000_000),
        other => {
            eprintln!("unknown workload {other:?}: churn or mixed");
            std::process::exit(2);
        }
    };
    let iters = ((base_iters as f64) * scale) as usize;
    let profiler = (m == 4).then(|| {
        dhat::Profiler::builder()
            .file_name(std::env::temp_dir().join(format!("dhat-bench-{}.json", std::process::id())))
            .build()
    });
    let threads = 2;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || f(iters, 0x9E37_79B9 + t as u64)))
        .collect();
    let mut sum = 0u64;
    for h in handles {
        sum = sum.wrapping_add(h.join().expect("worker"));
    }
    let elapsed = start.elapsed();
    let ops = (iters * threads) as f64;
    println!(
        "{{\"mode\": \"{}\", \"workload\": \"{workload}\", \"ns_per_op\": {:.3}, \"check\": {sum}}}",
        MODES[m as usize],
        elapsed.as_nanos() as f64 / ops
    );
    if let Some(p) = profiler {
        let path = std::env::temp_dir().join(format!("dhat-bench-{}.json", std::process::id()));
        drop(p);
        let _ = std::fs::remove_file(path);
    }
}
