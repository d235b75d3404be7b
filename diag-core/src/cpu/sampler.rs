//! diag's own CPU sampler: a CPU-time timer per thread, a `SIGPROF` handler that unwinds the
//! interrupted stack with the cached unwinder into a preallocated ring, and a thread of
//! diag's (`diag-cpu`) that arms timers for new threads and drains the ring.
//!
//! Hand-written rather than pprof-rs's sampler, for two measured defects:
//! pprof-rs drops every sample whose interrupted instruction lies in libc, the vDSO, the
//! loader or libgcc (its blocklist, needed because its handler unwinds with libgcc), which on
//! an I/O-bound server is 75-90 % of the process's CPU; and it arms one process-wide
//! `ITIMER_PROF`, which under-samples busy multi-threaded processes (Go moved to per-thread
//! timers for the same reason, golang/go#35057). The handler here unwinds with the cached
//! unwinder (`crate::stack`), which is async-signal-safe wherever the thread was: in
//! `malloc`, in a syscall wrapper, in the vDSO, inside the heap sampler's own unwind (the
//! handler takes another rule cache; if all are busy it keeps the interrupted instruction and
//! marks the stack truncated) or the loader (it never calls into the loader but
//! `_dl_find_object`, which is lock-free).
//!
//! # Timers (`timers.rs`)
//! For every thread in `/proc/self/task` a POSIX timer on that thread's CPU-time clock
//! (`timer_create` with the thread's clock id, `SIGEV_THREAD_ID` to that thread), firing every
//! `1/frequency` s of the thread's own CPU time. The kernel checks CPU timers at its tick
//! (often 250 Hz), so a timer due more often fires late with an overrun count: each sample
//! weighs `1 + overrun` periods, and the profile's CPU total stays right at any frequency.
//! Threads that start during a profile are found within [`SCAN_EVERY`] by re-listing the
//! directory; timers of threads that ended are deleted then. Until a thread has its own
//! timer, a process-wide one covers it, as in Go: `ITIMER_PROF` runs at the same frequency,
//! and the handler keeps its signals (`SI_KERNEL`) only on threads that have no timer of their
//! own (looked up in a lock-free table of armed thread ids), so no CPU is counted twice and a
//! thread that lives for 20 ms is not lost.
//!
//! # The handler
//! Async-signal-safe: atomics, the preallocated ring, the cached unwinder (try-locks only, no
//! allocation), `gettid` and `prctl(PR_GET_NAME)`. It saves and restores `errno`. A sample
//! that finds its ring slot still full is counted as lost, never waited for.
//!
//! # Stopping
//! `RUNNING` is cleared, every timer deleted (the kernel drops a deleted timer's pending
//! signal), then the stop waits for handlers still running (`INFLIGHT`) before the ring is
//! freed. `SIGPROF` is left ignored afterwards, not reset to its default action (which would
//! kill the process if a stray one arrived).

use std::collections::HashMap;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::timers::{Timers, is_armed, set_process_timer};
use crate::error::{Error, ErrorKind, Result};

/// Frames kept per CPU sample (innermost first); deeper stacks lose their outermost frames
/// and are marked truncated.
pub(crate) const MAX_DEPTH: usize = 128;
/// How often the ring is drained.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// How often `/proc/self/task` is listed for new threads.
pub(crate) const SCAN_EVERY: Duration = Duration::from_millis(100);
/// Distinct (thread, stack) pairs kept in one profile; samples of further stacks are counted
/// as lost (bounds diag's memory: ~0.5 KiB a stack).
const MAX_STACKS: usize = 32 * 1024;

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

/// One sample in the ring, written by the handler, read by the drain.
struct Slot {
    state: AtomicU8,
    depth: AtomicUsize,
    complete: AtomicBool,
    weight: AtomicU64,
    tid: AtomicI32,
    /// The instrumented poll (route or task) running when the sample was taken, or NO_POLL.
    poll: AtomicU32,
    name: [AtomicU8; 16],
    frames: [AtomicUsize; MAX_DEPTH],
}

const NO_POLL: u32 = u32::MAX;

impl Slot {
    fn new() -> Slot {
        Slot {
            state: AtomicU8::new(FREE),
            depth: AtomicUsize::new(0),
            complete: AtomicBool::new(false),
            weight: AtomicU64::new(0),
            tid: AtomicI32::new(0),
            poll: AtomicU32::new(NO_POLL),
            name: [const { AtomicU8::new(0) }; 16],
            frames: [const { AtomicUsize::new(0) }; MAX_DEPTH],
        }
    }
}

