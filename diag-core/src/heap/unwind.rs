//! Stack capture for sampled allocations.
//!
//! Two unwinders, both allocation-free on the common path and lock-free towards the host:
//!
//! - **cached** (the default on x86-64 Linux): DWARF CFI from the loaded modules'
//!   `.eh_frame_hdr`/`.eh_frame`, read in place, evaluated by `framehop`, which turns each
//!   return address's CFI row into a compact rule and keeps it in a per-address cache. After
//!   warm-up a frame costs a cache probe and one stack read instead of libgcc's FDE search and
//!   CFI interpretation (about 2,000 instructions a frame here; see BENCHMARKS.md).
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::stacks::MAX_FRAMES;

/// Which unwinder captures the stacks of sampled allocations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unwinder {
    /// Cached DWARF unwinding (framehop) with libgcc as the fallback; libgcc alone where the
    /// cached unwinder is not built (targets other than x86-64 Linux).
    #[default]
    Cached,
    /// libgcc's `_Unwind_Backtrace` for every stack.
    Libgcc,
}

static USE_LIBGCC: AtomicBool = AtomicBool::new(false);
static CACHED: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Picks the unwinder for stacks captured from now on (default [`Unwinder::Cached`]).
pub fn set_unwinder(u: Unwinder) {
    USE_LIBGCC.store(u == Unwinder::Libgcc, Relaxed);
}

/// The unwinder in use.
pub fn unwinder() -> Unwinder {
    if USE_LIBGCC.load(Relaxed) {
        Unwinder::Libgcc
    } else {
        Unwinder::Cached
    }
}

/// Counts of stack captures by how they were taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct UnwindStats {
    /// The unwinder in use now.
    pub unwinder: Unwinder,
    /// Stacks taken by the cached unwinder.
    pub cached: u64,
    /// Stacks the cached unwinder gave to libgcc (see the module docs for when).
    pub fallbacks: u64,
}

/// How the stacks captured so far were taken.
pub fn stats() -> UnwindStats {
    UnwindStats {
        unwinder: unwinder(),
        cached: CACHED.load(Relaxed),
        fallbacks: FALLBACKS.load(Relaxed),
    }
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

/// Captures the current stack into `buf` (innermost first); returns the number of frames.
/// The caller holds the thread's busy flag, so allocations made while unwinding (a module
/// rescan, a rule cache's first use) are pass-throughs and cannot come back here.
#[inline(never)]
pub(crate) fn capture(buf: &mut [usize; MAX_FRAMES]) -> usize {
    if !USE_LIBGCC.load(Relaxed) {
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
    if !USE_LIBGCC.load(Relaxed) {
        let _own = super::IgnoreAllocs::new();
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
#[cfg(feature = "server")]
pub(crate) fn prepare_signals() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = super::IgnoreAllocs::new();
        cached::prepare_signals();
    }
}

/// Rescans the module list if a library came or went. Normal context (the watchdog, before it
/// signals a blocked thread).
#[cfg(feature = "server")]
pub(crate) fn refresh_modules() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = super::IgnoreAllocs::new();
        cached::refresh();
    }
}

