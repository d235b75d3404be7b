//! The cached DWARF unwinder: the pool of rule caches and step tables, per-thread stack
//! bounds, and the captures themselves, on the allocation path and in the blocking watchdog's signal handler.

use std::cell::Cell;
use std::sync::Mutex;
#[cfg(feature = "cpu")]
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::{FrameAddress, MustNotAllocateDuringUnwind, Unwinder as _};

use super::MAX_FRAMES;
use super::modules::{Modules, loader_generation, modules};
use super::steps::{Next, Steps};

/// framehop's rule cache (with its CFI evaluation state).
pub(super) type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// One set of caches: framehop's, and the learnt steps in front of it.
struct Caches {
    rules: Cache,
    steps: Steps,
}

/// Cache sets shared by all threads (about 60 KiB each, made on first need); a capture
/// that finds them all busy uses libgcc.
const CACHES: usize = 4;
#[cfg(feature = "cpu")]
/// Caches made ready for the signal handler, which cannot make one.
const SIGNAL_CACHES: usize = 2;
/// Free stack a thread needs below its stack pointer to make a cache on the allocation
/// path (the cache's state may be built on the stack before it is boxed).
const CACHE_STACK_ROOM: usize = 256 * 1024;

fn new_cache() -> Box<Caches> {
    Box::new(Caches {
        rules: Cache::new_in(),
        steps: Steps::new(),
    })
}

static POOL: [Mutex<Option<Box<Caches>>>; CACHES] = [const { Mutex::new(None) }; CACHES];

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
    // The first frame is this function's own: not recorded. Most frames of a stack lie in
    // the module of the frame before (the program's own code), so the last range found
    // answers them without a search.
    let mut last = 0..0;
    let w = walk(modules, cache, regs, bounds, true, buf, |a| {
        if last.contains(&a) {
            return true;
        }
        match modules.code_range_of(a) {
            Some(r) => {
                last = r;
                true
            }
            None => false,
        }
    });
    w.complete.then_some(w.frames)
}

/// What a walk found: `frames` frames written, and whether they are the whole stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Walk {
    /// Frames written to the buffer, innermost first.
    pub(crate) frames: usize,
    /// True if unwinding reached the stack's root (or filled the buffer); false if it
    /// stopped early (a frame outside the known modules, no unwind rule, a stack read out of
    /// bounds): the frames written are then the innermost part of the stack.
    pub(crate) complete: bool,
}

impl Walk {
    const fn done(frames: usize) -> Walk {
        Walk {
            frames,
            complete: true,
        }
    }
    const fn cut(frames: usize) -> Walk {
        Walk {
            frames,
            complete: false,
        }
    }
}

/// Unwinds from `(ip, sp, bp)` into `buf`, skipping the first frame if asked. Complete if
/// every frame's code address passes `check` and unwinding ends at the stack's root (or
/// fills `buf`); otherwise the frames found before it stopped. `sp` must lie in the thread's
/// stack `(low, high)`; stack reads are limited to `[sp, high)`. Allocates nothing.
///
/// The first frame (an instruction address, perhaps in a prologue) is unwound by framehop,
/// every return address by its learnt [`Step`](super::steps::Step); a stack with a frame no
/// step can describe is walked again by framehop alone.
fn walk(
    modules: &Modules,
    caches: &mut Caches,
    (ip, sp, bp): (u64, u64, u64),
    (low, high): (usize, usize),
    skip_first: bool,
    buf: &mut [usize],
    mut check: impl FnMut(usize) -> bool,
) -> Walk {
    if buf.is_empty() || !(low..high).contains(&(sp as usize)) {
        return Walk::cut(0);
    }
    let mut read = reader(sp, high);
    caches.steps.use_generation(modules.generation());
    let regs = (ip, sp, bp);
    // Err: a frame needs framehop's full register tracking; walk again with it alone.
    if let Ok(n) = walk_steps(
        modules, caches, regs, skip_first, buf, &mut check, &mut read,
    ) {
        return n;
    }
    let rules = &mut caches.rules;
    walk_framehop(modules, rules, (ip, sp, bp), skip_first, buf, check, read)
}

/// Reads words of the stack `[sp, high)` being unwound; refuses any other address.
fn reader(sp: u64, high: usize) -> impl FnMut(u64) -> Result<u64, ()> {
    move |addr: u64| {
        let a = addr as usize;
        if a >= sp as usize
            && a.checked_add(8).is_some_and(|end| end <= high)
            && a.is_multiple_of(8)
        {
            // SAFETY: `a` is 8-aligned and inside the stack being unwound, at or above the
            // stack pointer it was interrupted or captured at (the caller checked that `sp`
            // lies in the thread's stack), so the word is mapped.
            Ok(unsafe { (a as *const u64).read_volatile() })
        } else {
            Err(())
        }
    }
}

