//! Heap profiler overhead measured in one process, for ratios fine enough to judge a 1-2 %
//! target on a machine whose run-to-run noise is larger than that.
//!
//! `heap_overhead` starts a fresh child per measurement, which it must for its anchors (dhat,
//! jemalloc and heaptrack each own the process), but two children running the same allocator
//! differ here by 5-15 % from run to run. This bench keeps one process and two worker threads
//! for the whole run and switches the global allocator between short phases (about
//! `PHASE_MS`, default 40 ms, of the same workload):
//!
//! - `system`: `std::alloc::System`;
//! - `system-again`: `System` once more, the calibration arm: its ratio to `system` is the
//!   noise floor of the method, and its confidence interval should hold 1;
//! - `diag-off`: `DiagAlloc` with sampling off (rate 0);
//! - `diag-counting`: `DiagAlloc` at a mean of one sample per TiB: the fast path (countdown,
//!   exact counters) on every call and, in practice, no sample: `diag-512k` minus this arm is
//!   what the samples themselves cost;
//! - `diag-512k`: `DiagAlloc` at the default mean of one sample per 512 KiB, stacks unwound
//!   by the default (cached) unwinder, with everything a sample does (capture, interning,
//!   the sampled-block region, the header) inside the timed phase;
//! - `jemalloc`, `jemalloc-prof` (cargo feature `anchors`): tikv-jemallocator, one build with
//!   its profiler compiled in and enabled from the start at our mean rate
//!   (`prof:true,prof_active:false,lg_prof_sample:19`, through jemalloc's `malloc_conf`
//!   symbol), `prof.active` switched off for `jemalloc` and on for `jemalloc-prof` through
//!   `mallctl` before each phase and read back (the bench stops if it is not what the arm
//!   needs). Unlike `heap_overhead`'s `jemalloc` (profiling off in the options), this
//!   `jemalloc` runs with `opt.prof` on and the profiler inactive; `jemalloc-prof` is the same
//!   profiler as `heap_overhead`'s. The guard rail (`diag-512k` never above `jemalloc-prof`)
//!   is printed paired per round: `diag-512k` over `jemalloc-prof`;
//! - `diag-512k-jemalloc` (feature `anchors`): `DiagAlloc` at 512 KiB over that same jemalloc
//!   (its profiler inactive), as a service already on jemalloc would wrap it: the two
//!   profilers on one inner allocator, printed paired per round (over `jemalloc-prof`, and
//!   each over `jemalloc`); `diag-off-jemalloc` and `diag-counting-jemalloc` likewise, for
//!   the parts of its cost (the pass-through, the counting fast path) on that allocator;
//! - `floor-jemalloc` (feature `anchors`): `diag_benches::floor::Floor` over the same jemalloc,
//!   the least any sampling wrapper does (a thread-local countdown on every allocation, a range
//!   compare on every free; no off switch, no counters, no stacks): the cost no wrapper of
//!   jemalloc can go below, to hold against `jemalloc-prof`, which lives inside jemalloc.
//!
//! Every round runs each arm once, in a random order (a fixed rotation biased the figures by
//! ~2 %: the arm that always followed `diag-512k` ran slower); each arm's figure for
//! the round is its time over the `system` phase of the same round. The report gives, per
//! workload, the median ns per operation of each arm, the median of its per-round ratios and a
//! distribution-free 95 % confidence interval of that median (order statistics of the
//! ratios), so drifts slower than a round cancel and a difference is only claimed where the
//! interval excludes it.
//!
//! Switching is safe because `DiagAlloc<System>` hands every unsampled block to `System`
//! itself: the two free each other's blocks. Sampled blocks live in diag's region and must
//! never reach `System::dealloc`: each workload frees everything it allocates before it
//! returns, the main thread never samples (it holds [`diag_core::IgnoreAllocs`]), and
//! before every switch to `System` the bench checks that no sampled block is tracked, and
//! stops if one is. jemalloc's blocks likewise never leave their phase: the workloads free all
//! they allocate, and every thread-local a worker allocates for is first touched in the
//! untimed warm-up round, which starts with `system`.
//!
//! ```sh
//! ROUNDS=31 cargo bench -p diag-benches --bench heap_ab            # env PHASE_MS
//! ROUNDS=31 cargo bench -p diag-benches --bench heap_ab -- json    # one workload
//! ```
//!
//! Workloads are those of `heap_overhead` (`benches/src/workloads.rs`); arguments after `--`
//! pick them by substring. `HEAP_AB_ARMS` (comma-separated arm names, e.g.
//! `diag-counting,diag-512k`) runs only those arms besides `system`, the reference: more rounds
//! in the same time for the pair being studied, or one arm alone under `perf record`.
//! `HEAP_AB_RATE` changes the sampled arms' mean bytes between samples (they keep their
//! names), `HEAP_AB_THREADS` the number of workers (default 2).
//!
//! (An opt-in arm `diag-512k-framehop` once unwound with framehop's rule cache alone,
//! through a benchmark-only `heap::Unwinder::Framehop`, removed together with that unwinder;
//! BENCHMARKS.md keeps its figures with the commit they were taken at.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

