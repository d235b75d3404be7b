//! CPU profiling: on-CPU stacks sampled by diag's own `SIGPROF` sampler, served as pprof
//! profiles, folded stacks or flamegraphs.
//!
//! # How a sample is taken, and why it cannot deadlock or crash the host
//!
//! Every thread of the process gets a POSIX timer on its own CPU-time clock; each time a
//! thread has used `1/frequency` s of CPU the kernel sends it `SIGPROF`, and the handler
//! unwinds the interrupted stack into a preallocated ring (`sampler.rs` has the details). Two
//! things can go wrong in a signal handler that unwinds (tikv/pprof-rs#36, gperftools' long
//! history):
//!
//! 1. **Deadlock.** The interrupted code holds a lock that the unwinder needs: the dynamic
//!    loader's lock inside `dl_iterate_phdr`, libgcc's object list while it registers frames,
//!    `malloc`'s arena lock if anything in the handler allocates.
//! 2. **Crash.** The unwinder starts from a program counter whose unwind information is missing
//!    or wrong (hand-written assembly, the vDSO, the loader's trampolines) and reads garbage.
//!
//! pprof-rs, which diag used before, avoids both with a blocklist: a sample whose interrupted
//! instruction lies in libc, the vDSO, the loader or libgcc is dropped. On a network server
//! that is most of the CPU (syscall wrappers, `memcpy`, `malloc`): measured, 11-25 % of the
//! process's CPU reached the profile. diag's sampler keeps those samples instead, because
//! its unwinder needs none of those locks:
//!
//! - **The cached unwinder** (`crate::stack`): DWARF CFI read in place from the loaded
//!   modules, evaluated with fixed-size state; rule caches made before the profile starts
//!   and taken with try-locks (all busy: the sample keeps what it has, marked truncated);
//!   each frame's module checked with glibc's lock-free `_dl_find_object`, never the
//!   loader's lock; stack reads bounds-checked against the interrupted thread's stack (its
//!   own record, or the process's stack mappings read by diag's thread beforehand). It
//!   unwinds through libc's syscall wrappers, `malloc`, `memcpy` and the vDSO from their CFI.
//!   libgcc's unwinder is never called from this handler.
//! - **Nothing allocates or blocks in the handler**: atomics, the ring, `gettid` and
//!   `prctl(PR_GET_NAME)` for the thread's name.
//! - **A stack that cannot be unwound whole is still counted**: the frames found, then a
//!   `[truncated]` frame; the profile's comments count such samples and any lost to a full
//!   ring, and give the process's CPU time over the window next to the profile's total, so
//!   the capture rate is there to read.
//! - **Symbolization happens after the timers are deleted**, on diag's thread, through the
//!   same symbolizer as heap stacks.
//!
//! `diag-core/tests/cpu_soak.rs` profiles at 1000 Hz a multi-threaded service that allocates
//! through `DiagAlloc` sampling every 4 KiB (so samples land inside `malloc` and inside the
//! heap sampler's own unwind), does syscalls, blocks a thread in a syscall for seconds and
//! serves requests under the blocking watchdog, with heap snapshots symbolizing in between:
//! no hang, no failed request.
//!
//! # Output
//!
//! Frames innermost first, starting at the interrupted instruction. The values are periods
//! (`samples`) and CPU time (`cpu`, nanoseconds); a timer that fired late (the kernel checks
//! CPU timers at its tick, often 250 Hz) weighs its overruns too, so the CPU total is right
//! at any frequency. Each sample carries a `thread` label with the thread's name
//! (`tokio-runtime-worker`, the blocking pool's name, or the user's; diag's own threads are
//! `diag-*`); [`thread_rooted`] puts it as the root frame so folded stacks and flamegraphs
//! split by thread.
//!
//! The protobuf types are prost derives in `profile/proto.rs`; the `pprof` crate is not used.

mod threads;

#[cfg(feature = "cpu")]
mod convert;
#[cfg(all(feature = "cpu", target_os = "linux"))]
mod sampler;
#[cfg(feature = "cpu")]
mod session;
#[cfg(all(feature = "cpu", target_os = "linux"))]
mod timers;

pub use crate::names::{ROUTE_LABEL, TASK_LABEL, THREAD_LABEL};
#[cfg(feature = "cpu")]
pub use convert::TRUNCATED_FRAME;
pub use threads::thread_rooted;

#[cfg(feature = "cpu")]
pub use session::{Session, max_seconds, set_max_seconds};

pub use crate::defaults::{DEFAULT_FREQUENCY, DEFAULT_MAX_SECONDS, DEFAULT_SECONDS};
/// Highest sampling frequency accepted, in Hz. (The kernel's tick, often 250 Hz, caps what is
/// actually delivered per CPU-second.)
pub const MAX_FREQUENCY: u32 = 1000;
