//! File, line and inlined frames from an image's DWARF, read in place from the mapped file.
//!
//! An [`Image`] maps its file read-only and hands the debug sections to `addr2line` as slices
//! of the mapping, so the section bytes stay file-backed pages; only sections the linker stored
//! compressed are inflated, into anonymous mappings that are unmapped with the image.
//! `addr2line` parses a compilation unit's line table and functions the first time an address
//! in it is asked for; the service's symbolizer (`stack::resolve`) bounds what that keeps by
//! dropping images.
//! An image without debug info of its own gets it from its separate debug file, found by GNU
//! build ID or `.gnu_debuglink` under `/usr/lib/debug` as gdb looks for them.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use addr2line::gimli;
use object::{Object, ObjectSection};

use super::mapped::Mapped;
use super::naming::RawFrame;

type Slice = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// One image's DWARF, over its mapped (debug) file.
///
/// Compilation units are opened one at a time. `addr2line` parses every unit's header,
/// abbreviations and line-program header when it opens an image (on a 114 MB binary of 5,757
/// units: +50 MiB before the first address, +97 MiB after 2,000 addresses spread over it),
/// so an image is indexed instead from `.debug_aranges` (address ranges -> unit) and the
/// unit headers, and `addr2line` is given one unit at a time: its slice of `.debug_info` (the
/// other sections whole: they are addressed by absolute offsets the unit holds). Addresses come
/// sorted, so one unit's parse is kept at a time. A unit that refers into others
/// (`DW_FORM_ref_addr`: references across units, from LTO) and addresses no range covers are
/// resolved by one whole-image context, as before.
pub(crate) struct Image {
    // Declared first so they are dropped first: they borrow from `inflated` and `file`.
    /// The unit last opened: its index in `units` and its context.
    unit: Option<(usize, addr2line::Context<Slice>)>,
    /// The whole image's context, made when first needed.
    ctx: Option<addr2line::Context<Slice>>,
    /// The debug sections, as read from the file (or inflated).
    sections: Option<Sections>,
    /// Each unit's place in `.debug_info` (offset, length) and whether it can be opened on
    /// its own (None: not checked yet).
    units: Vec<(usize, usize, Option<bool>)>,
    /// Address ranges -> unit index, sorted by start.
    ranges: Vec<(u64, u64, u32)>,
    inflated: Vec<Mapped>,
    #[allow(dead_code)] // Kept mapped for `ctx`, which borrows it.
    file: Option<Mapped>,
    /// The image file as loaded (for symbol-table names).
    path: PathBuf,
}

impl Image {
    /// Opens the DWARF of the image file at `path` (or of its separate debug file, looked for
    /// under `/usr/lib/debug` as gdb does). An image without any still names functions from
    /// its symbol table.
    #[cfg_attr(not(feature = "heap"), allow(dead_code))]
    pub(crate) fn load(path: &Path) -> Image {
        Image::load_with(path, None, &[Path::new(DEBUG_DIR)])
    }

    /// [`Image::load`] with the separate debug file given (`debug`), or else looked for under
    /// `debug_dirs` (each a tree like `/usr/lib/debug`: `.build-id/ab/cdef....debug`) and
    /// next to the image (`.gnu_debuglink`). Names from the symbol table come from `path`,
    /// or from the debug file when `path` has none (a stripped binary).
    pub(crate) fn load_with(path: &Path, debug: Option<&Path>, debug_dirs: &[&Path]) -> Image {
        let mut image = Image {
            unit: None,
            ctx: None,
            sections: None,
            units: Vec::new(),
            ranges: Vec::new(),
            inflated: Vec::new(),
            file: None,
            path: path.to_owned(),
        };
        let Some(file) = Mapped::open(path) else {
            return image;
        };
        let separate = match debug {
            Some(d) => Mapped::open(d).map(|m| (m, d.to_owned())),
            None => debug_file(&file, path, debug_dirs),
        };
        let file = match separate {
            Some((debug, debug_path)) => {
                let has_symtab = object::File::parse(file.bytes())
                    .is_ok_and(|o| o.section_by_name(".symtab").is_some());
                if !has_symtab {
                    // A stripped binary: its debug file keeps the full symbol table.
                    image.path = debug_path;
                }
                debug
            }
            None => file,
        };
        if let Some((sections, inflated)) = Sections::read(&file) {
            let (units, ranges) = sections.index();
            image.units = units;
            image.ranges = ranges;
            image.sections = Some(sections);
            image.inflated = inflated;
        }
        image.file = Some(file);
        image
    }