/// The ring the handler writes to (null when no profile runs) and its length.
static RING: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static RING_LEN: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Handlers running now (the ring is not freed until none is).
static INFLIGHT: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Periods lost because the ring slot was still full.
static LOST: AtomicU64 = AtomicU64::new(0);
/// Samples whose stack could not be unwound at all (only the interrupted instruction kept).
static UNWOUND_NONE: AtomicU64 = AtomicU64::new(0);

/// A sampled stack with its thread's name and the poll it was in.
pub(crate) type StackKey = (String, Option<u32>, Vec<usize>, bool);

/// What one profile gathered, per thread name and stack.
#[derive(Default)]
pub(crate) struct Gathered {
    /// `(thread name, poll id, frames innermost first, complete)` -> (samples, periods); the
    /// poll id names the route or task being polled (`tasks::poll_label`).
    pub(crate) stacks: HashMap<StackKey, (u64, u64)>,
    /// Periods lost: ring full, or a new stack past the cap.
    pub(crate) lost: u64,
    /// Samples kept with a stack unwound only in part.
    pub(crate) truncated: u64,
    /// Samples with only the interrupted instruction (nothing unwound).
    pub(crate) leaf_only: u64,
    /// Threads that got a timer.
    pub(crate) threads: usize,
    /// Timers that could not be created (thread gone in between, limits).
    pub(crate) timer_errors: usize,
    /// The process's CPU time (user + system) from start to stop, in nanoseconds.
    pub(crate) process_cpu_nanos: u64,
    /// CPU time of the sampler's own thread (`diag-cpu`: timers, drains), in nanoseconds.
    pub(crate) sampler_cpu_nanos: u64,
}

/// A running sampler: the `diag-cpu` thread and what it gathers.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Gathered>>,
}

impl Sampler {
    /// Installs the handler, arms a timer on every thread at `frequency` Hz of CPU time, and
    /// starts the `diag-cpu` thread. The caller guarantees one sampler at a time.
    pub(crate) fn start(frequency: u32) -> Result<Sampler> {
        install_handler()?;
        crate::stack::prepare_cpu_sampler();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // A drain interval's worth of samples at full load, four times over.
        let len = (frequency as usize * cpus * 4 * DRAIN_EVERY.as_millis() as usize / 1000)
            .clamp(256, 16 * 1024);
        let ring: Box<[Slot]> = {
            let _own = crate::alloc_state::IgnoreAllocs::new();
            (0..len).map(|_| Slot::new()).collect()
        };
        LOST.store(0, Relaxed);
        UNWOUND_NONE.store(0, Relaxed);
        NEXT.store(0, Relaxed);
        RING_LEN.store(len, Relaxed);
        RING.store(Box::into_raw(ring).cast::<Slot>(), Release);
        RUNNING.store(true, SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_nanos(1_000_000_000 / u64::from(frequency.max(1)));
        let spawned = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("diag-cpu".into())
                .spawn(move || run(period, &stop))
        };
        match spawned {
            Ok(t) => Ok(Sampler {
                stop,
                thread: Some(t),
            }),
            Err(e) => {
                shut_down(&mut Timers::default());
                Err(Error::with_source(
                    ErrorKind::Io,
                    format!("cannot start the CPU sampler's thread: {e}"),
                    e,
                ))
            }
        }
    }

    /// Stops sampling and returns what was gathered.
    pub(crate) fn finish(mut self) -> Gathered {
        self.stop.store(true, Release);
        let Some(t) = self.thread.take() else {
            return Gathered::default();
        };
        t.thread().unpark();
        t.join().unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Release);
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The `diag-cpu` thread: arms timers, drains the ring, and at the end stops everything.
fn run(period: Duration, stop: &AtomicBool) -> Gathered {
    let _own = crate::alloc_state::IgnoreAllocs::new();
    let cpu_at_start = process_cpu_nanos();
    let mut timers = Timers::new(period);
    let mut out = Gathered::default();
    set_process_timer(period);
    let mut last_scan: Option<Instant> = None;
    loop {
        if last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            if timers.scan() {
                crate::stack::refresh_stack_mappings();
            }
            last_scan = Some(Instant::now());
        }
        drain(&mut out);
        if stop.load(Acquire) {
            break;
        }
        std::thread::park_timeout(DRAIN_EVERY);
        if stop.load(Acquire) {
            break;
        }
    }
    out.process_cpu_nanos = process_cpu_nanos().saturating_sub(cpu_at_start);
    out.threads = timers.armed_ever;
    out.timer_errors = timers.errors;
    shut_down(&mut timers);
    drain(&mut out);
    out.lost += LOST.load(Relaxed);
    out.leaf_only = UNWOUND_NONE.load(Relaxed);
    free_ring();
    out.sampler_cpu_nanos = thread_cpu_nanos();
    out
}

