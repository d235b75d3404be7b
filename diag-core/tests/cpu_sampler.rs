//! The CPU sampler against the truth each thread keeps of itself (its CPU-time clock): two
//! threads burning CPU 2:1 show 2:1 in the profile within 5 points, every thread's CPU is
//! captured (at least 90 % of it), a thread that spends its time in syscalls shows libc's
//! wrappers innermost with the Rust function that called them above, and one that reads the
//! clock (the vDSO) is unwound through it to its Rust caller. One test: the
//! profiler is process-global.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use diag_core::cpu::Session;
use diag_core::profile::Profile;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[inline(never)]
fn burn(cpu: Duration) -> Duration {
    let start = thread_cpu();
    let mut x = 1u64;
    while thread_cpu() - start < cpu {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    thread_cpu() - start
}

/// Small writes and reads over a socket pair: nearly all of it in libc's syscall wrappers.
#[inline(never)]
fn io_loop(cpu: Duration) -> Duration {
    let start = thread_cpu();
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let mut buf = [0u8; 64];
    while thread_cpu() - start < cpu {
        for _ in 0..100 {
            a.write_all(&buf[..16]).unwrap();
            b.read_exact(&mut buf[..16]).unwrap();
        }
    }
    thread_cpu() - start
}

/// Reads the clock in a loop: `clock_gettime` runs in the vDSO.
#[inline(never)]
fn clock_loop(cpu: Duration) -> Duration {
    let start = thread_cpu();
    let mut last = std::time::Instant::now();
    while thread_cpu() - start < cpu {
        for _ in 0..1000 {
            last = std::hint::black_box(std::time::Instant::now().max(last));
        }
    }
    thread_cpu() - start
}

fn spawn(
    name: &str,
    f: fn(Duration) -> Duration,
    cpu: Duration,
) -> std::thread::JoinHandle<Duration> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || f(cpu))
        .unwrap()
}

/// CPU nanoseconds in the profile for samples of `thread`.
fn cpu_of(p: &Profile, thread: &str) -> i64 {
    let i = p.sample_index("cpu").unwrap();
    p.samples
        .iter()
        .filter(|s| s.labels.iter().any(|(k, v)| k == "thread" && v == thread))
        .map(|s| s.values[i])
        .sum()
}

