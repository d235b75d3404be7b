//! The cached unwinder's view of the loaded modules: each image's executable range and its
//! `.eh_frame_hdr`/`.eh_frame` as mapped, found with `dl_iterate_phdr` and rescanned when the
//! loader's add/remove counters move.

use std::ffi::CStr;
use std::ops::{ControlFlow, Range};
use std::sync::{RwLock, RwLockReadGuard};

use framehop::x86_64::UnwinderX86_64;
use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder as _};

use super::each_image;

/// Unwind data is read in place from the loaded images; see [`Modules`] for why the
/// `'static` is sound.
pub(super) type Data = &'static [u8];
/// Allocation-free during unwinding (fixed-size CFI evaluation state in the cache), so the
/// same unwinder serves the blocking watchdog's signal handler.
pub(super) type Fast = UnwinderX86_64<Data, MustNotAllocateDuringUnwind>;

/// A module's executable range and the address of its `.eh_frame_hdr`.
type Code = (Range<usize>, usize);

/// The loaded modules as the cached unwinder sees them.
///
/// The slices in `unwinder` point into loaded images. They are used only while the
/// loader's counters equal `generation` (checked before every capture, under the read
/// lock), i.e. while no image has been loaded or unloaded since the scan; a changed
/// generation makes the capture rescan or fall back.
pub(super) struct Modules {
    pub(super) unwinder: Fast,
    /// Executable ranges of the modules with the address of each one's `.eh_frame_hdr`,
    /// sorted: a return address outside all of them ends the cached attempt.
    code: Vec<Code>,
    generation: (u64, u64),
}

static MODULES: RwLock<Option<Modules>> = RwLock::new(None);

/// Read access to the module table.
pub(super) type ModulesGuard = RwLockReadGuard<'static, Option<Modules>>;

/// The table as last scanned, without asking the loader whether it is current (for signal
/// handlers, which check each frame's module themselves); None while it is being rewritten.
#[cfg(feature = "server")]
pub(super) fn last_scanned() -> Option<ModulesGuard> {
    MODULES.try_read().ok()
}

/// The module table for `generation`, rescanned first if it is stale; None if another
/// thread holds it for writing (never waits).
pub(super) fn modules(generation: (u64, u64)) -> Option<ModulesGuard> {
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
    /// The loader's counters when this table was scanned: they name the module set.
    pub(super) fn generation(&self) -> (u64, u64) {
        self.generation
    }

    /// The code range and `.eh_frame_hdr` address of the module whose code holds `addr`.
    fn entry_of(&self, addr: usize) -> Option<&Code> {
        let i = self.code.partition_point(|(r, _)| r.start <= addr);
        self.code
            .get(i.checked_sub(1)?)
            .filter(|(r, _)| r.contains(&addr))
    }

    /// The `.eh_frame_hdr` address of the module whose code holds `addr`.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(super) fn module_of(&self, addr: usize) -> Option<usize> {
        self.entry_of(addr).map(|(_, hdr)| *hdr)
    }

    #[cfg(test)]
    pub(super) fn knows(&self, addr: usize) -> bool {
        self.module_of(addr).is_some()
    }

    /// The code range of the module holding `addr`, if any.
    pub(super) fn code_range_of(&self, addr: usize) -> Option<Range<usize>> {
        self.entry_of(addr).map(|(r, _)| r.clone())
    }
}

/// The loader's (loads, unloads) counters: they change whenever an image comes or goes.
pub(super) fn loader_generation() -> (u64, u64) {
    let mut g = (0, 0);
    each_image(|info| {
        g = (info.dlpi_adds, info.dlpi_subs);
        ControlFlow::Break(()) // the counters are the same in every entry
    });
    g
}

/// Builds the module table from the loader's list of images.
fn scan(generation: (u64, u64)) -> Modules {
    let mut found = Vec::new();
    each_image(|info| {
        // SAFETY: the loader describes an image loaded in this process.
        found.extend(unsafe { module(info) });
        ControlFlow::Continue(())
    });
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
    let hdr_bytes: Data = unsafe { std::slice::from_raw_parts(hdr.start as *const u8, hdr.len()) };
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
        let own = m.code_range_of(here).expect("own code range");
        assert!(own.contains(&here) && m.knows(own.start) && m.knows(own.end - 1));
        assert_eq!(m.code_range_of(0x10), None);
        assert!(m.code.windows(2).all(|w| w[0].0.end <= w[1].0.start));
    }
}