/// A frame on the stack needs framehop's full register tracking.
struct NeedFramehop;

/// [`walk`] with learnt steps; `Err` if a frame has none.
fn walk_steps(
    modules: &Modules,
    caches: &mut Caches,
    (ip, sp, bp): (u64, u64, u64),
    skip_first: bool,
    buf: &mut [usize],
    check: &mut impl FnMut(usize) -> bool,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Walk, NeedFramehop> {
    let mut n = 0;
    if !check(ip as usize) {
        return Ok(Walk::cut(n));
    }
    if !skip_first {
        buf[n] = ip as usize;
        n += 1;
        if n == buf.len() {
            return Ok(Walk::done(n));
        }
    }
    let mut regs = UnwindRegsX86_64::new(ip, sp, bp);
    let first = FrameAddress::from_instruction_pointer(ip);
    let mut ra = match modules
        .unwinder
        .unwind_frame(first, &mut regs, &mut caches.rules, read)
    {
        Ok(Some(ra)) => ra,
        Ok(None) => return Ok(Walk::done(n)),
        Err(_) => return Ok(Walk::cut(n)),
    };
    let mut regs = (regs.ip(), regs.sp(), regs.bp());
    loop {
        // A return address's frame is looked up at the call instruction, one byte before.
        let Some(lookup) = ra.checked_sub(1) else {
            return Ok(Walk::cut(n));
        };
        if !check(lookup as usize) {
            return Ok(Walk::cut(n));
        }
        buf[n] = ra as usize;
        n += 1;
        if n == buf.len() {
            return Ok(Walk::done(n));
        }
        let step = caches
            .steps
            .step_for(ra, &modules.unwinder, &mut caches.rules);
        match step.exec(&mut regs, read) {
            Next::Frame(next) => ra = next,
            Next::End => return Ok(Walk::done(n)),
            Next::Failed => return Ok(Walk::cut(n)),
            Next::Framehop => return Err(NeedFramehop),
        }
    }
}

/// [`walk`] by framehop's iterator alone, which tracks every register.
fn walk_framehop(
    modules: &Modules,
    cache: &mut Cache,
    (ip, sp, bp): (u64, u64, u64),
    skip_first: bool,
    buf: &mut [usize],
    mut check: impl FnMut(usize) -> bool,
    mut read: impl FnMut(u64) -> Result<u64, ()>,
) -> Walk {
    let mut frames =
        modules
            .unwinder
            .iter_frames(ip, UnwindRegsX86_64::new(ip, sp, bp), cache, &mut read);
    let mut n = 0;
    let mut first = true;
    loop {
        let f: FrameAddress = match frames.next() {
            Ok(Some(f)) => f,
            Ok(None) => return Walk::done(n),
            Err(_) => return Walk::cut(n),
        };
        // Unwinding this frame next reads the unwind data of the module holding it.
        if !check(f.address_for_lookup() as usize) {
            return Walk::cut(n);
        }
        if std::mem::take(&mut first) && skip_first {
            continue;
        }
        buf[n] = f.address() as usize;
        n += 1;
        if n == buf.len() {
            return Walk::done(n);
        }
    }
}

#[cfg(feature = "cpu")]
/// `_dl_find_object` (glibc 2.35 and later), looked up by [`prepare_signals`]; 0 if the C
/// library has none, and then signal handlers use libgcc.
static DL_FIND_OBJECT: AtomicUsize = AtomicUsize::new(0);

#[cfg(feature = "cpu")]
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

#[cfg(feature = "cpu")]
type FindObject = unsafe extern "C" fn(*mut libc::c_void, *mut DlFindObject) -> libc::c_int;

#[cfg(feature = "cpu")]
/// Readies the cached unwinder for signal handlers: finds `_dl_find_object`, scans the
/// modules and makes rule caches. Call from normal context (it allocates).
pub(crate) fn prepare_signals() {
    prepare_signal_caches(SIGNAL_CACHES);
}

#[cfg(feature = "cpu")]
/// [`prepare_signals`] with `caches` rule caches made ready (at most the pool's size): the
/// CPU sampler, whose handler may run on several threads at once, readies them all.
pub(crate) fn prepare_signal_caches(caches: usize) {
    // SAFETY: dlsym with the default handle and a NUL-terminated name.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
    DL_FIND_OBJECT.store(f as usize, Relaxed);
    refresh();
    let mut ready = 0;
    for m in &POOL {
        if ready == caches.min(CACHES) {
            break;
        }
        if let Ok(mut c) = m.try_lock() {
            c.get_or_insert_with(new_cache);
            ready += 1;
        }
    }
}

#[cfg(feature = "cpu")]
/// Rescans the modules if a library was loaded or unloaded since the last scan. Normal
/// context (the watchdog calls it before it signals a thread).
pub(crate) fn refresh() {
    drop(modules(loader_generation()));
}

#[cfg(feature = "cpu")]
/// Looks up the current thread's stack bounds now, in normal context, so a signal handler
/// on this thread finds them.
pub(crate) fn prepare_thread() {
    let _ = stack_bounds();
}

#[cfg(feature = "cpu")]
/// Unwinds the stack of the code a signal interrupted on this thread, from the registers
/// the kernel saved in `uc`, into `buf`; the interrupted instruction comes first. None
/// when it cannot vouch for the whole stack (then the caller may use libgcc).
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
    let bounds = BOUNDS.try_with(Cell::get).ok().filter(|b| b.0 < b.1)?;
    // SAFETY: forwarded contract.
    let w = unsafe { interrupted(uc, buf, bounds) }?;
    w.complete.then_some(w.frames)
}

