//! Capturing the stack of a thread while it is blocked: a real-time signal sent to that thread
//! (`tgkill`), whose handler unwinds its own stack into the thread's preallocated slot.
//!
//! The handler allocates nothing, takes no blocking lock and only touches atomics, const
//! thread-locals and memory prepared beforehand. It unwinds with the heap sampler's cached
//! unwinder first ([`crate::stack::capture_interrupted`]): from the registers the kernel saved,
//! with rule caches and the module table made in normal context, stack reads bounds-checked,
//! and each frame's module checked with glibc's lock-free `_dl_find_object`. That path is
//! async-signal-safe and does not care what the thread was doing. When it cannot vouch for a
//! stack (no `_dl_find_object` before glibc 2.35, a thread whose stack bounds were not
//! looked up, code outside the known modules, its caches busy, other targets), the handler
//! falls back to `backtrace::trace_unsynchronized` (libgcc's `_Unwind_Backtrace`), which is
//! not re-entrant: if the signal lands while the same thread is itself inside libgcc's
//! unwinder (the heap sampler's fallback, a panic, `std::backtrace`), a nested unwind could see
//! libgcc's FDE cache half-updated. Two guards, both checked before that fallback; when either
//! trips, the handler skips (state `SKIPPED`, counted) and the watchdog retries on its next
//! scan, since a blocked poll is still blocked a few milliseconds later:
//!
//! 1. the heap sampler's per-thread busy flag (`alloc_state::thread_in_sampler`), set around every
//!    stack capture on the allocation path;
//! 2. the interrupted program counter: if it lies in the executable segment of `libgcc_s`
//!    (found once at install time from `_Unwind_Backtrace`'s address), the thread is inside
//!    the unwinder for some other reason. This guard is off when libgcc is linked statically
//!    (then only guard 1 applies) and on architectures other than x86_64 and aarch64.
//!
//! Either way the stack starts at the interrupted instruction: libgcc's stack is cut to it
//! (the handler's and the kernel trampoline's frames above it are dropped).
//!
//! This is the only file of `tasks/` with `unsafe`.

use std::sync::atomic::Ordering::*;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize};

use super::slots::{self, DONE, MAX_FRAMES, REQUESTED, SKIPPED, WRITING};

/// Signals that found the thread inside the unwinder and skipped (retried later).
pub(crate) static SKIPPED_IN_UNWINDER: AtomicU64 = AtomicU64::new(0);
/// Stacks the handler took with the cached unwinder.
pub(crate) static CAPTURED_CACHED: AtomicU64 = AtomicU64::new(0);
/// Stacks the handler took with libgcc (the cached unwinder could not vouch for them).
pub(crate) static CAPTURED_LIBGCC: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static UNWINDER_START: AtomicUsize = AtomicUsize::new(0);
static UNWINDER_END: AtomicUsize = AtomicUsize::new(0);

/// Why stack capture is unavailable, if it is.
pub(crate) fn unavailable_reason() -> Option<&'static str> {
    static REASON: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *REASON.get_or_init(install)
}

/// The kernel id of the calling thread.
pub(crate) fn current_tid() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as i32 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Asks thread `tid` (which owns `slot`) to capture its stack; false if the signal could not be
/// sent.
pub(crate) fn request(tid: i32) -> bool {
    if !INSTALLED.load(Acquire) || tid == 0 {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: tgkill only sends a signal; restricting it to our own process id means a
        // reused tid can at worst be another thread of ours, whose handler finds no request in
        // its slot and returns.
        let r =
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, SIGNAL.load(Relaxed)) };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(not(target_os = "linux"))]
fn install() -> Option<&'static str> {
    Some("stack capture of blocked threads needs Linux")
}

#[cfg(target_os = "linux")]
fn install() -> Option<&'static str> {
    let sig = libc::SIGRTMIN() + 6;
    if sig > libc::SIGRTMAX() {
        return Some("no free real-time signal");
    }
    find_unwinder_text();
    crate::stack::prepare_signals();
    // SAFETY: a zeroed sigaction is a valid "query" argument; we only read the old action.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reading the current disposition of `sig` with a valid out-pointer.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
        return Some("cannot read the signal disposition");
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Some("the real-time signal diag uses (SIGRTMIN+6) already has a handler");
    }
    // SAFETY: zero is a valid initial sigaction; every field we rely on is set below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler as *const () as usize;
    // No SA_ONSTACK: the unwinder needs more stack than a minimal alternate signal stack has.
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: act.sa_mask is a valid sigset_t owned by us.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    SIGNAL.store(sig, Relaxed);
    // SAFETY: installing a handler that is async-signal-safe (see `handler`).
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
        return Some("cannot install the signal handler");
    }
    INSTALLED.store(true, Release);
    None
}