#[cfg(feature = "anchors")]
use diag_benches::floor::Floor;
use diag_benches::workers::Workers;
use diag_benches::workloads::{WORKLOADS, Workload};
use diag_benches::{env_usize, median_ci, shuffled};
use diag_core::DiagAlloc;

const SYSTEM: u8 = 0;
const DIAG: u8 = 1;
#[cfg(feature = "anchors")]
const JEMALLOC: u8 = 2;
#[cfg(feature = "anchors")]
const DIAG_JEMALLOC: u8 = 3;
#[cfg(feature = "anchors")]
const FLOOR_JEMALLOC: u8 = 4;
static MODE: AtomicU8 = AtomicU8::new(SYSTEM);
static DIAG_ALLOC: DiagAlloc = DiagAlloc::system();
#[cfg(feature = "anchors")]
static JEMALLOC_ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// `DiagAlloc` over the same jemalloc (its profiler inactive): diag's profiler and jemalloc's on
/// one inner allocator, as a service that already runs jemalloc would wrap it.
#[cfg(feature = "anchors")]
static DIAG_JEMALLOC_ALLOC: DiagAlloc<tikv_jemallocator::Jemalloc> =
    DiagAlloc::new(tikv_jemallocator::Jemalloc);
/// The least any sampling wrapper does (`diag_benches::floor`), over the same jemalloc.
#[cfg(feature = "anchors")]
static FLOOR_JEMALLOC_ALLOC: Floor<tikv_jemallocator::Jemalloc> =
    Floor(tikv_jemallocator::Jemalloc);

/// jemalloc's options, read at its first call: the profiler enabled (so `prof.active` can
/// switch it per phase) at one sample per 2^19 B = 512 KiB, inactive until an arm turns it on.
/// jemalloc declares this symbol weak so that a program can define it; the bench reads
/// `opt.prof` and `opt.lg_prof_sample` back, so a definition jemalloc ignored would be caught.
#[cfg(feature = "anchors")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: Option<&'static u8> =
    Some(&b"prof:true,prof_active:false,lg_prof_sample:19\0"[0]);

/// Each allocator's four calls, each in a function of its own, compiled as they would be in a
/// program with that allocator alone (`System`'s `alloc` with or without a stack frame,
/// `DiagAlloc`'s likewise), so that neither shapes the other's code.
macro_rules! out_of_line {
    ($alloc:ident, $zeroed:ident, $dealloc:ident, $realloc:ident, $a:expr) => {
        #[inline(never)]
        unsafe fn $alloc(l: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { $a.alloc(l) }
        }
        #[inline(never)]
        unsafe fn $zeroed(l: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { $a.alloc_zeroed(l) }
        }
        #[inline(never)]
        unsafe fn $dealloc(p: *mut u8, l: Layout) {
            // SAFETY: forwarded.
            unsafe { $a.dealloc(p, l) }
        }
        #[inline(never)]
        unsafe fn $realloc(p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { $a.realloc(p, l, n) }
        }
    };
}
out_of_line!(sys_alloc, sys_zeroed, sys_dealloc, sys_realloc, System);
out_of_line!(
    diag_alloc,
    diag_zeroed,
    diag_dealloc,
    diag_realloc,
    DIAG_ALLOC
);