#[cfg(feature = "cpu")]
/// [`capture_interrupted`] for the CPU sampler, which interrupts any thread of the process:
/// the stack bounds come from this thread's own record if it has one, else from the
/// process's stack mappings as last scanned ([`super::stacks::bounds_of`]). Returns what
/// was unwound, complete or not; None if nothing could be (no `_dl_find_object`, no
/// bounds, the module table or every cache busy).
///
/// # Safety
/// As [`capture_interrupted`].
pub(crate) unsafe fn capture_interrupted_partial(
    uc: *const libc::ucontext_t,
    buf: &mut [usize],
) -> Option<Walk> {
    if uc.is_null() {
        return None;
    }
    // SAFETY: per the contract, a valid ucontext for the duration of the handler.
    let sp = unsafe { (*uc).uc_mcontext.gregs[libc::REG_RSP as usize] } as usize;
    let bounds = match BOUNDS.try_with(Cell::get).ok().filter(|b| b.0 < b.1) {
        Some(b) if (b.0..b.1).contains(&sp) => b,
        _ => super::stacks::bounds_of(sp)?,
    };
    // SAFETY: forwarded contract.
    unsafe { interrupted(uc, buf, bounds) }
}

#[cfg(feature = "cpu")]
/// The walk behind both: from the saved registers, within `bounds`.
///
/// # Safety
/// As [`capture_interrupted`]; `bounds` holds the interrupted stack pointer's stack.
unsafe fn interrupted(
    uc: *const libc::ucontext_t,
    buf: &mut [usize],
    bounds: (usize, usize),
) -> Option<Walk> {
    let find = DL_FIND_OBJECT.load(Relaxed);
    if find == 0 || uc.is_null() {
        return None;
    }
    // SAFETY: a non-zero value was stored from dlsym of `_dl_find_object`, whose C
    // signature FindObject matches.
    let find: FindObject = unsafe { std::mem::transmute::<usize, FindObject>(find) };
    // SAFETY: per the contract, a valid ucontext for the duration of the handler.
    let g = unsafe { &(*uc).uc_mcontext.gregs };
    let reg = |r: libc::c_int| g[r as usize] as u64;
    let regs = (reg(libc::REG_RIP), reg(libc::REG_RSP), reg(libc::REG_RBP));
    let guard = super::modules::last_scanned()?;
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
    Some(walk(modules, cache, regs, bounds, false, buf, current))
}

/// Step-table hits and misses (steps learnt) summed over the pool's caches. A cache in use
/// right now is skipped (its counts show up next time), so this never waits.
pub(super) fn rule_stats() -> (u64, u64) {
    let (mut hits, mut misses) = (0, 0);
    for m in &POOL {
        if let Ok(c) = m.try_lock()
            && let Some(c) = c.as_ref()
        {
            let (h, m) = c.steps.stats();
            hits += h;
            misses += m;
        }
    }
    (hits, misses)
}

/// See [`super::prepare`].
pub(super) fn prepare() {
    let _ = stack_bounds();
    drop(modules(loader_generation()));
    if let Some(mut c) = POOL.iter().find_map(|m| m.try_lock().ok()) {
        c.get_or_insert_with(new_cache);
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

#[cfg(test)]
mod tests;