/// Finds the executable segment of the shared object holding `_Unwind_Backtrace` (libgcc_s).
#[cfg(target_os = "linux")]
fn find_unwinder_text() {
    unsafe extern "C" {
        fn _Unwind_Backtrace();
    }
    let addr = _Unwind_Backtrace as *const () as usize;
    // SAFETY: zeroed Dl_info is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr reads the loader's tables for a valid code address.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0
        || info.dli_fname.is_null()
    {
        return;
    }
    // SAFETY: dladdr returned a NUL-terminated file name owned by the loader.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    if !name.to_bytes().windows(8).any(|w| w == b"libgcc_s") {
        return; // statically linked unwinder: the range would be the whole program
    }
    let range = crate::stack::segment_of(addr).map(|s| (s.range.start, s.range.end));
    if let Some((s, e)) = range {
        UNWINDER_START.store(s, Relaxed);
        UNWINDER_END.store(e, Release);
    }
}

/// The interrupted instruction's address, from the handler's context.
#[cfg(target_os = "linux")]
fn interrupted_pc(ctx: *mut libc::c_void) -> Option<usize> {
    if ctx.is_null() {
        return None;
    }
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid ucontext_t as the third
    // argument, live for the duration of the handler.
    let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
    #[cfg(target_arch = "x86_64")]
    return Some(uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize);
    #[cfg(target_arch = "aarch64")]
    return Some(uc.uc_mcontext.pc as usize);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = uc;
        None
    }
}

/// True if the interrupted instruction is inside libgcc's unwinder.
#[cfg(target_os = "linux")]
fn pc_in_unwinder(pc: Option<usize>) -> bool {
    let end = UNWINDER_END.load(Acquire);
    end != 0 && pc.is_some_and(|pc| (UNWINDER_START.load(Relaxed)..end).contains(&pc))
}

/// Cuts a libgcc stack taken inside the handler so that it starts at the interrupted
/// instruction `pc` (libgcc reports the interrupted frame's exact address); unchanged if `pc`
/// is not in it. Returns the new length.
#[cfg(target_os = "linux")]
fn from_interrupted(buf: &mut [usize], n: usize, pc: Option<usize>) -> usize {
    match pc.and_then(|pc| buf[..n].iter().position(|&ip| ip == pc)) {
        Some(at) => {
            buf.copy_within(at..n, 0);
            n - at
        }
        None => n,
    }
}

/// The signal handler: async-signal-safe (atomics, a const thread-local, the unwinder under the
/// guards described at the top of this file).
#[cfg(target_os = "linux")]
extern "C" fn handler(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno; saved and restored so the
    // interrupted code never sees our syscalls' errno.
    let errno = unsafe { *libc::__errno_location() };
    capture_here(ctx);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

#[cfg(target_os = "linux")]
fn capture_here(ctx: *mut libc::c_void) {
    let Ok(i) = slots::MY_SLOT.try_with(std::cell::Cell::get) else {
        return;
    };
    let Some(slot) = slots::SLOTS.get(i as usize) else {
        return;
    };
    if slot
        .capture
        .compare_exchange(REQUESTED, WRITING, Acquire, Relaxed)
        .is_err()
    {
        return;
    }
    if slot.word.load(Acquire) != slot.capture_word.load(Relaxed) {
        slot.capture.store(SKIPPED, Release); // that poll has ended
        return;
    }
    let mut buf = [0usize; MAX_FRAMES];
    // SAFETY: `ctx` is this running handler's context.
    let n = match unsafe { crate::stack::capture_interrupted(ctx, &mut buf) } {
        Some(n) => {
            CAPTURED_CACHED.fetch_add(1, Relaxed);
            n
        }
        None => {
            let pc = interrupted_pc(ctx);
            if crate::alloc_state::thread_in_sampler() || pc_in_unwinder(pc) {
                SKIPPED_IN_UNWINDER.fetch_add(1, Relaxed);
                slot.capture.store(SKIPPED, Release);
                return;
            }
            let mut n = 0;
            // SAFETY: not re-entrant with another libgcc unwind on this thread (guards above);
            // the closure only writes into the stack buffer.
            unsafe {
                crate::stack::walk_stack(|ip| {
                    buf[n] = ip;
                    n += 1;
                    n < MAX_FRAMES
                });
            }
            CAPTURED_LIBGCC.fetch_add(1, Relaxed);
            from_interrupted(&mut buf, n, pc)
        }
    };
    for (to, from) in slot.frames.iter().zip(&buf[..n]) {
        to.store(*from, Relaxed);
    }
    slot.depth.store(n, Relaxed);
    slot.capture.store(DONE, Release);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::from_interrupted;

    #[test]
    fn libgcc_stacks_start_at_the_interrupted_instruction() {
        let mut buf = [1, 2, 3, 40, 50, 60, 0, 0];
        assert_eq!(from_interrupted(&mut buf, 6, Some(40)), 3);
        assert_eq!(buf[..3], [40, 50, 60]);
        let mut buf = [1, 2, 3, 0];
        assert_eq!(
            from_interrupted(&mut buf, 3, Some(9)),
            3,
            "pc not found: unchanged"
        );
        assert_eq!(from_interrupted(&mut buf, 3, None), 3);
        assert_eq!(buf[..3], [1, 2, 3]);
    }
}
