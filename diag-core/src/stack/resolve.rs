//! Address -> frames, done when a profile is served (never on the allocation path), for heap,
//! CPU and blocking stacks alike.
//!
//! Function names come from DWARF (with inlined frames, files and lines) where the image has
//! it and from the ELF symbol table otherwise ([`super::dwarf`], [`super::symtab`]), both read
//! in place from the mapped image files. What the symbolizer keeps between requests (images
//! with their parsed DWARF, symbol tables, resolved addresses) is measured as diag's own
//! allocations made while it works (this thread's own counters, see `heap::IgnoreAllocs`),
//! plus the anonymous buffers of inflated debug sections, and bounded: after a request that
//! leaves more than [`cache_bytes`] (`DIAG_SYMBOL_CACHE_BYTES`, default 8 MiB), the DWARF
//! state goes first, then the resolved addresses. Everything goes after [`idle`] without
//! symbolizing (`DIAG_SYMBOL_IDLE_SECS`, default 60 s). After a drop the freed heap is handed
//! back to the system (`malloc_trim`, glibc). When the allocations cannot be measured
//! (sampling off, or `DiagAlloc` not the global allocator) nothing is kept after a request.
//!
//! Within a request the DWARF state may grow to the bound, or to twice an image's fixed cost
//! if that is larger: `addr2line` parses every compilation unit's header and line-program
//! header when it opens an image (about 21 MB for a 34 MB binary of 1,561 units), before the
//! first address.
//!
//! A request's addresses are resolved in address order ([`stacks`]): DWARF is parsed one
//! compilation unit at a time, so when the bound forces a drop in the middle of a request
//! the units already done are not needed again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::unwind::Segment;
use crate::profile::Frame;
use crate::symbolize::dwarf::Image;
use crate::symbolize::naming::{call_address, drop_top_machinery, named, unknown};

mod packed;
use packed::Packed;

use crate::defaults::{DEFAULT_SYMBOL_CACHE_BYTES, DEFAULT_SYMBOL_IDLE};

/// Set by `Builder::symbol_cache_bytes` / `symbol_idle`; `usize::MAX` / `u64::MAX`: not set.
static SET_CACHE_BYTES: AtomicUsize = AtomicUsize::new(usize::MAX);
static SET_IDLE_NS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the bound on the caches (see [`cache_bytes`]).
#[cfg(feature = "server")]
pub(crate) fn set_cache_bytes(bytes: usize) {
    SET_CACHE_BYTES.store(bytes.min(usize::MAX - 1), Relaxed);
}

/// Sets the idle time (see [`idle`]).
#[cfg(feature = "server")]
pub(crate) fn set_idle(idle: Duration) {
    SET_IDLE_NS.store(
        u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX - 1),
        Relaxed,
    );
}

/// The bound on the caches: as set by `Builder::symbol_cache_bytes`, else `DIAG_SYMBOL_CACHE_BYTES`
/// (for builds without the builder), else [`DEFAULT_SYMBOL_CACHE_BYTES`].
pub(crate) fn cache_bytes() -> usize {
    let set = SET_CACHE_BYTES.load(Relaxed);
    if set != usize::MAX {
        return set;
    }
    static V: OnceLock<usize> = OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("DIAG_SYMBOL_CACHE_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_SYMBOL_CACHE_BYTES)
    })
}

/// The idle time before the caches are dropped: as set by `Builder::symbol_idle`, else
/// `DIAG_SYMBOL_IDLE_SECS` (fractions allowed), else [`DEFAULT_SYMBOL_IDLE`].
pub(crate) fn idle() -> Duration {
    let set = SET_IDLE_NS.load(Relaxed);
    if set != u64::MAX {
        return Duration::from_nanos(set);
    }
    static V: OnceLock<Duration> = OnceLock::new();
    *V.get_or_init(|| parse_idle(std::env::var("DIAG_SYMBOL_IDLE_SECS").ok().as_deref()))
}

/// `DIAG_SYMBOL_IDLE_SECS`'s value as a duration (fractions allowed); the default if absent
/// or malformed.
fn parse_idle(v: Option<&str>) -> Duration {
    v.and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(DEFAULT_SYMBOL_IDLE)
}

