//! File, line and inlined frames from an image's DWARF, read in place from the mapped file.
//!
//! An [`Image`] maps its file read-only and hands the debug sections to `addr2line` as slices
//! of the mapping, so the section bytes stay file-backed pages; only sections the linker stored
//! compressed are inflated, into anonymous mappings that are unmapped with the image.
//! `addr2line` parses a compilation unit's line table and functions the first time an address
//! in it is asked for; [`crate::stack::symbolize`] bounds what that keeps by dropping images.
//! An image without debug info of its own gets it from its separate debug file, found by GNU
//! build ID or `.gnu_debuglink` under `/usr/lib/debug` as gdb looks for them.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use addr2line::gimli;
use object::{Object, ObjectSection};

use super::mapped::Mapped;
use super::symbols::RawFrame;

type Slice = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// One image's DWARF, over its mapped (debug) file.
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
    /// Opens the DWARF of the image file at `path` (or of its separate debug file). An image
    /// without any still names functions from its symbol table.
    pub(crate) fn load(path: &Path) -> Image {
        let mut image = Image {
            ctx: None,
            inflated: Vec::new(),
            file: None,
            path: path.to_owned(),
        };
        let Some(file) = Mapped::open(path) else {
            return image;
        };
        let file = match debug_file(&file, path) {
            Some(debug) => debug,
            None => file,
        };
        if let Some((ctx, inflated)) = context(&file) {
            image.ctx = Some(ctx);
            image.inflated = inflated;
        }
        image.file = Some(file);
        image
    }

    /// Bytes of anonymous memory this image holds for inflated sections.
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

/// The separate debug file of an image without `.debug_info` of its own: by GNU build ID
/// (`/usr/lib/debug/.build-id/ab/cdef….debug`), then by `.gnu_debuglink` (next to the image,
/// in its `.debug` directory, or under `/usr/lib/debug`), as gdb looks.
fn debug_file(file: &Mapped, path: &Path) -> Option<Mapped> {
    let obj = object::File::parse(file.bytes()).ok()?;
    if obj.section_by_name(".debug_info").is_some() {
        return None;
    }
    const DEBUG: &str = "/usr/lib/debug";
    if let Ok(Some(id)) = obj.build_id()
        && id.len() >= 2
    {
        let hex: String = id[1..].iter().map(|b| format!("{b:02x}")).collect();
        let p = format!("{DEBUG}/.build-id/{:02x}/{hex}.debug", id[0]);
        if let Some(m) = Mapped::open(Path::new(&p)) {
            return Some(m);
        }
    }
    let (name, _crc) = obj.gnu_debuglink().ok()??;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let real = std::fs::canonicalize(path).ok()?;
    let dir = real.parent()?;
    let candidates = [
        dir.join(name),
        dir.join(".debug").join(name),
        Path::new(DEBUG)
            .join(dir.strip_prefix("/").unwrap_or(dir))
            .join(name),
    ];
    candidates
        .iter()
        .filter(|c| **c != real)
        .find_map(|c| Mapped::open(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_line() -> usize {
        std::hint::black_box(11)
    }

    /// This test binary's own debug info names its functions with file and line.
    #[test]
    fn reads_this_binarys_dwarf() {
        assert_eq!(a_function_with_a_line(), 11);
        let addr = a_function_with_a_line as *const () as usize;
        let seg = crate::stack::segment_of(addr).expect("segment");
        let image = Image::load(&seg.file.unwrap_or_else(|| PathBuf::from("/proc/self/exe")));
        let mut got = Vec::new();
        let called = image.frames((addr - seg.bias) as u64 + 1, &mut |f| {
            got.push((
                f.name
                    .as_deref()
                    .map(|n| format!("{:#}", backtrace::SymbolName::new(n))),
                f.file.map(str::to_owned),
                f.line,
            ))
        });
        assert!(called);
        let (name, file, line) = got.last().expect("a frame").clone();
        assert!(
            name.as_deref()
                .is_some_and(|n| n.ends_with("a_function_with_a_line")),
            "{got:?}"
        );
        if image.ctx.is_some() {
            assert!(file.is_some_and(|f| f.ends_with("dwarf.rs")), "{got:?}");
            assert!(line.is_some_and(|l| l > 0), "{got:?}");
        }
    }

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