#[cfg(feature = "anchors")]
out_of_line!(
    jem_alloc,
    jem_zeroed,
    jem_dealloc,
    jem_realloc,
    JEMALLOC_ALLOC
);
#[cfg(feature = "anchors")]
out_of_line!(
    djem_alloc,
    djem_zeroed,
    djem_dealloc,
    djem_realloc,
    DIAG_JEMALLOC_ALLOC
);
#[cfg(feature = "anchors")]
out_of_line!(
    fjem_alloc,
    fjem_zeroed,
    fjem_dealloc,
    fjem_realloc,
    FLOOR_JEMALLOC_ALLOC
);

/// Calls one of the allocators' four functions by `MODE`: a relaxed load, a branch and a
/// direct tail call. With jemalloc (feature `anchors`) more compares part `DiagAlloc`, jemalloc,
/// `DiagAlloc` over jemalloc and the floor wrapper over it, so those pay about the same
/// dispatch, a compare or two more than `System`.
#[cfg(not(feature = "anchors"))]
macro_rules! by_mode {
    ($sys:ident, $diag:ident, $jem:ident, $djem:ident, $fjem:ident, $($arg:expr),*) => {
        // SAFETY: forwarded.
        unsafe {
            if MODE.load(Relaxed) == SYSTEM {
                $sys($($arg),*)
            } else {
                $diag($($arg),*)
            }
        }
    };
}
/// [`by_mode`] with jemalloc.
#[cfg(feature = "anchors")]
macro_rules! by_mode {
    ($sys:ident, $diag:ident, $jem:ident, $djem:ident, $fjem:ident, $($arg:expr),*) => {
        // SAFETY: forwarded.
        unsafe {
            match MODE.load(Relaxed) {
                SYSTEM => $sys($($arg),*),
                DIAG => $diag($($arg),*),
                JEMALLOC => $jem($($arg),*),
                DIAG_JEMALLOC => $djem($($arg),*),
                _ => $fjem($($arg),*),
            }
        }
    };
}

/// The global allocator: `System`, `DiagAlloc` or jemalloc as `MODE` says, through
/// [`by_mode`].
struct Switch;

// SAFETY: `DiagAlloc<System>` passes every block it does not sample to `System`, so blocks
// may move between the two freely; sampled blocks never reach `System`, and jemalloc's blocks
// never leave their phase (see the module doc).
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        by_mode!(sys_alloc, diag_alloc, jem_alloc, djem_alloc, fjem_alloc, l)
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        by_mode!(
            sys_zeroed,
            diag_zeroed,
            jem_zeroed,
            djem_zeroed,
            fjem_zeroed,
            l
        )
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        by_mode!(
            sys_dealloc,
            diag_dealloc,
            jem_dealloc,
            djem_dealloc,
            fjem_dealloc,
            p,
            l
        )
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        by_mode!(
            sys_realloc,
            diag_realloc,
            jem_realloc,
            djem_realloc,
            fjem_realloc,
            p,
            l,
            n
        )
    }
}

#[global_allocator]
static ALLOC: Switch = Switch;