/// Everything the symbolizer keeps.
#[derive(Default)]
struct State {
    images: HashMap<PathBuf, Image>,
    results: HashMap<usize, Arc<[Frame]>>,
    /// Resolved addresses kept after a request whose DWARF state was dropped, packed into a
    /// few large blocks (see [`Packed`]).
    packed: Packed,
    /// Bytes held by the images and symbol tables (parsed DWARF, inflated sections), measured.
    dwarf_used: usize,
    /// `dwarf_used` after the first address resolved since the last drop: an image's fixed
    /// cost (its units' headers), paid again after every drop.
    dwarf_floor: Option<usize>,
    /// Bytes held by `results`, measured (or estimated, see `unmeasured`).
    results_used: usize,
    /// Some of the above could not be measured (sampling off, or `DiagAlloc` not installed):
    /// the caches are then dropped after every request.
    unmeasured: bool,
    last_use: Option<Instant>,
    /// A thread waits to drop the caches once idle.
    reaper: bool,
    /// Times the DWARF state was dropped.
    drops: u64,
}

/// `dwarf_used + results_used` as of the end of the last request or drop, and the drops so
/// far: read without the lock (which a request holds for as long as it symbolizes).
static USED: AtomicUsize = AtomicUsize::new(0);
static DROPS: AtomicU64 = AtomicU64::new(0);

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Measures what the current thread allocates and keeps (its own counters' live bytes)
/// between two points.
struct Meter(Option<(u64, u64)>);

impl Meter {
    fn start() -> Meter {
        Meter(crate::alloc_state::own_thread_bytes())
    }

    /// The bytes allocated and not freed since `start`, or None if they cannot be measured.
    fn kept(&self) -> Option<isize> {
        let (a0, f0) = self.0?;
        let (a1, f1) = crate::alloc_state::own_thread_bytes()?;
        Some(a1.wrapping_sub(a0).wrapping_sub(f1.wrapping_sub(f0)) as i64 as isize)
    }
}

impl State {
    /// What happened since `meter` started, or `estimate` (and `unmeasured` set).
    fn measured(&mut self, meter: &Meter, estimate: usize) -> isize {
        meter.kept().unwrap_or_else(|| {
            self.unmeasured = true;
            estimate as isize
        })
    }

    /// The frames at return address `addr`, from the cache or resolved now. `last` is the
    /// segment the previous address lay in (addresses come sorted: most lie in the same).
    fn frames(&mut self, addr: usize, last: &mut Option<Segment>) -> Arc<[Frame]> {
        if let Some(f) = self.results.get(&addr) {
            return f.clone();
        }
        if let Some(f) = self.packed.get(addr) {
            let f: Arc<[Frame]> = f.into();
            self.results.insert(addr, f.clone());
            return f;
        }
        let meter = Meter::start();
        let (frames, inflated) = self.resolve(addr, last);
        let f: Arc<[Frame]> = frames.into();
        self.results.insert(addr, f.clone());
        // The frames' own bytes are the result's; the rest of what was kept (parsed units,
        // symbol tables, the map's growth) is the DWARF state's.
        let result = f.iter().map(frame_bytes).sum::<usize>() + 2 * std::mem::size_of::<usize>();
        let grown = self.measured(&meter, result);
        self.results_used = self.results_used.saturating_add(result);
        self.dwarf_used = self
            .dwarf_used
            .saturating_add_signed(grown - result as isize)
            .saturating_add(inflated);
        self.dwarf_floor.get_or_insert(self.dwarf_used);
        f
    }

    /// Resolves `addr` through its image (loaded on first use); also returns the bytes of
    /// anonymous memory a newly loaded image took for inflated sections.
    fn resolve(&mut self, addr: usize, last: &mut Option<Segment>) -> (Vec<Frame>, usize) {
        let Some(call) = addr.checked_sub(1) else {
            return (vec![unknown(addr)], 0);
        };
        if !last.as_ref().is_some_and(|s| s.range.contains(&call)) {
            *last = crate::stack::segment_of(call);
        }
        let Some(seg) = last.as_ref() else {
            return (vec![unknown(addr)], 0);
        };
        if seg.file.as_deref().is_some_and(is_vdso) {
            // The kernel's vDSO (`clock_gettime`, `gettimeofday`) has no file to read: named
            // as perf and pprof name it, not left as a bare address.
            return (vec![named(addr, VDSO)], 0);
        }
        let mut inflated = 0;
        let path = seg.file.as_deref().unwrap_or(Path::new("/proc/self/exe"));
        if !self.images.contains_key(path) {
            let image = Image::load(path);
            inflated = image.inflated_bytes();
            self.images.insert(path.to_owned(), image);
        }
        let Some(image) = self.images.get(path) else {
            return (vec![unknown(addr)], inflated);
        };
        // A return address: the call is the instruction before it.
        let probe = (addr - 1 - seg.bias) as u64;
        let frames = super::names::resolve_with(addr, |cb| {
            image.frames(probe, cb);
        });
        (frames, inflated)
    }

    /// Whether the DWARF state grew past what a request may hold: the bound, or twice an
    /// image's fixed cost when that alone is larger (so a drop is not followed by another at
    /// the very next address).
    fn dwarf_over(&self) -> bool {
        self.dwarf_used > cache_bytes().max(2 * self.dwarf_floor.unwrap_or(0))
    }

    /// Drops the images and symbol tables (parsed DWARF, mappings, inflated sections).
    fn drop_dwarf(&mut self) {
        self.images = HashMap::new();
        crate::symbolize::symtab::clear();
        self.dwarf_used = 0;
        self.dwarf_floor = None;
        self.drops += 1;
    }

    /// Makes the figures [`usage`] reads current.
    fn publish(&self) {
        USED.store(self.dwarf_used + self.results_used, Relaxed);
        DROPS.store(self.drops, Relaxed);
    }

    /// Drops everything.
    fn drop_all(&mut self) {
        self.drop_dwarf();
        self.results = HashMap::new();
        self.packed = Packed::default();
        self.results_used = 0;
        self.unmeasured = false;
    }

    /// After a request: keeps at most [`cache_bytes`], the resolved addresses first (they
    /// serve the next request alone if it asks for the same stacks). Returns what it let go,
    /// for the caller to free (before the request answers).
    ///
    /// When the DWARF state had to go (in the middle of the request, `dropped_midway`, or
    /// now), nothing is kept: the resolved addresses and the naming state were allocated
    /// among the blocks of the parse just freed, and each small block kept there pins its
    /// page, so the freed parse could not be given back. Measured on a 114 MB binary
    /// (miniserve, line-tables-only): 1.2 MiB kept pinned +19 MiB of RssAnon after a
    /// snapshot, a CPU profile and a second snapshot, and +10 MiB that `malloc_trim` could not
    /// release after one snapshot. Such a binary's requests are all cold (its units' headers
    /// alone are over the bound), so the cache saved little there.
    fn bound(&mut self, dropped_midway: bool) -> Option<Released> {
        let limit = cache_bytes();
        if !dropped_midway && !self.unmeasured && self.dwarf_used + self.results_used <= limit {
            return None;
        }
        // The resolved addresses go on in a few large blocks, packed before the parse is
        // freed (so they are not placed among its holes), if they fit the bound.
        let results = std::mem::take(&mut self.results);
        let packed = std::mem::take(&mut self.packed).with(&results);
        self.results_used = 0;
        if !self.unmeasured && packed.bytes() <= limit {
            self.results_used = packed.bytes();
            self.packed = packed;
        }
        let images = std::mem::take(&mut self.images);
        self.drop_dwarf();
        self.unmeasured = false;
        super::names::forget();
        Some((images, results))
    }
}

/// Caches let go after a request: images, resolved addresses.
type Released = (HashMap<PathBuf, Image>, HashMap<usize, Arc<[Frame]>>);

/// Frees what a request let go and gives the memory back to the system, before the request
/// answers: a few milliseconds on diag's thread, so that the host's memory is back where it
/// was when the response arrives (freed on a thread of its own, it raced the next request and
/// whoever measured the host right after the response).
fn free(released: Released) {
    let _own = crate::alloc_state::IgnoreAllocs::new();
    drop(released);
    trim();
}

/// The heap bytes a resolved frame holds: itself and its strings.
fn frame_bytes(f: &Frame) -> usize {
    std::mem::size_of::<Frame>()
        + f.function.capacity()
        + f.file.as_ref().map_or(0, String::capacity)
}

/// Gives freed heap memory back to the system after a drop: glibc keeps freed chunks in its
/// arenas otherwise. Other allocators (as `DiagAlloc`'s inner one) are not touched.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs `f` on the symbolizer's state with this thread's allocations counted as diag's, then
/// enforces the bound and schedules the idle drop.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let _own = crate::alloc_state::IgnoreAllocs::new();
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    let drops = st.drops;
    let out = f(&mut st);
    let dropped_midway = st.drops > drops;
    let released = st.bound(dropped_midway);
    st.publish();
    st.last_use = Some(Instant::now());
    let empty = st.images.is_empty() && st.results.is_empty() && st.packed.index.is_empty();
    if !st.reaper && !empty {
        st.reaper = spawn_reaper();
    }
    drop(st);
    if let Some(r) = released {
        free(r);
    }
    TRIM_DUE.store(true, Relaxed);
    out
}