/// Looks up this thread's stack bounds now, in normal context, for a later signal handler on
/// it (the watchdog's slots call it when a thread first runs a watched poll).
#[cfg(feature = "server")]
pub(crate) fn prepare_thread() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let _own = super::IgnoreAllocs::new();
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
#[cfg(feature = "server")]
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

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod cached {
    //! The cached DWARF unwinder: the module table, the rule-cache pool, stack bounds.

    use std::cell::Cell;
    use std::ffi::CStr;
    use std::ops::Range;
    #[cfg(feature = "server")]
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::{Mutex, RwLock};

    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{
        ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind, Unwinder as _,
    };

    use super::MAX_FRAMES;

    /// Unwind data is read in place from the loaded images; see [`Modules`] for why the
    /// `'static` is sound.
    type Data = &'static [u8];
    /// Allocation-free during unwinding (fixed-size CFI evaluation state in the cache), so the
    /// same unwinder serves the blocking watchdog's signal handler.
    type Fast = UnwinderX86_64<Data, MustNotAllocateDuringUnwind>;
    type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

    /// Rule caches shared by all threads (about 40 KiB each, made on first need); a capture
    /// that finds them all busy uses libgcc.
    const CACHES: usize = 4;
    #[cfg(feature = "server")]
    /// Caches made ready for the signal handler, which cannot make one.
    const SIGNAL_CACHES: usize = 2;
    /// Free stack a thread needs below its stack pointer to make a cache on the allocation
    /// path (the cache's state may be built on the stack before it is boxed).
    const CACHE_STACK_ROOM: usize = 256 * 1024;

    fn new_cache() -> Box<Cache> {
        Box::new(Cache::new_in())
    }

    /// A module's executable range and the address of its `.eh_frame_hdr`.
    type Code = (Range<usize>, usize);

    /// The loaded modules as the cached unwinder sees them.
    ///
    /// The slices in `unwinder` point into loaded images. They are used only while the
    /// loader's counters equal `generation` (checked before every capture, under the read
    /// lock), i.e. while no image has been loaded or unloaded since the scan; a changed
    /// generation makes the capture rescan or fall back.
    struct Modules {
        unwinder: Fast,
        /// Executable ranges of the modules with the address of each one's `.eh_frame_hdr`,
        /// sorted: a return address outside all of them ends the cached attempt.
        code: Vec<Code>,
        generation: (u64, u64),
    }

    static MODULES: RwLock<Option<Modules>> = RwLock::new(None);
    static POOL: [Mutex<Option<Box<Cache>>>; CACHES] = [const { Mutex::new(None) }; CACHES];

    thread_local! {
        /// This thread's stack, `(low, high)`; `(0, 0)` until asked, `(1, 0)` if unknown.
        static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    /// Captures the current stack, or None if the cached unwinder cannot vouch for all of it.
    pub(super) fn capture(buf: &mut [usize; MAX_FRAMES]) -> Option<usize> {
        let regs = registers();
        let bounds = stack_bounds()?;
        let guard = modules(loader_generation())?;
        let modules = guard.as_ref()?;
        let mut cache = POOL.iter().find_map(|m| m.try_lock().ok())?;
        if cache.is_none() {
            // Making a cache may build its ~30 KiB evaluation state on the stack first.
            if (regs.1 as usize).saturating_sub(bounds.0) < CACHE_STACK_ROOM {
                return None;
            }
            *cache = Some(new_cache());
        }
        let cache = cache.as_mut()?;
        // The first frame is this function's own: not recorded.
        walk(modules, cache, regs, bounds, true, buf, |a| {
            modules.knows(a)
        })
    }

    /// Unwinds from `(ip, sp, bp)` into `buf`, skipping the first frame if asked; None unless
    /// every frame's code address passes `check` and unwinding ends at the stack's root (or
    /// fills `buf`). `sp` must lie in the thread's stack `(low, high)`; stack reads are limited
    /// to `[sp, high)`. Allocates nothing.
    fn walk(
        modules: &Modules,
        cache: &mut Cache,
        (ip, sp, bp): (u64, u64, u64),
        (low, high): (usize, usize),
        skip_first: bool,
        buf: &mut [usize],
        check: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if buf.is_empty() || !(low..high).contains(&(sp as usize)) {
            return None;
        }
        let mut read = |addr: u64| {
            let a = addr as usize;
            if a >= sp as usize
                && a.checked_add(8).is_some_and(|end| end <= high)
                && a.is_multiple_of(8)
            {
                // SAFETY: `a` is 8-aligned and inside the stack being unwound, at or above the
                // stack pointer it was interrupted or captured at, so the word is mapped.
                Ok(unsafe { (a as *const u64).read_volatile() })
            } else {
                Err(())
            }
        };
        let mut frames =
            modules
                .unwinder
                .iter_frames(ip, UnwindRegsX86_64::new(ip, sp, bp), cache, &mut read);
        let mut n = 0;
        let mut first = true;
        loop {
            let f: FrameAddress = match frames.next() {
                Ok(Some(f)) => f,
                Ok(None) => return Some(n),
                Err(_) => return None,
            };
            // Unwinding this frame next reads the unwind data of the module holding it.
            if !check(f.address_for_lookup() as usize) {
                return None;
            }
            if std::mem::take(&mut first) && skip_first {
                continue;
            }
            buf[n] = f.address() as usize;
            n += 1;
            if n == buf.len() {
                return Some(n);
            }
        }
    }

    #[cfg(feature = "server")]
    /// `_dl_find_object` (glibc 2.35 and later), looked up by [`prepare_signals`]; 0 if the C
    /// library has none, and then signal handlers use libgcc.
    static DL_FIND_OBJECT: AtomicUsize = AtomicUsize::new(0);

    #[cfg(feature = "server")]
    /// glibc's `struct dl_find_object` (`<dlfcn.h>`).
    #[repr(C)]
    struct DlFindObject {
        flags: u64,
        map_start: *mut libc::c_void,
        map_end: *mut libc::c_void,
        link_map: *mut libc::c_void,
        eh_frame: *mut libc::c_void,
        reserved: [u64; 7],
    }

    #[cfg(feature = "server")]
    type FindObject = unsafe extern "C" fn(*mut libc::c_void, *mut DlFindObject) -> libc::c_int;

    #[cfg(feature = "server")]
    /// Readies the cached unwinder for signal handlers: finds `_dl_find_object`, scans the
    /// modules and makes rule caches. Call from normal context (it allocates).
    pub(crate) fn prepare_signals() {
        // SAFETY: dlsym with the default handle and a NUL-terminated name.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
        DL_FIND_OBJECT.store(f as usize, Relaxed);
        refresh();
        let mut ready = 0;
        for m in &POOL {
            if ready == SIGNAL_CACHES {
                break;
            }
            if let Ok(mut c) = m.try_lock() {
                c.get_or_insert_with(new_cache);
                ready += 1;
            }
        }
    }

    #[cfg(feature = "server")]
    /// Rescans the modules if a library was loaded or unloaded since the last scan. Normal
    /// context (the watchdog calls it before it signals a thread).
    pub(crate) fn refresh() {
        drop(modules(loader_generation()));
    }

    #[cfg(feature = "server")]
    /// Looks up the current thread's stack bounds now, in normal context, so a signal handler
    /// on this thread finds them.
    pub(crate) fn prepare_thread() {
        let _ = stack_bounds();
    }

    #[cfg(feature = "server")]
    /// Unwinds the stack of the code a signal interrupted on this thread, from the registers
    /// the kernel saved in `uc`, into `buf`; the interrupted instruction comes first. None
    /// when it cannot vouch for the stack (then the caller may use libgcc).
    ///
    /// Async-signal-safe: no allocation, only try-locks, and no loader lock. The module table
    /// is the one [`refresh`] left; each frame's module is checked against the loader's
    /// current view with `_dl_find_object` (lock-free) before its unwind data is read, so a
    /// library unloaded since the scan is never read.
    ///
    /// # Safety
    /// `uc` is the context the kernel passed to this thread's `SA_SIGINFO` handler.
    pub(crate) unsafe fn capture_interrupted(
        uc: *const libc::ucontext_t,
        buf: &mut [usize],
    ) -> Option<usize> {
        let find = DL_FIND_OBJECT.load(Relaxed);
        if find == 0 || uc.is_null() {
            return None;
        }
        // SAFETY: a non-zero value was stored from dlsym of `_dl_find_object`, whose C
        // signature FindObject matches.
        let find: FindObject = unsafe { std::mem::transmute::<usize, FindObject>(find) };
        let bounds = BOUNDS.try_with(Cell::get).ok().filter(|b| b.0 < b.1)?;
        // SAFETY: per the contract, a valid ucontext for the duration of the handler.
        let g = unsafe { &(*uc).uc_mcontext.gregs };
        let reg = |r: libc::c_int| g[r as usize] as u64;
        let regs = (reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP));
        let guard = MODULES.try_read().ok()?;
        let modules = guard.as_ref()?;
        // Only caches made beforehand: making one would allocate.
        let mut slot = POOL
            .iter()
            .find_map(|m| m.try_lock().ok().filter(|c| c.is_some()))?;
        let cache = slot.as_mut()?;
        let current = |addr: usize| {
            let Some(hdr) = modules.module_of(addr) else {
                return false;
            };
            // SAFETY: an all-zero struct is a valid out-parameter.
            let mut o: DlFindObject = unsafe { std::mem::zeroed() };
            // SAFETY: `_dl_find_object` takes any address and writes only `o`.
            let found = unsafe { find(addr as *mut libc::c_void, &mut o) } == 0;
            found && o.eh_frame as usize == hdr
        };
        walk(modules, cache, regs, bounds, false, buf, current)
    }

    /// See [`super::prepare`].
    pub(super) fn prepare() {
        let _ = stack_bounds();
        drop(modules(loader_generation()));
        if let Some(mut c) = POOL.iter().find_map(|m| m.try_lock().ok()) {
            c.get_or_insert_with(new_cache);
        }
    }

    /// The module table for `generation`, rescanned first if it is stale; None if another
    /// thread holds it for writing (never waits).
    fn modules(
        generation: (u64, u64),
    ) -> Option<std::sync::RwLockReadGuard<'static, Option<Modules>>> {
        let guard = MODULES.try_read().ok()?;
        if guard.as_ref().is_some_and(|m| m.generation == generation) {
            return Some(guard);
        }
        drop(guard);
        {
            let mut w = MODULES.try_write().ok()?;
            if w.as_ref().is_none_or(|m| m.generation != generation) {
                *w = Some(scan(generation));
            }
        }
        let guard = MODULES.try_read().ok()?;
        guard
            .as_ref()
            .is_some_and(|m| m.generation == generation)
            .then_some(guard)
    }

    impl Modules {
        /// The `.eh_frame_hdr` address of the module whose code holds `addr`.
        fn module_of(&self, addr: usize) -> Option<usize> {
            let i = self.code.partition_point(|(r, _)| r.start <= addr);
            let (r, hdr) = self.code.get(i.checked_sub(1)?)?;
            r.contains(&addr).then_some(*hdr)
        }

        fn knows(&self, addr: usize) -> bool {
            self.module_of(addr).is_some()
        }
    }

    /// This function's own instruction pointer, stack pointer and frame pointer, all at one
    /// instruction, so the CFI row for `ip` describes `sp`.
    #[inline(always)]
    fn registers() -> (u64, u64, u64) {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers; touches no memory and no flags.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        (ip, sp, bp)
    }

    /// This thread's stack range, looked up once per thread.
    fn stack_bounds() -> Option<(usize, usize)> {
        let b = BOUNDS.try_with(Cell::get).ok()?;
        let b = if b == (0, 0) {
            let b = query_stack_bounds().unwrap_or((1, 0));
            let _ = BOUNDS.try_with(|c| c.set(b));
            b
        } else {
            b
        };
        (b.0 < b.1).then_some(b)
    }

    fn query_stack_bounds() -> Option<(usize, usize)> {
        // SAFETY: a zeroed attr is what pthread_getattr_np initialises; it is destroyed below.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut addr: *mut libc::c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
            libc::pthread_attr_destroy(&mut attr);
            (ok && !addr.is_null()).then(|| (addr as usize, addr as usize + size))
        }
    }

    /// The loader's (loads, unloads) counters: they change whenever an image comes or goes.
    fn loader_generation() -> (u64, u64) {
        unsafe extern "C" fn first(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: the loader passes a valid info; `data` is the tuple below.
            unsafe {
                let out = &mut *data.cast::<(u64, u64)>();
                *out = ((*info).dlpi_adds, (*info).dlpi_subs);
            }
            1 // the counters are the same in every entry: stop at the first
        }
        let mut g = (0u64, 0u64);
        // SAFETY: the callback only writes through `data`, which points at `g`.
        unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut g).cast()) };
        g
    }

    /// Builds the module table from the loader's list of images.
    fn scan(generation: (u64, u64)) -> Modules {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: the loader passes a valid info for a loaded image; `data` is the Vec.
            unsafe {
                let out = &mut *data.cast::<Vec<(Module<Data>, Code)>>();
                if let Some(m) = module(&*info) {
                    out.push(m);
                }
            }
            0
        }
        let mut found: Vec<(Module<Data>, Code)> = Vec::new();
        // SAFETY: the callback only pushes to `found`, passed through `data`.
        unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut found).cast()) };
        let mut unwinder = Fast::new();
        let mut code = Vec::with_capacity(found.len());
        for (m, range) in found {
            unwinder.add_module(m);
            code.push(range);
        }
        code.sort_by_key(|(r, _)| r.start);
        Modules {
            unwinder,
            code,
            generation,
        }
    }

    /// One image's unwind module: its executable range and its `.eh_frame_hdr`/`.eh_frame`
    /// as they are mapped. None for images without either (they are left to libgcc).
    ///
    /// # Safety
    /// `info` describes an image loaded in this process.
    unsafe fn module(info: &libc::dl_phdr_info) -> Option<(Module<Data>, Code)> {
        let base = info.dlpi_addr as usize;
        // SAFETY: the loader's program header table for this image, dlpi_phnum entries.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let mut code: Option<Range<usize>> = None;
        let mut hdr: Option<Range<usize>> = None;
        for p in phdrs {
            let start = base.wrapping_add(p.p_vaddr as usize);
            let range = start..start.wrapping_add(p.p_memsz as usize);
            if p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0 {
                code = Some(match code {
                    Some(c) => c.start.min(range.start)..c.end.max(range.end),
                    None => range,
                });
            } else if p.p_type == libc::PT_GNU_EH_FRAME {
                hdr = Some(range);
            }
        }
        let (code, hdr) = (code?, hdr?);
        if hdr.len() < 8 {
            return None;
        }
        // SAFETY: PT_GNU_EH_FRAME is mapped (it lies inside a PT_LOAD segment).
        let hdr_bytes: Data =
            unsafe { std::slice::from_raw_parts(hdr.start as *const u8, hdr.len()) };
        let eh_frame = eh_frame_address(hdr_bytes, hdr.start)?;
        // .eh_frame's length is not in the header: take the rest of the segment holding it.
        // Readers only follow offsets from the header's table, which stay inside the section.
        let segment_end = phdrs.iter().find_map(|p| {
            let start = base.wrapping_add(p.p_vaddr as usize);
            let end = start.wrapping_add(p.p_memsz as usize);
            (p.p_type == libc::PT_LOAD && (start..end).contains(&eh_frame)).then_some(end)
        })?;
        // SAFETY: eh_frame..segment_end lies inside one mapped PT_LOAD segment.
        let eh_frame_bytes: Data =
            unsafe { std::slice::from_raw_parts(eh_frame as *const u8, segment_end - eh_frame) };
        let svma = |r: &Range<usize>| (r.start - base) as u64..(r.end - base) as u64;
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: the loader's NUL-terminated name of this image.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let section_info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: Some(svma(&code)),
            eh_frame_hdr_svma: Some(svma(&hdr)),
            eh_frame_hdr: Some(hdr_bytes),
            eh_frame_svma: Some(svma(&(eh_frame..segment_end))),
            eh_frame: Some(eh_frame_bytes),
            ..Default::default()
        };
        let avma = code.start as u64..code.end as u64;
        let hdr_addr = hdr.start;
        Some((
            Module::new(name, avma, base as u64, section_info),
            (code, hdr_addr),
        ))
    }

    /// The address of `.eh_frame`, decoded from `.eh_frame_hdr` (version 1, the pointer
    /// encodings linkers emit: absolute or pc-relative, 4 or 8 bytes).
    fn eh_frame_address(hdr: &[u8], hdr_addr: usize) -> Option<usize> {
        const ABSPTR: u8 = 0x00;
        const UDATA4: u8 = 0x03;
        const SDATA4: u8 = 0x0b;
        const UDATA8: u8 = 0x04;
        const SDATA8: u8 = 0x0c;
        const PCREL: u8 = 0x10;
        if hdr[0] != 1 {
            return None;
        }
        let enc = hdr[1];
        let field = &hdr[4..];
        let value = match enc & 0x0f {
            UDATA4 => u32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
            SDATA4 => i32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
            ABSPTR | UDATA8 | SDATA8 => i64::from_le_bytes(field.get(..8)?.try_into().ok()?),
            _ => return None,
        };
        match enc & 0x70 {
            0 => Some(value as usize),
            PCREL => Some((hdr_addr + 4).wrapping_add_signed(value as isize)),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn eh_frame_pointer_encodings() {
            // pc-relative sdata4 (what ld and lld write): field at hdr+4.
            let mut hdr = vec![1u8, 0x1b, 0x03, 0x3b];
            hdr.extend_from_slice(&(-0x100i32).to_le_bytes());
            assert_eq!(eh_frame_address(&hdr, 0x10_000), Some(0x10_004 - 0x100));
            // absolute udata8.
            let mut hdr = vec![1u8, 0x04, 0x03, 0x3b];
            hdr.extend_from_slice(&0x1234_5678u64.to_le_bytes());
            assert_eq!(eh_frame_address(&hdr, 0), Some(0x1234_5678));
            // unknown version or encoding: refused.
            assert_eq!(eh_frame_address(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
            assert_eq!(eh_frame_address(&[1, 0x09, 0, 0, 0, 0, 0, 0], 0), None);
            assert_eq!(eh_frame_address(&[1, 0x3b, 0, 0, 0, 0, 0, 0], 0), None);
        }

        #[test]
        fn scan_finds_this_binary_and_libc() {
            let m = scan(loader_generation());
            let here = scan_finds_this_binary_and_libc as *const () as usize;
            assert!(m.knows(here), "own code not in {:x?}", m.code);
            assert!(
                m.knows(libc::malloc as *const () as usize),
                "libc not in {:x?}",
                m.code
            );
            assert!(!m.knows(0x10));
            assert!(m.code.windows(2).all(|w| w[0].0.end <= w[1].0.start));
        }

        /// In a signal handler, the cached unwinder's stack of the interrupted code equals
        /// libgcc's from the interrupted instruction on, frame for frame.
        #[cfg(feature = "server")]
        #[test]
        fn signal_context_stacks_match_libgcc() {
            use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::*};
            const N: usize = 64;
            static CACHED: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
            static LIBGCC: [AtomicUsize; N] = [const { AtomicUsize::new(0) }; N];
            static DEPTHS: [AtomicUsize; 2] = [const { AtomicUsize::new(usize::MAX) }; 2];
            static DONE: AtomicBool = AtomicBool::new(false);
            static TID: AtomicI32 = AtomicI32::new(0);

            extern "C" fn handler(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
                let mut a = [0usize; N];
                // SAFETY: ctx is this handler's context.
                let n = unsafe { capture_interrupted(ctx.cast(), &mut a) }.unwrap_or(0);
                // SAFETY: as above.
                let pc = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs }
                    [libc::REG_RIP as usize] as usize;
                let (mut b, mut m) = ([0usize; N], 0);
                // SAFETY: the target thread is not inside libgcc (it spins in plain code).
                unsafe {
                    super::super::walk(|ip| {
                        b[m] = ip;
                        m += 1;
                        m < N
                    })
                };
                let at = b[..m].iter().position(|&ip| ip == pc).unwrap_or(m);
                for (i, f) in a[..n].iter().enumerate() {
                    CACHED[i].store(*f, Relaxed);
                }
                for (i, f) in b[at..m].iter().enumerate() {
                    LIBGCC[i].store(*f, Relaxed);
                }
                DEPTHS[0].store(n, Relaxed);
                DEPTHS[1].store(m - at, Relaxed);
                DONE.store(true, Release);
            }

            #[inline(never)]
            fn spin_here(depth: u32) {
                if depth > 0 {
                    spin_here(std::hint::black_box(depth - 1));
                    std::hint::black_box(depth);
                    return;
                }
                while !DONE.load(Acquire) {
                    std::hint::spin_loop();
                }
            }

            let _serial = super::super::SERIAL
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            prepare_signals();
            let sig = libc::SIGRTMIN() + 9;
            // SAFETY: a zeroed sigaction with our handler; the signal is otherwise unused by
            // this test binary (diag's own watchdog uses SIGRTMIN+6).
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = handler as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut act.sa_mask);
                assert_eq!(libc::sigaction(sig, &act, std::ptr::null_mut()), 0);
            }
            let t = std::thread::spawn(|| {
                prepare_thread();
                // SAFETY: gettid has no preconditions.
                TID.store(unsafe { libc::syscall(libc::SYS_gettid) } as i32, Release);
                spin_here(5);
            });
            while TID.load(Acquire) == 0 {
                std::thread::yield_now();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            // SAFETY: signals one thread of this process, which has the handler installed.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), TID.load(Acquire), sig) };
            t.join().unwrap();
            let (n, m) = (DEPTHS[0].load(Relaxed), DEPTHS[1].load(Relaxed));
            let cached: Vec<usize> = CACHED[..n].iter().map(|f| f.load(Relaxed)).collect();
            let libgcc: Vec<usize> = LIBGCC[..m].iter().map(|f| f.load(Relaxed)).collect();
            assert!(n > 6, "cached unwinder gave {n} frames: {cached:x?}");
            assert_eq!(cached, libgcc);
        }
    }
}

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
        let _busy = crate::IgnoreAllocs::new();
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
