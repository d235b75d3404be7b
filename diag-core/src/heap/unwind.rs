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

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod cached {
    //! The cached DWARF unwinder: the module table, the rule-cache pool, stack bounds.

    use std::cell::Cell;
    use std::ffi::CStr;
    use std::ops::Range;
    use std::sync::{Mutex, RwLock};

    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{ExplicitModuleSectionInfo, Module, Unwinder as _};

    use super::MAX_FRAMES;

    /// Unwind data is read in place from the loaded images; see [`Modules`] for why the
    /// `'static` is sound.
    type Data = &'static [u8];
    type Fast = UnwinderX86_64<Data>;
    type Cache = CacheX86_64;

    /// Rule caches shared by all threads; a capture that finds them all busy uses libgcc.
    const CACHES: usize = 4;

    /// The loaded modules as the cached unwinder sees them.
    ///
    /// The slices in `unwinder` point into loaded images. They are used only while the
    /// loader's counters equal `generation` (checked before every capture, under the read
    /// lock), i.e. while no image has been loaded or unloaded since the scan; a changed
    /// generation makes the capture rescan or fall back.
    struct Modules {
        unwinder: Fast,
        /// Executable ranges of the modules, sorted: a return address outside all of them
        /// ends the cached attempt.
        code: Vec<Range<usize>>,
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
        let (ip, sp, bp) = registers();
        let (low, high) = stack_bounds()?;
        if !(low..high).contains(&(sp as usize)) {
            return None;
        }
        let generation = loader_generation();
        let guard = modules(generation)?;
        let modules = guard.as_ref()?;
        let mut cache = POOL.iter().find_map(|m| m.try_lock().ok())?;
        let cache = cache.get_or_insert_with(|| Box::new(Cache::new()));
        let mut read = |addr: u64| {
            let a = addr as usize;
            if a >= sp as usize
                && a.checked_add(8).is_some_and(|end| end <= high)
                && a.is_multiple_of(8)
            {
                // SAFETY: `a` is 8-aligned and inside this thread's live stack, above the
                // stack pointer this function read, so the word is mapped and ours.
                Ok(unsafe { (a as *const u64).read_volatile() })
            } else {
                Err(())
            }
        };
        let mut frames =
            modules
                .unwinder
                .iter_frames(ip, UnwindRegsX86_64::new(ip, sp, bp), cache, &mut read);
        frames.next().ok()?; // this function's own frame
        let mut n = 0;
        loop {
            match frames.next() {
                Ok(Some(f)) => {
                    let a = f.address() as usize;
                    if !modules.knows(a) {
                        return None;
                    }
                    buf[n] = a;
                    n += 1;
                    if n == MAX_FRAMES {
                        return Some(n);
                    }
                }
                Ok(None) => return Some(n),
                Err(_) => return None,
            }
        }
    }

    /// See [`super::prepare`].
    pub(super) fn prepare() {
        let _ = stack_bounds();
        drop(modules(loader_generation()));
        if let Some(mut c) = POOL.iter().find_map(|m| m.try_lock().ok()) {
            c.get_or_insert_with(|| Box::new(Cache::new()));
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
        fn knows(&self, addr: usize) -> bool {
            let i = self.code.partition_point(|r| r.start <= addr);
            i > 0 && self.code[i - 1].contains(&addr)
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
                let out = &mut *data.cast::<Vec<(Module<Data>, Range<usize>)>>();
                if let Some(m) = module(&*info) {
                    out.push(m);
                }
            }
            0
        }
        let mut found: Vec<(Module<Data>, Range<usize>)> = Vec::new();
        // SAFETY: the callback only pushes to `found`, passed through `data`.
        unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut found).cast()) };
        let mut unwinder = Fast::new();
        let mut code = Vec::with_capacity(found.len());
        for (m, range) in found {
            unwinder.add_module(m);
            code.push(range);
        }
        code.sort_by_key(|r| r.start);
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
    unsafe fn module(info: &libc::dl_phdr_info) -> Option<(Module<Data>, Range<usize>)> {
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
        Some((Module::new(name, avma, base as u64, section_info), code))
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
            assert!(m.code.windows(2).all(|w| w[0].end <= w[1].start));
        }
    }
}

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
        let before = stats();
        let n = capture(&mut a);
        let after = stats();
        let m = capture_libgcc(&mut b);
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(
                after.cached,
                before.cached + 1,
                "the cached unwinder gave up"
            );
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
