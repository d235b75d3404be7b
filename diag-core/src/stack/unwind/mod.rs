//! Stack capture for sampled allocations.
//!
//! Two unwinders, both allocation-free on the common path and lock-free towards the host:
//!
//! - **cached** (the default on x86-64 Linux): DWARF CFI from the loaded modules'
//!   `.eh_frame_hdr`/`.eh_frame`, read in place, evaluated by `framehop`. Each return
//!   address's unwind step (new stack pointer as an offset, where the frame pointer was
//!   saved) is learnt from framehop once and kept in a per-address table
//!   ([`steps`]). After warm-up a frame costs a table probe and two or three stack reads
//!   (about 75 instructions) instead of libgcc's FDE search and CFI interpretation (about
//!   2,000 instructions a frame here) or framehop's own rule cache (about 230; see
//!   BENCHMARKS.md).
//! - **libgcc** (`_Unwind_Backtrace` through `backtrace::trace_unsynchronized`): the fallback
//!   whenever the cached unwinder cannot vouch for a whole stack, and the only unwinder on
//!   other targets.
//!
//! The cached unwinder gives up (and libgcc takes the stack) when: the thread's stack bounds
//! are unknown or the stack pointer is outside them (custom stacks); a frame's return address
//! is outside every known module (JIT code, a library loaded since the last scan); unwinding
//! ends in an error rather than at the CFI's end-of-stack mark; another thread is rescanning
//! the module list; or all its rule caches are in use. Every give-up is counted
//! ([`stats`]). Stack reads are bounds-checked against the current thread's stack, so a wrong
//! rule yields a fallback, never a fault.
//!
//! The module list is rebuilt (`dl_iterate_phdr`) when the loader's add/remove counters move,
//! checked at each capture, so unwind data of an unloaded library is never read.
//!
//! The blocking watchdog's signal handler uses the same unwinder
//! ([`capture_interrupted`]), async-signal-safely: its evaluation state is fixed-size (no
//! allocation while unwinding), rule caches and the thread's stack bounds are made in normal
//! context beforehand, and instead of the loader's counters (`dl_iterate_phdr` takes the
//! loader's lock) each frame's module is checked with `_dl_find_object`, which is lock-free.

#[cfg(target_os = "linux")]
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use crate::defaults::MAX_FRAMES;
use crate::wire::UnwindStats;

/// Which unwinder captures the stacks of sampled allocations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unwinder {
    /// Cached DWARF unwinding: steps learnt per return address in front of framehop, with
    /// libgcc as the fallback; libgcc alone where the cached unwinder is not built (targets
    /// other than x86-64 Linux).
    #[default]
    Cached,
    /// libgcc's `_Unwind_Backtrace` for every stack.
    Libgcc,
}

impl Unwinder {
    const ALL: [Unwinder; 2] = [Unwinder::Cached, Unwinder::Libgcc];

    /// Its name, as `DIAG_HEAP_UNWINDER` and `/debug/heap/stats` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Unwinder::Cached => "cached",
            Unwinder::Libgcc => "libgcc",
        }
    }
}

static UNWINDER: AtomicU8 = AtomicU8::new(0);
static CACHED: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Picks the unwinder for stacks captured from now on (default [`Unwinder::Cached`]).
pub fn set_unwinder(u: Unwinder) {
    UNWINDER.store(u as u8, Relaxed);
}

/// The unwinder in use.
pub fn unwinder() -> Unwinder {
    Unwinder::ALL[usize::from(UNWINDER.load(Relaxed)) % Unwinder::ALL.len()]
}

/// How the stacks captured so far were taken.
pub fn stats() -> UnwindStats {
    UnwindStats {
        unwinder: std::borrow::Cow::Borrowed(unwinder().name()),
        cached: CACHED.load(Relaxed),
        fallbacks: FALLBACKS.load(Relaxed),
        ..rule_stats()
    }
}

/// The rule caches' hit and miss counts (the other fields default).
fn rule_stats() -> UnwindStats {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let (rule_hits, rule_misses) = cached::rule_stats();
        UnwindStats {
            rule_hits,
            rule_misses,
            ..UnwindStats::default()
        }
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    UnwindStats::default()
}

/// Walks the current stack with libgcc, innermost frame first, passing each return address to
/// `push` until it returns false or the stack ends. Allocates nothing and takes no lock, so
/// the blocking watchdog's signal handler uses it too.
///
/// # Safety
/// Must not re-enter the unwinder on this thread (`backtrace::trace_unsynchronized`): callers
/// guard against it (the sampler's busy flag; the signal handler's re-entry checks).
#[inline(always)]
pub(crate) unsafe fn walk(mut push: impl FnMut(usize) -> bool) {
    // SAFETY: forwarded to the caller's contract above.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            ip != 0 && push(ip)
        });
    }
}