/// Set when stacks were named since the last [`trim_after_request`].
static TRIM_DUE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Gives the heap a request freed back to the system, once the request is done with it (its
/// profile model, the symbolizer's parse of the units it read, the encoder's buffers): called
/// by the debug endpoints after a profile's answer is made, when stacks were named since the
/// last call. glibc returns a large free region only when told to (its trim threshold rises
/// to 64 MiB once large blocks were freed), and the blocks a request freed sit in the arena of
/// the thread that served it: without this a 114 MB binary's service kept +63 MiB of RssAnon
/// after one snapshot and a CPU profile (its own live heap 1.2 MiB) until the idle drop.
pub(crate) fn trim_after_request() {
    if TRIM_DUE.swap(false, Relaxed) {
        trim();
    }
}

/// Starts the thread that drops the caches once they have been idle for [`idle`]; false if
/// it cannot be started (the caches then stay until the bound drops them).
fn spawn_reaper() -> bool {
    std::thread::Builder::new()
        .name("diag-symbols".into())
        .spawn(|| {
            std::mem::forget(crate::alloc_state::IgnoreAllocs::new());
            loop {
                let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
                let since = st.last_use.map_or(Duration::MAX, |t| t.elapsed());
                if since >= idle() {
                    st.drop_all();
                    st.publish();
                    st.reaper = false;
                    drop(st);
                    trim();
                    return;
                }
                drop(st);
                std::thread::sleep(idle() - since);
            }
        })
        .is_ok()
}

/// The frame name of an address in the kernel's vDSO.
pub(crate) const VDSO: &str = "[vdso]";

/// Whether the loader's name for an image is the vDSO's (`linux-vdso.so.1`; `linux-gate.so.1`
/// on 32-bit x86): a name, not a path.
fn is_vdso(name: &Path) -> bool {
    !name.is_absolute()
        && name
            .to_str()
            .is_some_and(|n| n.starts_with("linux-vdso") || n.starts_with("linux-gate"))
}

/// Symbolizes a captured stack: inlined frames expanded, the profiler's own frames at the top
/// removed.
pub(crate) fn stack(addrs: &[usize]) -> Vec<Frame> {
    stacks(&[addrs]).pop().unwrap_or_default()
}

/// Symbolizes many captured stacks (as [`stack`] does one), resolving their distinct
/// addresses in address order. Under [`Naming::Raw`] every address becomes an unsymbolized
/// frame ([`Frame::raw`] at the call) and nothing is removed: the machinery at the top goes
/// when the profile is symbolized elsewhere (the profile's [`RAW_STACKS_COMMENT`] says so).
pub(crate) fn stacks(stacks: &[&[usize]]) -> Vec<Vec<Frame>> {
    if naming() == Naming::Raw {
        return raw(stacks);
    }
    let resolved = resolve_all(stacks);
    stacks
        .iter()
        .map(|s| assemble(s.iter().map(|a| &resolved[a])))
        .collect()
}

/// The frames of every address of `stacks` (return addresses: each is looked up at the byte
/// before it), inlined frames expanded, nothing removed: for CPU samples, where diag's own
/// frames are CPU that diag's threads used.
pub(crate) fn stacks_whole(stacks: &[&[usize]]) -> Vec<Vec<Frame>> {
    if naming() == Naming::Raw {
        return raw(stacks);
    }
    let resolved = resolve_all(stacks);
    stacks
        .iter()
        .map(|s| s.iter().flat_map(|a| resolved[a].iter().cloned()).collect())
        .collect()
}

/// Resolves the distinct addresses of `stacks` in address order.
fn resolve_all(stacks: &[&[usize]]) -> HashMap<usize, Arc<[Frame]>> {
    with_state(|st| {
        let mut addrs: Vec<usize> = stacks
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        addrs.sort_unstable();
        let mut out = HashMap::with_capacity(addrs.len());
        let mut last = None;
        for a in addrs {
            out.insert(a, st.frames(a, &mut last));
            if st.dwarf_over() && !st.unmeasured {
                // Over the bound in the middle of a request: start afresh. The units parsed
                // so far lie below the addresses still to come, so none is parsed twice.
                st.drop_dwarf();
            }
        }
        out
    })
}

/// One stack's frames from its addresses' frames, the profiler's own at the top removed.
fn assemble<'a>(per_addr: impl Iterator<Item = &'a Arc<[Frame]>>) -> Vec<Frame> {
    let mut out = Vec::new();
    for f in per_addr {
        out.extend(f.iter().cloned());
    }
    drop_top_machinery(out)
}

