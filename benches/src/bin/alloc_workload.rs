//! The allocation-heavy workload behind `benches/heap_overhead.rs`, run as a child process
//! once per allocator so each run has a fresh heap.
//!
//! `alloc_workload WORKLOAD SCALE` prints `{"ns_per_op": ...}`, timed inside the process
//! around the worker threads only (process start-up, allocator set-up and any profiler's
//! shutdown are outside the timed region), after an untimed warm-up of the same workload
//! (`HEAP_BENCH_WARMUP` times the operation count, default 0.1) and a 200 ms pause. The environment variable `DIAG_BENCH_MODE` picks
//! the global allocator at the first allocation: `system`, `diag-off`, `diag-512k`,
//! `diag-512k-libgcc` (stacks unwound by libgcc alone), `diag-counting` (a sample rate of
//! 1 TiB: the fast path on every call, no samples), `diag-exact`, `dhat`, and with the `anchors` feature `jemalloc` and `jemalloc-prof`. An
//! unknown mode (or a jemalloc mode in a build without `anchors`) exits with status 2.
//! Every mode pays the same dispatch (a relaxed load and a compare or two), so the
//! comparison is fair.
//!
//! `jemalloc` and `jemalloc-prof` use the same jemalloc build (tikv-jemallocator with its
//! `profiling` feature: one binary cannot link two builds of the library). `jemalloc-prof`
//! needs profiling switched on through `_RJEM_MALLOC_CONF` (e.g.
//! `prof:true,prof_active:true,lg_prof_sample:19`; plain `MALLOC_CONF` is ignored by the
//! prefixed build) and exits with status 3 if jemalloc reports `opt.prof` or `prof.active`
//! off; `jemalloc` exits with status 3 if profiling is on. Both print jemalloc's settings on
//! stderr.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use diag_core::DiagAlloc;

const UNSET: u8 = u8::MAX;
static MODE: AtomicU8 = AtomicU8::new(UNSET);
static DIAG: DiagAlloc = DiagAlloc::system();
static DHAT: dhat::Alloc = dhat::Alloc;
#[cfg(feature = "anchors")]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MODES: [&str; 9] = [
    "system",
    "diag-off",
    "diag-512k",
    "diag-exact",
    "dhat",
    "jemalloc",
    "jemalloc-prof",
    "diag-512k-libgcc",
    "diag-counting",
];

/// Writes `msg` to stderr and exits with `code`, without allocating (this runs inside the
/// allocator before any mode is chosen).
fn die(msg: &[u8], code: i32) -> ! {
    // SAFETY: writes a valid buffer to fd 2, then ends the process without running
    // destructors or touching the allocator.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(code)
    }
}

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
    let Some(m) = MODES.iter().position(|m| m.as_bytes() == name) else {
        die(b"alloc_workload: unknown DIAG_BENCH_MODE\n", 2)
    };
    let m = m as u8;
    if matches!(m, 5 | 6) && cfg!(not(feature = "anchors")) {
        die(
            b"alloc_workload: jemalloc modes need the `anchors` feature\n",
            2,
        )
    }
    // The mode is set before diag is configured: turning sampling on readies the unwinder,
    // which allocates, and those allocations must find the mode chosen.
    MODE.store(m, Relaxed);
    match m {
        1 => diag_core::heap::set_sample_rate(0),
        2 => diag_core::heap::set_sample_rate(512 * 1024),
        3 => diag_core::heap::set_sample_rate(1),
        8 => diag_core::heap::set_sample_rate(1 << 40),
        7 => {
            diag_core::heap::set_unwinder(diag_core::heap::Unwinder::Libgcc);
            diag_core::heap::set_sample_rate(512 * 1024);
        }
        _ => {}
    }
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
                #[cfg(feature = "anchors")]
                5 | 6 => JEMALLOC.alloc(l),
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
                #[cfg(feature = "anchors")]
                5 | 6 => JEMALLOC.dealloc(p, l),
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
                #[cfg(feature = "anchors")]
                5 | 6 => JEMALLOC.realloc(p, l, n),
                _ => DIAG.realloc(p, l, n),
            }
        }
    }
}

#[global_allocator]
static ALLOC: Switch = Switch;

/// Reads jemalloc's profiling settings, prints them on stderr, and exits with status 3 unless
/// profiling is on (`want_prof`) or off (not `want_prof`) as asked.
#[cfg(feature = "anchors")]
fn check_jemalloc_profiling(want_prof: bool) {
    use tikv_jemalloc_ctl::raw;
    // Make sure jemalloc has read its configuration before asking.
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
    // SAFETY: the names are NUL-terminated and these mallctl keys have the requested types
    // (`bool`, `bool`, `size_t`).
    let (opt_prof, active, lg_sample) = unsafe {
        (
            raw::read::<bool>(b"opt.prof\0"),
            raw::read::<bool>(b"prof.active\0"),
            raw::read::<usize>(b"opt.lg_prof_sample\0"),
        )
    };
    let conf = std::env::var("_RJEM_MALLOC_CONF").unwrap_or_default();
    eprintln!(
        "jemalloc: _RJEM_MALLOC_CONF={conf:?} opt.prof={opt_prof:?} prof.active={active:?} \
         opt.lg_prof_sample={lg_sample:?}"
    );
    let on = matches!(opt_prof, Ok(true)) && matches!(active, Ok(true));
    if on != want_prof {
        eprintln!(
            "alloc_workload: jemalloc profiling is {} but this mode needs it {}",
            if on { "on" } else { "off" },
            if want_prof {
                "on (set _RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19)"
            } else {
                "off"
            }
        );
        std::process::exit(3);
    }
}

/// Runs `f` with `iters` iterations on each of `threads` threads at once (seeds from
/// `seed`); returns the wall time from the first spawn to the last join, and the checksum.
fn on_threads(
    f: fn(usize, u64) -> u64,
    iters: usize,
    threads: usize,
    seed: u64,
) -> (Duration, u64) {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || f(iters, seed + t as u64)))
        .collect();
    let mut sum = 0u64;
    for h in handles {
        sum = sum.wrapping_add(h.join().expect("worker"));
    }
    (start.elapsed(), sum)
}

fn main() {
    let m = mode();
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).map(String::as_str).unwrap_or("churn");
    let scale: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let Some(w) = diag_benches::workloads::by_name(workload) else {
        eprintln!("unknown workload {workload:?}: churn, mixed or json");
        std::process::exit(2);
    };
    let (f, base_iters) = (w.run, w.full_ops);
    let iters = ((base_iters as f64) * scale) as usize;
    let profiler = (m == 4).then(|| {
        dhat::Profiler::builder()
            .file_name(std::env::temp_dir().join(format!("dhat-bench-{}.json", std::process::id())))
            .build()
    });
    #[cfg(feature = "anchors")]
    if m == 5 || m == 6 {
        check_jemalloc_profiling(m == 6);
    }
    let threads = 2;
    // Warm-up, untimed, in every mode: the same workload on fresh threads, then a pause. It
    // lets a tracer's helper (heaptrack_interpret resolving the new code addresses) catch up
    // before the clock starts, and faults in the heap alike for every allocator.
    let warmup: f64 = std::env::var("HEAP_BENCH_WARMUP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let warm_iters = ((iters as f64) * warmup) as usize;
    if warm_iters > 0 {
        on_threads(f, warm_iters, threads, 0x5851_F42D);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (elapsed, sum) = on_threads(f, iters, threads, 0x9E37_79B9);
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