    /// The context that resolves `probe`: its unit's alone where the index has it and the unit
    /// stands alone, else the whole image's.
    fn context_for(&mut self, probe: u64) -> Option<&addr2line::Context<Slice>> {
        let sections = self.sections.as_ref()?;
        let i = self.ranges.partition_point(|r| r.0 <= probe);
        let unit = i
            .checked_sub(1)
            .map(|i| self.ranges[i])
            .filter(|r| probe < r.1)
            .map(|r| r.2 as usize);
        if let Some(u) = unit {
            if self.unit.as_ref().is_some_and(|(k, _)| *k == u) {
                return self.unit.as_ref().map(|(_, c)| c);
            }
            let (offset, len, alone) = self.units[u];
            let alone = match alone {
                Some(a) => a,
                None => {
                    let a = sections.stands_alone(offset, len);
                    self.units[u].2 = Some(a);
                    a
                }
            };
            if alone {
                // The previous unit's parse goes before the next one's is made.
                self.unit = None;
                if let Some(ctx) = sections.unit_context(offset, len) {
                    self.unit = Some((u, ctx));
                    return self.unit.as_ref().map(|(_, c)| c);
                }
            }
        }
        if self.ctx.is_none() {
            self.ctx = sections.whole_context();
        }
        self.ctx.as_ref()
    }

    /// The file function names are read from when DWARF has none (the image, or its debug
    /// file when the image is stripped).
    pub(crate) fn symbol_file(&self) -> &Path {
        &self.path
    }

    /// Bytes of anonymous memory this image holds for inflated sections.
    #[cfg_attr(not(feature = "heap"), allow(dead_code))]
    pub(crate) fn inflated_bytes(&self) -> usize {
        self.inflated.iter().map(Mapped::len).sum()
    }

    /// Calls `each` for every function at file address `probe`, innermost (inlined) first,
    /// with the name DWARF gives it (or, if none, its symbol's), file and line; if DWARF knows
    /// nothing there, once with the symbol table's name. Returns whether `each` was called.
    pub(crate) fn frames<'s>(
        &'s mut self,
        probe: u64,
        each: &mut dyn FnMut(&RawFrame<'s>),
    ) -> bool {
        let mut any = false;
        let path = self.path.clone();
        let symbol = |probe| symbol_at(&path, probe);
        if let Some(ctx) = self.context_for(probe)
            && let Ok(mut it) = ctx.find_frames(probe).skip_all_loads()
        {
            while let Ok(Some(f)) = it.next() {
                any = true;
                let (file, line) = match &f.location {
                    Some(l) => (l.file, l.line),
                    None => (None, None),
                };
                match &f.function {
                    Some(func) => each(&RawFrame {
                        name: Some(Cow::Borrowed(func.name.slice())),
                        file,
                        line,
                    }),
                    None => each(&RawFrame {
                        name: symbol(probe),
                        file,
                        line,
                    }),
                }
            }
        }
        if !any && let Some(name) = symbol(probe) {
            any = true;
            each(&RawFrame {
                name: Some(name),
                file: None,
                line: None,
            });
        }
        any
    }
}

/// The raw symbol-table name of the function at file address `probe` of the file at `path`.
fn symbol_at(path: &Path, probe: u64) -> Option<Cow<'static, [u8]>> {
    super::symtab::with_raw_name(path, probe, |n| n.map(|n| Cow::Owned(n.to_vec())))
}

/// An image's debug sections, as slices of its mapping or of inflated buffers.
struct Sections {
    endian: gimli::RunTimeEndian,
    by_id: Vec<(gimli::SectionId, &'static [u8])>,
}

impl Sections {
    /// `file`'s debug sections, and the buffers holding those that had to be inflated; None
    /// if the file is not an object file or has no DWARF.
    fn read(file: &Mapped) -> Option<(Sections, Vec<Mapped>)> {
        // SAFETY: the mapping lives in the `Image` next to the contexts made from these
        // sections, which are declared (and so dropped) before it; nothing else uses the
        // 'static lifetime.
        let data: &'static [u8] =
            unsafe { std::slice::from_raw_parts(file.bytes().as_ptr(), file.len()) };
        let obj = object::File::parse(data).ok()?;
        obj.section_by_name(".debug_info")?;
        let endian = if obj.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let mut inflated = Vec::new();
        let mut by_id = Vec::new();
        let _ = gimli::Dwarf::load(|id| -> Result<Slice, ()> {
            let bytes = section(&obj, id.name(), &mut inflated).unwrap_or(&[]);
            by_id.push((id, bytes));
            Ok(gimli::EndianSlice::new(bytes, endian))
        });
        Some((Sections { endian, by_id }, inflated))
    }