/// The executable segment of a loaded image that holds an address.
#[cfg(target_os = "linux")]
pub(crate) struct Segment {
    /// The image's file as the loader names it; `None` for the main program.
    pub(crate) file: Option<std::path::PathBuf>,
    /// The load bias: an address in the image's file plus this is its address in memory.
    pub(crate) bias: usize,
    /// The segment's address range in memory.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) range: std::ops::Range<usize>,
}

/// The executable segment holding `addr` among the images the loader has mapped. Normal
/// context only (it allocates under the loader's lock).
#[cfg(target_os = "linux")]
pub(crate) fn segment_of(addr: usize) -> Option<Segment> {
    let mut found = None;
    each_image(|info| {
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr has dlpi_phnum entries.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                let range = start..start + ph.p_memsz as usize;
                if range.contains(&addr) {
                    let file = (!info.dlpi_name.is_null())
                        // SAFETY: the loader's NUL-terminated name for the image.
                        .then(|| unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) })
                        .filter(|n| !n.is_empty())
                        .map(|n| {
                            use std::os::unix::ffi::OsStrExt;
                            std::ffi::OsStr::from_bytes(n.to_bytes()).into()
                        });
                    found = Some(Segment {
                        file,
                        bias: info.dlpi_addr as usize,
                        range,
                    });
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    found
}

/// Calls `f` with each image the loader has mapped (`dl_iterate_phdr`, under the loader's
/// lock) until it breaks.
#[cfg(target_os = "linux")]
pub(crate) fn each_image<F: FnMut(&libc::dl_phdr_info) -> ControlFlow<()>>(mut f: F) {
    unsafe extern "C" fn call<F: FnMut(&libc::dl_phdr_info) -> ControlFlow<()>>(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `F` passed below, and the loader passes a valid info.
        let (f, info) = unsafe { (&mut *data.cast::<F>(), &*info) };
        match f(info) {
            ControlFlow::Continue(()) => 0,
            ControlFlow::Break(()) => 1,
        }
    }
    // SAFETY: the callback only calls `f` through `data`, which points at it.
    unsafe { libc::dl_iterate_phdr(Some(call::<F>), (&raw mut f).cast()) };
}

/// Captures the current stack into `buf` (innermost first); returns the number of frames.
/// The caller holds the thread's busy flag, so allocations made while unwinding (a module
/// rescan, a rule cache's first use) are pass-throughs and cannot come back here.
#[inline(never)]
pub(crate) fn capture(buf: &mut [usize; MAX_FRAMES]) -> usize {
    let unwinder = unwinder();
    if unwinder != Unwinder::Libgcc {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        match cached::capture(buf) {
            Some(n) => {
                CACHED.fetch_add(1, Relaxed);
                return n;
            }
            None => {
                FALLBACKS.fetch_add(1, Relaxed);
            }
        }
    }
    capture_libgcc(buf)
}

/// Does the cached unwinder's one-time work now (scan the modules, make a rule cache, look up
/// this thread's stack bounds) instead of at the first sample. Its allocations are counted
/// like any of diag's own, and never sampled.
pub(crate) fn prepare() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if unwinder() != Unwinder::Libgcc {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        cached::prepare();
    }
}

/// Captures the current stack with libgcc alone.
#[inline(never)]
pub(crate) fn capture_libgcc(buf: &mut [usize; MAX_FRAMES]) -> usize {
    let mut n = 0;
    // SAFETY: the caller holds the thread's busy flag (see `capture`), so the unwinder is not
    // re-entered on this thread.
    unsafe {
        walk(|ip| {
            buf[n] = ip;
            n += 1;
            n < MAX_FRAMES
        });
    }
    n
}

/// Readies the cached unwinder for the blocking watchdog's signal handler (see
/// [`capture_interrupted`]). Normal context: it allocates.
#[cfg(feature = "cpu")]
pub(crate) fn prepare_signals() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        cached::prepare_signals();
    }
}

/// Rescans the module list if a library came or went. Normal context (the watchdog, before it
/// signals a blocked thread).
#[cfg(feature = "cpu")]
pub(crate) fn refresh_modules() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        cached::refresh();
    }
}

/// Looks up this thread's stack bounds now, in normal context, for a later signal handler on
/// it (the watchdog's slots call it when a thread first runs a watched poll).
#[cfg(feature = "cpu")]
pub(crate) fn prepare_thread() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        cached::prepare_thread();
    }
}

