//! CPU profiling: on-CPU stacks sampled with a `SIGPROF` timer (pprof-rs), served as pprof
//! profiles, folded stacks or flamegraphs.
//!
//! # How a sample is taken, and why it cannot deadlock or crash the host
//!
//! pprof-rs arms `setitimer(ITIMER_PROF)` at the requested frequency; the kernel sends
//! `SIGPROF` to whichever thread is on CPU, and the signal handler unwinds that thread's stack
//! into a preallocated buffer. Two things can go wrong in a signal handler that unwinds
//! (tikv/pprof-rs#36, gperftools' long history):
//!
//! 1. **Deadlock.** The interrupted code holds a lock that the unwinder needs: the dynamic
//!    loader's lock inside `dl_iterate_phdr`, libgcc's object list while it registers frames,
//!    `malloc`'s arena lock if anything in the handler allocates. diag's own heap sampler makes
//!    this likely rather than theoretical: it unwinds with `backtrace::trace_unsynchronized`
//!    (libgcc's `_Unwind_Backtrace`) inside sampled allocations, constantly.
//! 2. **Crash.** The unwinder starts from a program counter whose unwind information is missing
//!    or wrong (hand-written assembly, the vDSO, the loader's trampolines) and reads garbage.
//!
//! The choices made here, deliberately:
//!
//! - **Unwinder: pprof-rs's default, backtrace-rs over libgcc's `_Unwind_Backtrace`** (DWARF
//!   CFI). Not `frame-pointer`: user code is built without frame pointers, and that unwinder
//!   drops the interrupted (leaf) frame, so the hottest function vanishes from the graph. Not
//!   `framehop-unwinder`: it would bring a second copy of `object` and `memmap2` for no gain on
//!   glibc >= 2.35 with libgcc >= 12, where libgcc finds FDEs with `_dl_find_object`, which
//!   is lock-free and async-signal-safe (no `dl_iterate_phdr`, no loader lock, no `malloc`).
//!   pprof-rs unwinds once before arming the timer, so libgcc's one-time initialisation
//!   (`pthread_once`) never runs inside the handler.
//! - **Blocklist: [`BLOCKLIST`]** = `libc.so`, `libpthread`, `libgcc_s`, `ld-linux`,
//!   `linux-vdso`, `libdl`, `libunwind`. pprof-rs drops a sample when the *interrupted program
//!   counter* lies in one of these libraries. That covers every point where the interrupted
//!   code can hold a lock an unwinder needs or sits in code whose CFI is unreliable: inside
//!   `_Unwind_Backtrace` / `_Unwind_Find_FDE` (libgcc_s: the heap sampler's unwind), inside
//!   `_dl_find_object` / `dl_iterate_phdr` (ld-linux / libc), inside `pthread_mutex_lock` or
//!   `malloc` (libc), inside `clock_gettime` (vDSO). When the heap sampler's unwind is
//!   interrupted while running its per-frame callback (our own code), libgcc holds no lock and
//!   keeps its state on the stack, so a nested unwind from the handler is safe.
//!   The price: CPU time spent *in* those libraries (memcpy, malloc, syscalls' user-side
//!   wrappers) is not sampled; the time of their Rust callers is.
//! - **Nothing allocates or locks in the handler.** pprof-rs's handler only `try_write`s its
//!   profiler lock (a busy lock drops the sample), writes into a fixed buffer (spilling to a
//!   temporary file with `write(2)`), and reads the thread name with `prctl`.
//! - **Symbolization happens off the signal handler and after the timer is disarmed**: a
//!   session takes pprof-rs's *unresolved* report (raw addresses), stops the profiler, and only
//!   then resolves addresses ([`Session::finish`]), on a diag thread whose allocations are not
//!   sampled.
//!
//! `diag-core/tests/cpu_soak.rs` profiles a multi-threaded service that allocates through
//! `DiagAlloc` sampling every 4 KiB (so the heap unwinder runs constantly), does syscalls and
//! serves requests, under a watchdog: no hang, no failed request.
//!
//! # Output
//!
//! Frames innermost first; the profiler's own frames (the signal handler, the unwinder, the
//! signal trampoline) are removed. Each sample carries a `thread` label with the thread's name
//! (`tokio-runtime-worker`, the blocking pool's name, or the user's); [`thread_rooted`] puts it
//! as the root frame so folded stacks and flamegraphs split by thread.

mod threads;

#[cfg(feature = "cpu")]
mod convert;
#[cfg(feature = "cpu")]
mod session;

pub use threads::{THREAD_LABEL, thread_rooted};

#[cfg(feature = "cpu")]
pub use session::{Session, max_seconds, set_max_seconds};

/// Default profile length in seconds (Go's).
pub const DEFAULT_SECONDS: u64 = 30;
/// Default cap on the profile length a request may ask for, in seconds.
pub const DEFAULT_MAX_SECONDS: u64 = 120;
/// Default sampling frequency in Hz (99, not 100, to avoid lockstep with periodic work).
pub const DEFAULT_FREQUENCY: u32 = 99;
/// Highest sampling frequency accepted, in Hz. (The kernel's tick, often 250 Hz, caps what is
/// actually delivered per CPU-second.)
pub const MAX_FREQUENCY: u32 = 1000;
/// Libraries in which an interrupted program counter makes the handler drop the sample
/// instead of unwinding (matched as substrings of the loaded object's path).
pub const BLOCKLIST: &[&str] = &[
    "libc.so",
    "libpthread",
    "libgcc_s",
    "ld-linux",
    "linux-vdso",
    "libdl",
    "libunwind",
];