/// Moves every written slot of the ring into `out`.
fn drain(out: &mut Gathered) {
    let (ptr, len) = (RING.load(Acquire), RING_LEN.load(Relaxed));
    if ptr.is_null() {
        return;
    }
    // SAFETY: the ring is freed only by `free_ring`, on this same thread, after the last
    // drain; `len` is its length.
    let ring = unsafe { std::slice::from_raw_parts(ptr, len) };
    for slot in ring {
        if slot.state.load(Acquire) != READY {
            continue;
        }
        let depth = slot.depth.load(Relaxed).min(MAX_DEPTH);
        let frames: Vec<usize> = slot.frames[..depth]
            .iter()
            .map(|f| f.load(Relaxed))
            .collect();
        let complete = slot.complete.load(Relaxed);
        let weight = slot.weight.load(Relaxed);
        let name: Vec<u8> = slot
            .name
            .iter()
            .map(|b| b.load(Relaxed))
            .take_while(|&b| b != 0)
            .collect();
        let tid = slot.tid.load(Relaxed);
        let poll = Some(slot.poll.load(Relaxed)).filter(|&p| p != NO_POLL);
        slot.state.store(FREE, Release);
        let name = if name.is_empty() {
            format!("thread-{tid}")
        } else {
            String::from_utf8_lossy(&name).into_owned()
        };
        if !complete {
            out.truncated += 1;
        }
        let key = (name, poll, frames, complete);
        if out.stacks.len() >= MAX_STACKS && !out.stacks.contains_key(&key) {
            out.lost += weight;
            continue;
        }
        let e = out.stacks.entry(key).or_default();
        e.0 += 1;
        e.1 += weight;
    }
}

/// Stops the handler from sampling, deletes every timer and waits for running handlers.
fn shut_down(timers: &mut Timers) {
    RUNNING.store(false, SeqCst);
    timers.delete_all();
    let deadline = Instant::now() + Duration::from_secs(2);
    while INFLIGHT.load(SeqCst) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    ignore_sigprof();
}

/// Frees the ring once no handler can be using it (else leaks it: a handler stuck for
/// seconds inside the ring is not something to free memory under).
fn free_ring() {
    let len = RING_LEN.load(Relaxed);
    let ptr = RING.swap(std::ptr::null_mut(), SeqCst);
    if ptr.is_null() || INFLIGHT.load(SeqCst) != 0 {
        return;
    }
    let _own = crate::alloc_state::IgnoreAllocs::new();
    // SAFETY: `ptr` and `len` came from `Box::into_raw` of a boxed slice in `start`; no
    // handler is running and none can load the pointer again (it is null now).
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// The process's user + system CPU time in nanoseconds (`/proc/self/stat`).
pub(crate) fn process_cpu_nanos() -> u64 {
    let _own = crate::alloc_state::IgnoreAllocs::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15: 11 and 12 after the state.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (ticks(11) + ticks(12)).saturating_mul(1_000_000_000 / hz)
}

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

static HANDLER_INSTALLED: Mutex<bool> = Mutex::new(false);

/// Installs the `SIGPROF` handler unless another one (another profiler) is there.
fn install_handler() -> Result<()> {
    let mut installed = HANDLER_INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: a zeroed sigaction is a valid out-parameter for the query.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reading SIGPROF's disposition into `old`.
    if unsafe { libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut old) } != 0 {
        return Err(Error::new(
            ErrorKind::Io,
            "cannot read SIGPROF's disposition",
        ));
    }
    let ours = handler as *const () as usize;
    if ![libc::SIG_DFL, libc::SIG_IGN, ours].contains(&old.sa_sigaction) {
        return Err(Error::new(
            ErrorKind::Busy,
            "SIGPROF already has a handler (another CPU profiler in this process?)",
        ));
    }
    // SAFETY: zero is a valid initial sigaction; the fields used are set below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = ours;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: act.sa_mask is ours to initialise.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: installs `handler`, which is async-signal-safe (see the module docs).
    if unsafe { libc::sigaction(libc::SIGPROF, &act, std::ptr::null_mut()) } != 0 {
        return Err(Error::new(
            ErrorKind::Io,
            "cannot install the SIGPROF handler",
        ));
    }
    *installed = true;
    Ok(())
}