/// In a signal handler: unwinds the interrupted code's stack with the cached unwinder, from
/// the registers in the handler's context `ctx`, into `buf` (the interrupted instruction
/// first). None if the cached unwinder is not ready on this thread or cannot vouch for the
/// stack; then the caller decides whether libgcc may run.
///
/// # Safety
/// `ctx` is the third argument of this thread's `SA_SIGINFO` handler, which is running.
#[cfg(feature = "cpu")]
pub(crate) unsafe fn capture_interrupted(
    ctx: *mut std::ffi::c_void,
    buf: &mut [usize],
) -> Option<usize> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        // SAFETY: forwarded contract.
        unsafe { cached::capture_interrupted(ctx.cast(), buf) }
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = (ctx, buf);
        None
    }
}

/// Readies the cached unwinder for the CPU sampler's signal handler, which interrupts any
/// thread: everything [`prepare_signals`] does, with every rule cache of the pool made, and
/// the process's stack mappings read (the bounds of threads that never recorded their own).
/// Normal context; call again when threads appear.
#[cfg(feature = "cpu")]
pub(crate) fn prepare_cpu_sampler() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        cached::prepare_signal_caches(usize::MAX);
        stacks::refresh_stack_mappings();
    }
}

/// Re-reads the process's stack mappings (new threads' stacks). Normal context.
#[cfg(feature = "cpu")]
pub(crate) fn refresh_stack_mappings() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        stacks::refresh_stack_mappings();
        cached::refresh();
    }
}

/// In a signal handler on any thread: unwinds the interrupted code's stack with the cached
/// unwinder into `buf` (the interrupted instruction first), as far as it can vouch for it:
/// `(frames, complete)`. None if it could not start (see the module docs; other targets).
///
/// # Safety
/// `ctx` is the third argument of this thread's `SA_SIGINFO` handler, which is running.
#[cfg(feature = "cpu")]
pub(crate) unsafe fn capture_interrupted_partial(
    ctx: *mut std::ffi::c_void,
    buf: &mut [usize],
) -> Option<(usize, bool)> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        // SAFETY: forwarded contract.
        unsafe { cached::capture_interrupted_partial(ctx.cast(), buf) }
            .map(|w| (w.frames, w.complete))
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = (ctx, buf);
        None
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod cached;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod modules;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod stacks;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod steps;

/// Serializes the tests that use the cached unwinder's shared state: a capture that meets a
/// rescan in progress on another thread gives its stack to libgcc by design, which a test
/// counting fallbacks would see.
#[cfg(test)]
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// The same call site captured by both unwinders: the cached stack (which starts at the
    /// caller of `capture`'s cached path) is a suffix of libgcc's (which also holds the
    /// unwinder's own frames), frame for frame. Recursion makes the stack deep and distinct.
    #[inline(never)]
    fn both(depth: u32) -> ([usize; MAX_FRAMES], usize, [usize; MAX_FRAMES], usize) {
        if depth > 0 {
            let r = both(std::hint::black_box(depth - 1));
            return std::hint::black_box(r);
        }
        let _busy = crate::alloc_state::IgnoreAllocs::new();
        let (mut a, mut b) = ([0; MAX_FRAMES], [0; MAX_FRAMES]);
        set_unwinder(Unwinder::Cached);
        // A capture that meets another test's module scan (the watchdog's set-up) gives up by
        // design; a real failure to unwind gives up every time.
        let mut n = 0;
        let mut took = false;
        for _ in 0..3 {
            let before = stats();
            n = capture(&mut a);
            if stats().cached > before.cached {
                took = true;
                break;
            }
        }
        let m = capture_libgcc(&mut b);
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert!(took, "the cached unwinder gave up three times");
        }
        (a, n, b, m)
    }

    /// Frames the two stacks share, counted from the outermost.
    fn common_suffix(a: &[usize], b: &[usize]) -> usize {
        a.iter()
            .rev()
            .zip(b.iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
    }

    #[test]
    fn cached_stacks_match_libgcc() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        for depth in [0, 5, 20] {
            let (a, n, b, m) = both(depth);
            let (a, b) = (&a[..n], &b[..m]);
            assert!(n > depth as usize + 2, "{n} frames at depth {depth}");
            // The innermost frames differ (libgcc's own frames, and the two call sites in
            // `both`); everything from `both`'s caller outwards must be the same addresses.
            let common = common_suffix(a, b);
            assert!(
                common + 2 >= n,
                "depth {depth}: {common} of {n} frames shared\ncached {a:x?}\nlibgcc {b:x?}"
            );
        }
        // Threads have their own bounds and roots.
        std::thread::spawn(|| {
            let (a, n, b, m) = both(3);
            assert!(common_suffix(&a[..n], &b[..m]) + 2 >= n);
        })
        .join()
        .unwrap();
    }
}
