//! CPU profiler overhead: the process's CPU time (user + system, `getrusage`, so the signal
//! handler on the workers and diag's sampler thread both count) for a fixed CPU-bound workload
//! with diag's sampler at 99 Hz and at 1000 Hz (through `diag_core::cpu::Session`, as
//! `/debug/pprof/profile` runs it) versus without, in one run: interleaved repetitions (off,
//! 99 Hz, 1000 Hz, off, ...), medians, ratios. CPU time rather than wall time: other load on
//! the machine moves wall time by several per cent, CPU time much less. The profiler's
//! start/stop and symbolization are outside the measured region and reported separately.
//!
//! `cargo bench -p diag-benches --bench cpu_overhead` (env: `CPU_BENCH_REPS`, default 15;
//! `CPU_BENCH_THREADS`, default 2).

use std::time::{Duration, Instant};

use diag_benches::env_usize;
use diag_core::cpu::Session;

/// The workload: the `hot` example's hot function (primes below `n`, folded into a checksum).
use diag_examples::hot::burn_cpu as work;

/// The process's user + system CPU time so far.
fn process_cpu() -> Duration {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only `r`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// Runs `work(n)` on `threads` threads at once; the process CPU time it took.
fn run(threads: usize, n: u64) -> Duration {
    let t = process_cpu();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| std::hint::black_box(work(n)));
        }
    });
    process_cpu() - t
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let reps = if quick {
        3
    } else {
        env_usize("CPU_BENCH_REPS", 15)
    };
    let threads = env_usize("CPU_BENCH_THREADS", 2);
    // Size the workload to ~0.5 s of CPU per thread and repetition.
    let mut n = 50_000u64;
    while !quick && run(1, n) < Duration::from_millis(500) {
        n = n * 3 / 2;
    }
    run(threads, n); // warm-up
    const FREQS: [u32; 2] = [99, 1000];
    let mut off = Vec::new();
    let mut on: [Vec<Duration>; 2] = Default::default();
    let (mut setup, mut finish, mut samples) = (Vec::new(), Vec::new(), [0i64; 2]);
    let mut last_comment: [String; 2] = Default::default();
    for _ in 0..reps {
        off.push(run(threads, n));
        for (k, hz) in FREQS.into_iter().enumerate() {
            let t = Instant::now();
            let session = Session::start(hz).expect("start the profiler");
            setup.push(t.elapsed());
            on[k].push(run(threads, n));
            let t = Instant::now();
            let p = session.finish().expect("finish the profile");
            finish.push(t.elapsed());
            samples[k] += p.total(0);
            if let Some(c) = p
                .comments
                .iter()
                .find(|c| c.contains("sampler's own thread"))
            {
                last_comment[k] = c.clone();
            }
        }
    }
    let m_off = median(&mut off);
    println!(
        "cpu_overhead: {threads} threads x work({n}), {reps} interleaved repetitions, medians"
    );
    println!(
        "  profiler off        {:>9.1} ms",
        m_off.as_secs_f64() * 1e3
    );
    for (k, hz) in FREQS.into_iter().enumerate() {
        let m_on = median(&mut on[k]);
        let ratio = m_on.as_secs_f64() / m_off.as_secs_f64();
        println!(
            "  profiler on {hz:>4} Hz {:>9.1} ms  ratio {ratio:.4} ({:+.2} % CPU); {} sampling \
             periods ({:.0} % of the work's CPU time)",
            m_on.as_secs_f64() * 1e3,
            (ratio - 1.0) * 100.0,
            samples[k],
            samples[k] as f64 * 1e9
                / f64::from(hz)
                / on[k].iter().sum::<Duration>().as_nanos() as f64
                * 100.0
        );
    }
    for (k, hz) in FREQS.into_iter().enumerate() {
        println!("  last profile at {hz} Hz: {}", last_comment[k]);
    }
    println!(
        "  outside the timed region: start {:.1} ms, finish+symbolize {:.1} ms (medians)",
        median(&mut setup).as_secs_f64() * 1e3,
        median(&mut finish).as_secs_f64() * 1e3
    );
}