    /// Section `id`'s bytes (empty if the file has none).
    fn get(&self, id: gimli::SectionId) -> &'static [u8] {
        self.by_id
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(&[], |(_, b)| b)
    }

    /// The sections as `gimli` reads them, with `.debug_info` narrowed to `info` when given
    /// (and then no `.debug_aranges`: its offsets are the whole section's).
    fn dwarf(&self, info: Option<(usize, usize)>) -> Option<gimli::Dwarf<Slice>> {
        gimli::Dwarf::load(|id| -> Result<Slice, ()> {
            let bytes = match (id, info) {
                (gimli::SectionId::DebugInfo, Some((off, len))) => self
                    .get(id)
                    .get(off..off.checked_add(len).ok_or(())?)
                    .ok_or(())?,
                (gimli::SectionId::DebugAranges, Some(_)) => &[],
                _ => self.get(id),
            };
            Ok(gimli::EndianSlice::new(bytes, self.endian))
        })
        .ok()
    }

    /// The whole image's context.
    fn whole_context(&self) -> Option<addr2line::Context<Slice>> {
        addr2line::Context::from_dwarf(self.dwarf(None)?).ok()
    }

    /// A context of the unit at `offset` (`len` bytes with its header) alone.
    fn unit_context(&self, offset: usize, len: usize) -> Option<addr2line::Context<Slice>> {
        addr2line::Context::from_dwarf(self.dwarf(Some((offset, len)))?).ok()
    }

    /// Every unit's (offset, length) and, from `.debug_aranges`, the address ranges of each,
    /// sorted: read without parsing any unit.
    fn index(&self) -> (Vec<(usize, usize, Option<bool>)>, Vec<(u64, u64, u32)>) {
        let mut units = Vec::new();
        let mut ranges = Vec::new();
        let Some(dwarf) = self.dwarf(None) else {
            return (units, ranges);
        };
        let mut headers = dwarf.units();
        while let Ok(Some(h)) = headers.next() {
            if let Some(off) = h.debug_info_offset() {
                units.push((off.0, h.length_including_self(), None));
            }
        }
        let mut aranges = dwarf.debug_aranges.headers();
        while let Ok(Some(h)) = aranges.next() {
            let off = h.debug_info_offset().0;
            let Ok(u) = units.binary_search_by_key(&off, |u| u.0) else {
                continue;
            };
            let mut entries = h.entries();
            while let Ok(Some(e)) = entries.next() {
                if e.length() > 0 {
                    let r = e.range();
                    ranges.push((r.begin, r.end, u as u32));
                }
            }
        }
        ranges.sort_unstable();
        // A range that overlaps the one before it (a linker's folding of identical code can
        // make such) is left out: its addresses go to the earlier range's unit, or, past that
        // range, to the whole image's context.
        let mut out: Vec<(u64, u64, u32)> = Vec::with_capacity(ranges.len());
        for r in ranges {
            if out.last().is_none_or(|last| r.0 >= last.1) {
                out.push(r);
            }
        }
        (units, out)
    }

    /// Whether the unit at `offset` can be read alone: none of its abbreviations refers into
    /// another unit (`DW_FORM_ref_addr` and the like, which name absolute offsets of the whole
    /// section).
    fn stands_alone(&self, offset: usize, len: usize) -> bool {
        let Some(dwarf) = self.dwarf(Some((offset, len))) else {
            return false;
        };
        let Ok(Some(header)) = dwarf.units().next() else {
            return false;
        };
        let Ok(abbrevs) = dwarf.abbreviations(&header) else {
            return false;
        };
        // Abbreviation codes are numbered from 1 without gaps by the compilers that matter;
        // a run of 64 missing codes ends the scan.
        let (mut code, mut missing) = (1u64, 0);
        while missing < 64 {
            match abbrevs.get(code) {
                Some(a) => {
                    missing = 0;
                    let across = a.attributes().iter().any(|s| {
                        matches!(
                            s.form(),
                            gimli::DW_FORM_ref_addr
                                | gimli::DW_FORM_GNU_ref_alt
                                | gimli::DW_FORM_ref_sup4
                                | gimli::DW_FORM_ref_sup8
                                | gimli::DW_FORM_ref_sig8
                        )
                    });
                    if across {
                        return false;
                    }
                }
                None => missing += 1,
            }
            code += 1;
        }
        true
    }
}