/// The arms: name, allocator, sample rate (for `DiagAlloc`; for jemalloc, 1 = profiling).
#[cfg(not(feature = "anchors"))]
const ARMS: [(&str, u8, u64); 5] = [
    ("system", SYSTEM, 0),
    ("system-again", SYSTEM, 0),
    ("diag-off", DIAG, 0),
    ("diag-counting", DIAG, 1 << 40),
    ("diag-512k", DIAG, 512 * 1024),
];
/// The arms: name, allocator, sample rate (for `DiagAlloc`; for jemalloc, 1 = profiling).
#[cfg(feature = "anchors")]
const ARMS: [(&str, u8, u64); 11] = [
    ("system", SYSTEM, 0),
    ("system-again", SYSTEM, 0),
    ("diag-off", DIAG, 0),
    ("diag-counting", DIAG, 1 << 40),
    ("diag-512k", DIAG, 512 * 1024),
    ("jemalloc", JEMALLOC, 0),
    ("jemalloc-prof", JEMALLOC, 1),
    ("diag-off-jemalloc", DIAG_JEMALLOC, 0),
    ("diag-counting-jemalloc", DIAG_JEMALLOC, 1 << 40),
    ("diag-512k-jemalloc", DIAG_JEMALLOC, 512 * 1024),
    ("floor-jemalloc", FLOOR_JEMALLOC, 0),
];

/// The sample rate of the `diag-512k` arm: 512 KiB unless `HEAP_AB_RATE` says otherwise (to
/// see how the samples' cost scales with their number).
fn sampled_rate() -> u64 {
    static RATE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| env_usize("HEAP_AB_RATE", 512 * 1024).max(1) as u64)
}

/// Puts the process on `arm`'s allocator. Called by the main thread while the workers wait.
fn switch_to(arm: (&str, u8, u64)) {
    let (name, alloc, rate) = arm;
    #[cfg(feature = "anchors")]
    if alloc == DIAG_JEMALLOC {
        jemalloc_profiling(false);
        MODE.store(DIAG_JEMALLOC, Relaxed);
        let rate = if name == "diag-512k-jemalloc" {
            sampled_rate()
        } else {
            rate
        };
        diag_core::heap::set_sample_rate(rate);
        return;
    }
    if alloc != DIAG {
        diag_core::heap::set_sample_rate(0);
        let tracked = diag_core::heap::stats().tracked_blocks;
        if tracked != 0 {
            eprintln!("heap_ab: {tracked} sampled blocks still live before {name}: stopping");
            std::process::exit(1);
        }
        #[cfg(feature = "anchors")]
        if alloc == JEMALLOC || alloc == FLOOR_JEMALLOC {
            jemalloc_profiling(rate == 1);
        }
        MODE.store(alloc, Relaxed);
    } else {
        MODE.store(DIAG, Relaxed);
        let rate = if name == "diag-512k" {
            sampled_rate()
        } else {
            rate
        };
        diag_core::heap::set_sample_rate(rate);
    }
}

/// After a phase of `arm`: back to `System` if it was jemalloc, so that what the main thread
/// allocates between phases (the figures) is never a jemalloc block outliving its phase. (It
/// may be `DiagAlloc`'s: those are `System`'s, as the main thread never samples.)
fn leave(arm: (&str, u8, u64)) {
    if arm.1 > DIAG {
        MODE.store(SYSTEM, Relaxed);
        diag_core::heap::set_sample_rate(0);
    }
}

/// Turns jemalloc's profiler on or off and checks that it is as asked (and enabled at 512 KiB
/// from the start); stops the bench otherwise.
#[cfg(feature = "anchors")]
fn jemalloc_profiling(on: bool) {
    use tikv_jemalloc_ctl::raw;
    // SAFETY: NUL-terminated names of mallctl keys of these types (`bool`, `bool`, `size_t`).
    let (set, opt_prof, active, lg_sample) = unsafe {
        (
            raw::write::<bool>(b"prof.active\0", on),
            raw::read::<bool>(b"opt.prof\0"),
            raw::read::<bool>(b"prof.active\0"),
            raw::read::<usize>(b"opt.lg_prof_sample\0"),
        )
    };
    if set.is_err() || opt_prof != Ok(true) || active != Ok(on) || lg_sample != Ok(19) {
        eprintln!(
            "heap_ab: jemalloc's profiler is not as the arm needs (prof.active {on}): write \
             {set:?}, opt.prof {opt_prof:?}, prof.active {active:?}, opt.lg_prof_sample \
             {lg_sample:?}: stopping"
        );
        std::process::exit(1);
    }
}

