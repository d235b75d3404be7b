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
/// `addr2line` parses every compilation unit's header, abbreviations and line-program header
/// when it opens an image: on a 114 MB binary of 5,754 units (miniserve, line-tables-only),
/// +50 MiB before the first address and +97 MiB after 2,000 addresses spread over it. Opening
/// one unit at a time (its slice of `.debug_info`, found through `.debug_aranges`) was tried
/// and measured: 5,333 of those units name the abstract origin of inlined functions in other
/// units (`DW_FORM_ref_addr`), which a unit opened alone cannot follow, so nearly every
/// address needed the whole image anyway. The bound on what a request may hold
/// (`stack::resolve`) and `DIAG_SYMBOLIZE=off` (names made by the CLI) are the answers.
pub(crate) struct Image {
    // Declared first so it is dropped first: it borrows from `inflated` and `file`.
    ctx: Option<addr2line::Context<Slice>>,
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
            ctx: None,
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
        if let Some((ctx, inflated)) = context(&file) {
            image.ctx = Some(ctx);
            image.inflated = inflated;
        }
        image.file = Some(file);
        image
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
    pub(crate) fn frames<'s>(&'s self, probe: u64, each: &mut dyn FnMut(&RawFrame<'s>)) -> bool {
        let mut any = false;
        if let Some(ctx) = &self.ctx
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
                        name: self.symbol(probe),
                        file,
                        line,
                    }),
                }
            }
        }
        if !any && let Some(name) = self.symbol(probe) {
            any = true;
            each(&RawFrame {
                name: Some(name),
                file: None,
                line: None,
            });
        }
        any
    }

    /// The raw symbol-table name of the function at file address `probe`.
    fn symbol(&self, probe: u64) -> Option<Cow<'static, [u8]>> {
        super::symtab::with_raw_name(&self.path, probe, |n| n.map(|n| Cow::Owned(n.to_vec())))
    }
}

/// An `addr2line` context over `file`'s debug sections, and the buffers holding the sections
/// that had to be inflated; None if the file is not an object file or has no DWARF.
fn context(file: &Mapped) -> Option<(addr2line::Context<Slice>, Vec<Mapped>)> {
    // SAFETY: the mapping lives in the `Image` next to the context made here, which is declared
    // (and so dropped) before it; nothing else uses the 'static lifetime.
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
    let dwarf = gimli::Dwarf::load(|id| -> Result<Slice, ()> {
        let bytes = section(&obj, id.name(), &mut inflated).unwrap_or(&[]);
        Ok(gimli::EndianSlice::new(bytes, endian))
    })
    .ok()?;
    let ctx = addr2line::Context::from_dwarf(dwarf).ok()?;
    Some((ctx, inflated))
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