/// The bytes of section `name`: a slice of the mapping, or, for a compressed section, of a new
/// anonymous buffer added to `inflated`. None if missing or compressed in a format not read
/// here (zstd).
fn section(
    obj: &object::File<'static>,
    name: &str,
    inflated: &mut Vec<Mapped>,
) -> Option<&'static [u8]> {
    let sec = obj.section_by_name(name)?;
    let c = sec.compressed_data().ok()?;
    match c.format {
        object::CompressionFormat::None => Some(c.data),
        object::CompressionFormat::Zlib => {
            let len = usize::try_from(c.uncompressed_size).ok()?;
            let buf = Mapped::anonymous(len, |out| inflate(c.data, out))?;
            // SAFETY: the buffer is pushed to `inflated`, which the `Image` keeps (its pages do
            // not move with the `Mapped` value) until after the context that reads it.
            let bytes: &'static [u8] =
                unsafe { std::slice::from_raw_parts(buf.bytes().as_ptr(), buf.len()) };
            inflated.push(buf);
            Some(bytes)
        }
        _ => None,
    }
}

/// Inflates the zlib stream `input` into `out`, which it must fill exactly.
fn inflate(input: &[u8], out: &mut [u8]) -> bool {
    let mut d = flate2::Decompress::new(true);
    matches!(
        d.decompress(input, out, flate2::FlushDecompress::Finish),
        Ok(flate2::Status::StreamEnd)
    ) && d.total_out() == out.len() as u64
}

/// Where gdb looks for separate debug files.
pub(crate) const DEBUG_DIR: &str = "/usr/lib/debug";

/// The path of the debug file of build ID `id` (hex) in the debug tree `dir`:
/// `dir/.build-id/ab/cdef….debug`.
pub(crate) fn build_id_path(dir: &Path, id: &str) -> Option<PathBuf> {
    (id.len() >= 4 && id.is_ascii()).then(|| {
        dir.join(".build-id")
            .join(&id[..2])
            .join(format!("{}.debug", &id[2..]))
    })
}

/// The separate debug file (and its path) of an image without `.debug_info` of its own: by
/// GNU build ID under each of `dirs` (`/usr/lib/debug/.build-id/ab/cdef….debug`), then by
/// `.gnu_debuglink` (next to the image, in its `.debug` directory, or under each of `dirs`),
/// as gdb looks.
fn debug_file(file: &Mapped, path: &Path, dirs: &[&Path]) -> Option<(Mapped, PathBuf)> {
    let obj = object::File::parse(file.bytes()).ok()?;
    if obj.section_by_name(".debug_info").is_some() {
        return None;
    }
    if let Ok(Some(id)) = obj.build_id() {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        for dir in dirs {
            if let Some(p) = build_id_path(dir, &hex)
                && let Some(m) = Mapped::open(&p)
            {
                return Some((m, p));
            }
        }
    }
    let (name, _crc) = obj.gnu_debuglink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let real = std::fs::canonicalize(path).ok()?;
    let dir = real.parent()?;
    let mut candidates = vec![dir.join(name), dir.join(".debug").join(name)];
    for d in dirs {
        candidates.push(d.join(dir.strip_prefix("/").unwrap_or(dir)).join(name));
    }
    candidates
        .into_iter()
        .filter(|c| *c != real)
        .find_map(|c| Mapped::open(&c).map(|m| (m, c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflates_zlib_exactly() {
        use std::io::Write;
        let text = b"debug section bytes, debug section bytes, debug section bytes";
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(text).unwrap();
        let z = z.finish().unwrap();
        let buf = Mapped::anonymous(text.len(), |out| inflate(&z, out)).expect("inflated");
        assert_eq!(buf.bytes(), text);
        // A wrong size is refused, not padded or cut.
        assert!(Mapped::anonymous(text.len() + 1, |out| inflate(&z, out)).is_none());
        assert!(Mapped::anonymous(text.len() - 1, |out| inflate(&z, out)).is_none());
    }
}