#[test]
fn shares_capture_and_syscall_frames() {
    let session = Session::start(250).unwrap();
    let a = spawn("burn-a", burn, Duration::from_millis(1200));
    let b = spawn("burn-b", burn, Duration::from_millis(600));
    let io = spawn("io-loop", io_loop, Duration::from_millis(800));
    let clock = spawn("clock-loop", clock_loop, Duration::from_millis(500));
    let (a, b, io) = (a.join().unwrap(), b.join().unwrap(), io.join().unwrap());
    let clock = clock.join().unwrap();
    let p = session.finish().unwrap();
    let (pa, pb, pio) = (
        cpu_of(&p, "burn-a") as f64,
        cpu_of(&p, "burn-b") as f64,
        cpu_of(&p, "io-loop") as f64,
    );
    eprintln!("comments: {:#?}", p.comments);
    eprintln!(
        "truth a {:?} b {:?} io {:?}; profile a {:.0} ms b {:.0} ms io {:.0} ms",
        a,
        b,
        io,
        pa / 1e6,
        pb / 1e6,
        pio / 1e6
    );
    let pclock = cpu_of(&p, "clock-loop") as f64;
    for (name, truth, got) in [
        ("burn-a", a, pa),
        ("burn-b", b, pb),
        ("io-loop", io, pio),
        ("clock-loop", clock, pclock),
    ] {
        let ratio = got / truth.as_nanos() as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{name}: the profile holds {ratio:.3} of the thread's CPU time"
        );
    }
    let truth_share = a.as_secs_f64() / (a + b).as_secs_f64();
    let share = pa / (pa + pb);
    assert!(
        (share - truth_share).abs() <= 0.05,
        "burn-a's share {share:.3}, truth {truth_share:.3}"
    );

    // The syscall thread: libc innermost, our function above it, in the same stacks, for
    // most of its time.
    let i = p.sample_index("cpu").unwrap();
    let io_samples: Vec<_> = p
        .samples
        .iter()
        .filter(|s| s.labels.iter().any(|(_, v)| v == "io-loop"))
        .collect();
    let in_libc_under_us: i64 = io_samples
        .iter()
        .filter(|s| {
            let leaf_in_libc = s.stack.first().is_some_and(|f| {
                p.mappings
                    .iter()
                    .any(|m| m.file.contains("libc.so") && (m.start..m.limit).contains(&f.address))
            });
            leaf_in_libc
                && s.stack
                    .iter()
                    .any(|f| f.function.ends_with("cpu_sampler::io_loop"))
        })
        .map(|s| s.values[i])
        .sum();
    let leafs: Vec<&str> = io_samples
        .iter()
        .take(5)
        .map(|s| s.stack[0].function.as_str())
        .collect();
    for s in io_samples.iter().take(4) {
        let names: Vec<&str> = s
            .stack
            .iter()
            .take(8)
            .map(|f| f.function.as_str())
            .collect();
        eprintln!("{} ms: {names:?}", s.values[i] / 1_000_000);
    }
    assert!(
        in_libc_under_us as f64 >= 0.3 * pio,
        "{} of {} ms of io-loop's samples are in libc under io_loop; heaviest leaves {leafs:?}",
        in_libc_under_us / 1_000_000,
        pio as i64 / 1_000_000
    );
    // The vDSO thread: unwound through the vDSO to our function.
    let under_clock_loop: i64 = p
        .samples
        .iter()
        .filter(|s| s.labels.iter().any(|(_, v)| v == "clock-loop"))
        .filter(|s| {
            s.stack
                .iter()
                .any(|f| f.function.ends_with("cpu_sampler::clock_loop"))
        })
        .map(|s| s.values[i])
        .sum();
    // Of the samples whose walk started: a sample that kept the interrupted instruction alone
    // (every frame before `[truncated]` at one address: the unwinder's caches or module table
    // were busy on a loaded machine, in the vDSO or anywhere else) says nothing about
    // unwinding through the vDSO; those are bounded with the truncated ones below. (A full CI
    // run here had 444 of 496 ms reach clock_loop, the rest leaf-only samples.)
    let leaf_only: i64 = p
        .samples
        .iter()
        .filter(|s| s.labels.iter().any(|(_, v)| v == "clock-loop"))
        .filter(|s| match s.stack.split_last() {
            Some((last, inner)) if last.function == "[truncated]" => {
                inner.windows(2).all(|w| w[0].address == w[1].address)
            }
            _ => false,
        })
        .map(|s| s.values[i])
        .sum();
    assert!(
        under_clock_loop as f64 >= 0.9 * (pclock - leaf_only as f64),
        "only {} of {} ms of clock-loop's unwound samples reach clock_loop ({} ms leaf only)",
        under_clock_loop / 1_000_000,
        pclock as i64 / 1_000_000,
        leaf_only / 1_000_000
    );
    // Truncated samples: those whose walk started and stopped part way, at most 5 %; and those
    // that kept the interrupted instruction alone, bounded apart at 10 %. The second kind come
    // in bursts of 19-45 samples (76-180 ms, all in io-loop's `__libc_send`/`__libc_recv`) in
    // about one run in six here, and none in the others: the unwinder had no rule for that
    // address yet or its caches were busy (not explained further yet).
    let total = pa + pb + pio + pclock;
    let is_truncated = |s: &&diag_core::profile::Sample| {
        s.stack.last().is_some_and(|f| f.function == "[truncated]")
    };
    let is_leaf_only = |s: &&diag_core::profile::Sample| match s.stack.split_last() {
        Some((last, inner)) if last.function == "[truncated]" => {
            inner.windows(2).all(|w| w[0].address == w[1].address)
        }
        _ => false,
    };
    let walked_part_way: i64 = p
        .samples
        .iter()
        .filter(is_truncated)
        .filter(|s| !is_leaf_only(s))
        .map(|s| s.values[i])
        .sum();
    let leaf_only_all: i64 = p
        .samples
        .iter()
        .filter(is_leaf_only)
        .map(|s| s.values[i])
        .sum();
    assert!(
        walked_part_way as f64 <= 0.05 * total,
        "{} ms of samples truncated part way",
        walked_part_way / 1_000_000
    );
    assert!(
        leaf_only_all as f64 <= 0.10 * total,
        "{} ms of samples kept only the interrupted instruction",
        leaf_only_all / 1_000_000
    );
}