/// Unsymbolized stacks: each return address as the frame of its call.
fn raw(stacks: &[&[usize]]) -> Vec<Vec<Frame>> {
    TRIM_DUE.store(true, Relaxed);
    stacks
        .iter()
        .map(|s| s.iter().map(|&a| Frame::raw(call_address(a))).collect())
        .collect()
}

/// Whether the service names frames itself (`DIAG_SYMBOLIZE=on`, the default) or serves
/// addresses for a symbolizer elsewhere (`off`: `diag --binary ...`, `go tool pprof BINARY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Naming {
    /// Frames named here, from the images' DWARF and symbol tables.
    Symbolized,
    /// Addresses and mappings only: no debug info or symbol table is ever opened.
    Raw,
}

/// The process-wide default: false once `DIAG_SYMBOLIZE=off` or `Builder::symbolize(false)`.
static SYMBOLIZE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Sets the process-wide default naming.
pub(crate) fn set_default(naming: Naming) {
    SYMBOLIZE.store(naming == Naming::Symbolized, Relaxed);
}

/// The process-wide default naming.
pub(crate) fn default_naming() -> Naming {
    if SYMBOLIZE.load(Relaxed) {
        Naming::Symbolized
    } else {
        Naming::Raw
    }
}

thread_local! {
    /// This thread's override of the default, for the request it serves.
    static OVERRIDE: std::cell::Cell<Option<Naming>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (which builds a profile on this thread) with `naming` in place of the default;
/// `None` keeps the default.
pub(crate) fn with_naming<R>(naming: Option<Naming>, f: impl FnOnce() -> R) -> R {
    let old = OVERRIDE.with(|o| o.replace(naming));
    struct Restore(Option<Naming>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(old);
    f()
}

/// How stacks built on this thread now are named.
pub(crate) fn naming() -> Naming {
    OVERRIDE
        .with(std::cell::Cell::get)
        .unwrap_or_else(default_naming)
}

/// The profile comment for stacks built now: `Some` when they are unsymbolized, saying what
/// the symbolizer that names them must do (see [`crate::profile::RAW_STACKS_COMMENT`]).
/// With it, the main executable's code hash (`exe_code=`), by which a binary of another
/// build ID with the same code can still name the profile.
pub(crate) fn raw_comment(drop_machinery: bool) -> Vec<String> {
    if naming() != Naming::Raw {
        return Vec::new();
    }
    let mut out = vec![format!(
        "{}={}",
        crate::profile::RAW_STACKS_COMMENT,
        if drop_machinery {
            crate::profile::RAW_DROP_TOP_MACHINERY
        } else {
            crate::profile::RAW_WHOLE
        }
    )];
    #[cfg(target_os = "linux")]
    out.extend(super::process::exe_code_comment());
    out
}

/// What the symbolizer held after its last request or drop: bytes counted against
/// [`cache_bytes`], and the number of times its DWARF state was dropped.
pub(crate) fn usage() -> (usize, u64) {
    (USED.load(Relaxed), DROPS.load(Relaxed))
}

/// Whether `path` names an image the symbolizer has loaded (for tests).
#[cfg(test)]
fn has_image(path: &Path) -> bool {
    let st = state().lock().unwrap_or_else(|e| e.into_inner());
    st.images.contains_key(path)
}

#[cfg(test)]
mod tests;