/// Leaves SIGPROF ignored after a profile (see the module docs).
fn ignore_sigprof() {
    let mut installed = HANDLER_INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: zero is a valid initial sigaction.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = libc::SIG_IGN;
    // SAFETY: act.sa_mask is ours to initialise; setting SIG_IGN for SIGPROF.
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGPROF, &act, std::ptr::null_mut());
    }
    *installed = false;
}

/// The kernel's `siginfo_t` head for a POSIX timer signal.
#[repr(C)]
struct TimerInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    timer_id: libc::c_int,
    overrun: libc::c_int,
}

/// `si_code` of a POSIX timer's signal.
const SI_TIMER: libc::c_int = -2;
/// `si_code` of a signal the kernel sent itself (`ITIMER_PROF`).
const SI_KERNEL: libc::c_int = 0x80;

/// The `SIGPROF` handler. Async-signal-safe: see the module docs.
extern "C" fn handler(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno; saved and restored so the
    // interrupted code never sees the handler's syscalls' errno.
    let errno = unsafe { *libc::__errno_location() };
    INFLIGHT.fetch_add(1, SeqCst);
    if RUNNING.load(SeqCst) && !info.is_null() {
        // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo; a timer
        // signal's has the timer layout (checked by its code).
        let ti = unsafe { &*info.cast::<TimerInfo>() };
        if ti.code == SI_TIMER {
            sample(1 + u64::from(ti.overrun.max(0) as u32), ctx);
        } else if ti.code == SI_KERNEL && !is_armed(gettid()) {
            sample(1, ctx);
        }
    }
    INFLIGHT.fetch_sub(1, SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Records one sample of `weight` periods: the interrupted stack, thread id and name.
fn sample(weight: u64, ctx: *mut libc::c_void) {
    let (ptr, len) = (RING.load(Acquire), RING_LEN.load(Relaxed));
    if ptr.is_null() || len == 0 {
        return;
    }
    // SAFETY: the ring stays allocated while any handler is in flight (INFLIGHT, counted
    // by our caller before it saw RUNNING), and `len` is its length.
    let ring = unsafe { std::slice::from_raw_parts(ptr, len) };
    let slot = &ring[NEXT.fetch_add(1, Relaxed) % len];
    if slot
        .state
        .compare_exchange(FREE, WRITING, Acquire, Relaxed)
        .is_err()
    {
        LOST.fetch_add(weight, Relaxed);
        return;
    }
    let mut buf = [0usize; MAX_DEPTH];
    // SAFETY: `ctx` is this running handler's context.
    let (mut n, mut complete) =
        unsafe { crate::stack::capture_interrupted_partial(ctx, &mut buf) }.unwrap_or((0, false));
    if n == 0 {
        // Nothing unwound: keep the interrupted instruction alone.
        buf[0] = interrupted_pc(ctx);
        n = usize::from(buf[0] != 0);
        complete = false;
        UNWOUND_NONE.fetch_add(1, Relaxed);
    }
    for (to, from) in slot.frames.iter().zip(&buf[..n]) {
        to.store(*from, Relaxed);
    }
    slot.depth.store(n, Relaxed);
    slot.complete.store(complete, Relaxed);
    slot.weight.store(weight, Relaxed);
    slot.tid.store(gettid(), Relaxed);
    #[cfg(feature = "server")]
    let poll = crate::tasks::running_poll();
    #[cfg(not(feature = "server"))]
    let poll: Option<u32> = None;
    slot.poll.store(poll.unwrap_or(NO_POLL), Relaxed);
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL included) into `name`.
    unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    for (to, from) in slot.name.iter().zip(name) {
        to.store(from, Relaxed);
    }
    slot.state.store(READY, Release);
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The interrupted instruction's address from the handler's context (0 if unknown).
fn interrupted_pc(ctx: *mut libc::c_void) -> usize {
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid ucontext_t, live for the
    // duration of the handler.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    #[cfg(target_arch = "x86_64")]
    return uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    #[cfg(target_arch = "aarch64")]
    return uc.uc_mcontext.pc as usize;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = uc;
        0
    }
}