/// Worker threads, from `HEAP_AB_THREADS` (default 2).
fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| env_usize("HEAP_AB_THREADS", 2).max(1))
}

fn main() {
    let _main_never_samples = diag_core::IgnoreAllocs::new();
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds = env_usize("ROUNDS", 31).max(3);
    let phase_ms = env_usize("PHASE_MS", 40).max(1) as f64;
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!(
        "heap_ab: one process, {} worker threads, {rounds} rounds of ~{phase_ms} ms \
         phases, arms in random order; diag-512k samples every {} bytes on average; load \
         average {load}",
        threads(),
        sampled_rate()
    );
    let wanted = std::env::var("HEAP_AB_ARMS").unwrap_or_default();
    let mut active = ARMS.map(|_| true);
    if !wanted.trim().is_empty() {
        let names: Vec<&str> = wanted.split(',').map(str::trim).collect();
        if let Some(bad) = names.iter().find(|n| !ARMS.iter().any(|a| a.0 == **n)) {
            let known: Vec<&str> = ARMS.iter().map(|a| a.0).collect();
            eprintln!("heap_ab: unknown arm {bad:?} in HEAP_AB_ARMS (arms: {known:?})");
            std::process::exit(2);
        }
        for (a, arm) in ARMS.iter().enumerate().skip(1) {
            active[a] = names.contains(&arm.0);
        }
    }
    let workers = Workers::new(threads());
    for (wi, w) in WORKLOADS.iter().enumerate() {
        if !filter.is_empty() && !filter.iter().any(|f| w.name.contains(f.as_str())) {
            continue;
        }
        let iters = calibrate(&workers, wi, w, phase_ms);
        // One untimed round of every arm: the heap, the region and the stack table warm up.
        for (a, arm) in ARMS.into_iter().enumerate() {
            if active[a] {
                switch_to(arm);
                workers.phase(wi, iters, 1);
                leave(arm);
            }
        }
        // Per arm: ns/op (wall), and per-round ratios to `system` of wall and of CPU time.
        let mut ns: Vec<Vec<f64>> = vec![Vec::new(); ARMS.len()];
        let mut wall: Vec<Vec<f64>> = vec![Vec::new(); ARMS.len()];
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); ARMS.len()];
        // `diag-512k` over `diag-counting` in the same round: what the samples themselves cost,
        // paired, so its interval is tighter than the difference of the two columns.
        let arm = |name: &str| ARMS.iter().position(|a| a.0 == name).expect("arm");
        let (counting, sampled) = (arm("diag-counting"), arm("diag-512k"));
        let mut samples_cpu: Vec<f64> = Vec::new();
        // `diag-512k` over `jemalloc-prof` in the same round: the guard rail, paired.
        let rail = ARMS.iter().position(|a| a.0 == "jemalloc-prof");
        let mut rail_cpu: Vec<f64> = Vec::new();
        // The same rail on one inner allocator: `diag-512k-jemalloc` over `jemalloc-prof`; and
        // every arm on jemalloc over that jemalloc with its profiler inactive.
        let on_jemalloc = ARMS.iter().position(|a| a.0 == "diag-512k-jemalloc");
        let base = ARMS.iter().position(|a| a.0 == "jemalloc");
        let mut rail_same: Vec<f64> = Vec::new();
        // Every arm on jemalloc (its profiler, `DiagAlloc` over it at each rate) over `jemalloc`.
        let mut over_base: Vec<Vec<f64>> = vec![Vec::new(); ARMS.len()];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for r in 0..rounds {
            let mut t = [(0.0f64, 0.0f64); ARMS.len()];
            let order = shuffled::<{ ARMS.len() }>(&mut rng);
            for (k, a) in order.into_iter().filter(|&a| active[a]).enumerate() {
                switch_to(ARMS[a]);
                let seed = 0x9E37_79B9 + (r * ARMS.len() + k) as u64;
                let (w, c) = workers.phase(wi, iters, seed);
                leave(ARMS[a]);
                t[a] = (w.as_nanos() as f64, c as f64);
            }
            if active[counting] && active[sampled] {
                samples_cpu.push(t[sampled].1 / t[counting].1);
            }
            if let Some(j) = rail.filter(|&j| active[j] && active[sampled]) {
                rail_cpu.push(t[sampled].1 / t[j].1);
            }
            if let (Some(d), Some(j)) = (on_jemalloc, rail)
                && active[d]
                && active[j]
            {
                rail_same.push(t[d].1 / t[j].1);
            }
            if let Some(b) = base.filter(|&b| active[b]) {
                for a in (b + 1..ARMS.len()).filter(|&a| active[a]) {
                    over_base[a].push(t[a].1 / t[b].1);
                }
            }
            for a in (0..ARMS.len()).filter(|&a| active[a]) {
                ns[a].push(t[a].0 / (iters * threads()) as f64);
                wall[a].push(t[a].0 / t[0].0);
                cpu[a].push(t[a].1 / t[0].1);
            }
        }
        switch_to(ARMS[0]);
        println!(
            "\n{}: {iters} operations per thread per phase\n\n\
             | arm | ns/op (median) | wall vs system | 95 % CI | CPU time vs system | 95 % CI |\n\
             |---|---:|---:|---|---:|---|",
            w.name
        );
        let ci = |v: &[f64]| {
            let (lo, _, hi) = median_ci(v);
            format!("{lo:.3} .. {hi:.3}")
        };
        for (a, arm) in ARMS.iter().enumerate().filter(|&(a, _)| active[a]) {
            let (wci, cci) = if a == 0 {
                ("-".to_owned(), "-".to_owned())
            } else {
                (ci(&wall[a]), ci(&cpu[a]))
            };
            println!(
                "| {} | {:.2} | {:.3} | {wci} | {:.3} | {cci} |",
                arm.0,
                median_ci(&ns[a]).1,
                median_ci(&wall[a]).1,
                median_ci(&cpu[a]).1,
            );
        }
        if !samples_cpu.is_empty() {
            let (lo, m, hi) = median_ci(&samples_cpu);
            println!(
                "\nThe samples' own cost, {} over {} per round, CPU time: {m:.3} (95 % CI \
                 {lo:.3} .. {hi:.3})",
                ARMS[sampled].0, ARMS[counting].0
            );
        }
        if !rail_cpu.is_empty() {
            let (lo, m, hi) = median_ci(&rail_cpu);
            println!(
                "\n{} over jemalloc-prof per round, CPU time: {m:.3} (95 % CI {lo:.3} .. {hi:.3})",
                ARMS[sampled].0
            );
        }
        let f = |v: &[f64]| {
            let (lo, m, hi) = median_ci(v);
            format!("{m:.3} (95 % CI {lo:.3} .. {hi:.3})")
        };
        if !rail_same.is_empty() {
            println!(
                "\nOn one inner allocator, per round, CPU time: diag-512k-jemalloc over \
                 jemalloc-prof {}",
                f(&rail_same)
            );
        }
        let on_base: Vec<String> = (0..ARMS.len())
            .filter(|&a| !over_base[a].is_empty())
            .map(|a| format!("{} {}", ARMS[a].0, f(&over_base[a])))
            .collect();
        if !on_base.is_empty() {
            println!(
                "\nOver jemalloc, per round, CPU time: {}",
                on_base.join("; ")
            );
        }
    }
    workers.stop();
}

/// Operations per thread that make a `System` phase of workload `w` last about `phase_ms`.
fn calibrate(workers: &Workers, wi: usize, w: &Workload, phase_ms: f64) -> usize {
    switch_to(ARMS[0]);
    let mut iters = (w.full_ops / 1000).max(10);
    loop {
        let t = workers.phase(wi, iters, 7).0.as_secs_f64() * 1e3;
        if t >= phase_ms / 4.0 || iters >= w.full_ops {
            return ((iters as f64 * phase_ms / t.max(1e-3)) as usize).max(1);
        }
        iters *= 4;
    }
}
