//! Function names from ELF symbol tables.
//!
//! The debug info of a build with `debug = "line-tables-only"` names functions without their
//! module path (`remember_request`); the symbol table of the same binary names the function
//! an address lies in with its full path (`_ZN13diag_examples5leaky16remember_request...`).
//! The naming rules ([`super::naming`]) ask here for the outermost (not inlined) frame of an
//! address whose debug-info name is a short Rust name; builds with full or "limited" debug
//! info, and C functions, never get here. A table is made when a profile is symbolized (never
//! on the allocation path), once per image file: the file stays mapped read-only (its pages
//! are file-backed, which the kernel can drop and read again) and an index of its function
//! symbols is kept, at most [`MAX_SYMBOLS`] entries (24 bytes each). An image without a
//! `.symtab` (a stripped shared library such as libc) is indexed from its dynamic symbols.
//! The stubs of the procedure linkage table have no symbols: they are named as binutils and
//! `perf` name them (`memcpy@plt`), from the order of the `.rela.plt` relocations (x86-64 and
//! AArch64 layouts), so a sample taken in a stub is named too.
//! Tables are keyed by file path: the service's symbolizer (`stack::resolve`) and the CLI's
//! (`symbolize::files`) use the same ones, and drop them with their other caches ([`clear`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use object::{Object, ObjectSymbol, SymbolKind};

use super::mapped::Mapped;
use super::naming::demangle;

/// Function symbols indexed per image at most.
const MAX_SYMBOLS: usize = 1 << 19;

/// A function symbol: its address in the file, and where its name lies in the file; a PLT
/// stub (`plt`) is named by the symbol it jumps to, with `@plt` added.
struct Func {
    addr: u64,
    name_at: u64,
    size: u32,
    name_len: u32,
    plt: bool,
}

/// One image's function symbols, sorted by address, over the mapped file.
pub(crate) struct Table {
    map: Mapped,
    funcs: Vec<Func>,
}

impl Table {
    /// Indexes the function symbols of the ELF file at `path`; None if it cannot be read or
    /// parsed.
    pub(crate) fn load(path: &Path) -> Option<Table> {
        let map = Mapped::open(path)?;
        let bytes = map.bytes();
        let file = object::File::parse(bytes).ok()?;
        let mut funcs = Vec::new();
        let mut symbols = file.symbols().peekable();
        let symbols: Box<dyn Iterator<Item = object::Symbol<'_, '_>>> = if symbols.peek().is_some()
        {
            Box::new(symbols)
        } else {
            Box::new(file.dynamic_symbols())
        };
        for sym in symbols {
            if sym.kind() != SymbolKind::Text || sym.size() == 0 {
                continue;
            }
            let (Ok(name), Ok(size)) = (sym.name_bytes(), u32::try_from(sym.size())) else {
                continue;
            };
            if funcs.len() == MAX_SYMBOLS {
                break;
            }
            // Names are slices of the mapped file: keep their place, not a copy.
            let name_at = (name.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
            if name_at >= bytes.len() {
                continue;
            }
            funcs.push(Func {
                addr: sym.address(),
                name_at: name_at as u64,
                size,
                name_len: name.len() as u32,
                plt: false,
            });
        }
        drop(file);
        funcs.extend(plt_stubs(bytes).unwrap_or_default());
        // Aliases (one address, several names: libc's `xdr_uint32_t` and `__GI_xdr_uint32_t`)
        // sort the name with the fewest leading underscores last, where lookups land, so the
        // public name is the one given, the same one every time.
        let underscores = |f: &Func| {
            let name = bytes.get(f.name_at as usize..).unwrap_or_default();
            name.iter().take_while(|&&b| b == b'_').count()
        };
        funcs.sort_unstable_by(|a, b| {
            a.addr
                .cmp(&b.addr)
                .then_with(|| underscores(b).cmp(&underscores(a)))
                .then_with(|| a.name_len.cmp(&b.name_len).reverse())
        });
        Some(Table { map, funcs })
    }

    /// The raw names of all indexed functions.
    fn names(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = self.map.bytes();
        self.funcs
            .iter()
            .filter_map(move |f| bytes.get(f.name_at as usize..)?.get(..f.name_len as usize))
    }

    /// The file addresses of the PLT stubs indexed.
    #[cfg(test)]
    pub(crate) fn plt_stub_addrs(&self) -> Vec<u64> {
        self.funcs
            .iter()
            .filter(|f| f.plt)
            .map(|f| f.addr)
            .collect()
    }

    /// The raw name of the function whose symbol covers file address `at` (`memcpy@plt` for
    /// a PLT stub).
    pub(crate) fn name_at(&self, at: u64) -> Option<Cow<'_, [u8]>> {
        let i = self
            .funcs
            .partition_point(|f| f.addr <= at)
            .checked_sub(1)?;
        let f = &self.funcs[i];
        if at >= f.addr.saturating_add(u64::from(f.size)) {
            return None;
        }
        let name = self
            .map
            .bytes()
            .get(f.name_at as usize..)?
            .get(..f.name_len as usize)?;
        Some(if f.plt {
            Cow::Owned([name, b"@plt"].concat())
        } else {
            Cow::Borrowed(name)
        })
    }
}

/// The stubs of the procedure linkage table of a 64-bit little-endian ELF file: the stub of
/// the i-th `.rela.plt` relocation lies at `.plt.sec + 16 i` when the file has a `.plt.sec`
/// (x86-64 with IBT), else after the `.plt` header (16 bytes on x86-64, 32 on AArch64) at
/// `16 i` (the layout binutils assumes for its `@plt` names). Other machines: none. The
/// names are the dynamic symbols the relocations name, as slices of `bytes`.
fn plt_stubs(bytes: &[u8]) -> Option<Vec<Func>> {
    use object::elf;
    use object::read::elf::{ElfFile64, Rela as _, SectionHeader as _};
    let file = ElfFile64::<object::LittleEndian>::parse(bytes).ok()?;
    let endian = file.endian();
    let header = file.elf_header();
    let plt_header = match header.e_machine.get(endian) {
        elf::EM_X86_64 => 16,
        elf::EM_AARCH64 => 32,
        _ => return None,
    };
    let sections = file.elf_section_table();
    let (_, rela) = sections.section_by_name(endian, b".rela.plt")?;
    let relas: &[elf::Rela64<object::LittleEndian>] = rela.data_as_array(endian, bytes).ok()?;
    let first = match sections.section_by_name(endian, b".plt.sec") {
        Some((_, sec)) => sec.sh_addr(endian),
        None => sections.section_by_name(endian, b".plt")?.1.sh_addr(endian) + plt_header,
    };
    let dynsym = sections.symbols(endian, bytes, elf::SHT_DYNSYM).ok()?;
    let mut out = Vec::with_capacity(relas.len());
    for (i, r) in relas.iter().enumerate() {
        let Some(index) = r.symbol(endian, false) else {
            continue;
        };
        let Ok(name) = dynsym
            .symbol(index)
            .and_then(|sym| dynsym.symbol_name(endian, sym))
        else {
            continue;
        };
        let name_at = (name.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
        if name.is_empty() || name_at >= bytes.len() {
            continue;
        }
        out.push(Func {
            addr: first + 16 * i as u64,
            name_at: name_at as u64,
            size: 16,
            name_len: name.len() as u32,
            plt: true,
        });
    }
    Some(out)
}

/// Tables by image file; None for a file that could not be read.
fn tables() -> &'static Mutex<HashMap<PathBuf, Option<Table>>> {
    static TABLES: OnceLock<Mutex<HashMap<PathBuf, Option<Table>>>> = OnceLock::new();
    TABLES.get_or_init(Default::default)
}

/// Calls `f` with the symbol table of the image file at `path` (indexed on first use, then
/// kept until [`clear`]), or None if it cannot be read.
pub(crate) fn with_table<R>(path: &Path, f: impl FnOnce(Option<&Table>) -> R) -> R {
    let mut tables = tables().lock().unwrap_or_else(|e| e.into_inner());
    let table = match tables.get(path) {
        Some(t) => t,
        None => tables
            .entry(path.to_owned())
            .or_insert_with_key(|p| Table::load(p)),
    };
    f(table.as_ref())
}

/// Calls `f` with the raw (mangled) name of the function whose symbol covers file address `at`
/// in the image file `path`, or None.
pub(crate) fn with_raw_name<R>(path: &Path, at: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    with_table(path, |t| f(t.and_then(|t| t.name_at(at)).as_deref()))
}

/// Drops every table (and unmaps its file); they are made again when next needed.
#[cfg_attr(not(feature = "heap"), allow(dead_code))]
pub(crate) fn clear() {
    let old = std::mem::take(&mut *tables().lock().unwrap_or_else(|e| e.into_inner()));
    drop(old);
}

/// The path segments of a legacy-mangled Rust symbol (`_ZN5myapp5cache6insert17h<hash>E` ->
/// `myapp`, `cache`, `insert`), hash left out, as raw bytes (escapes such as `$LT$` kept); None
/// for any other symbol (C, v0-mangled: [`Table::functions_where`] demangles those).
fn legacy_segments(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = raw.strip_prefix(b"_ZN")?;
    let mut out = Vec::new();
    while let Some((&c, _)) = rest.split_first() {
        if c == b'E' {
            break;
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let len: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        let seg = rest.get(digits..digits + len)?;
        out.push(seg);
        rest = &rest[digits + len..];
    }
    if out
        .last()
        .is_some_and(|h| h.len() == 17 && h[0] == b'h' && h[1..].iter().all(u8::is_ascii_hexdigit))
    {
        out.pop();
    }
    Some(out)
}

impl Table {
    /// The demangled names (without hash) of the functions whose path segments `keep` accepts
    /// (a plain path: `myapp`, `cache`, `insert`; impls of traits are not offered); at most
    /// `limit` names. The whole table is scanned (legacy-mangled names without demangling or
    /// allocating; v0-mangled ones demangled): callers cache what they learn.
    pub(crate) fn functions_where(
        &self,
        keep: &dyn Fn(&[&str]) -> bool,
        limit: usize,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut segs: Vec<&str> = Vec::new();
        for raw in self.names() {
            if out.len() >= limit {
                break;
            }
            let kept = if let Some(raw_segs) = legacy_segments(raw) {
                segs.clear();
                segs.extend(
                    raw_segs
                        .iter()
                        .map(|s| std::str::from_utf8(s).unwrap_or("")),
                );
                plain(&segs) && keep(&segs)
            } else if raw.starts_with(b"_R") {
                let name = demangle(raw);
                let head = name.split('<').next().unwrap_or("");
                let owned: Vec<&str> = head.split("::").collect();
                !name.starts_with('<') && plain(&owned) && keep(&owned)
            } else {
                false
            };
            if kept {
                let name = demangle(raw);
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// The crates that define a `main` function at their root (`myapp::main`): the binary's
    /// own crate, as its symbol table names it.
    pub(crate) fn main_crates(&self) -> Vec<String> {
        self.functions_where(&|s| s.len() == 2 && s[1] == "main", 8)
            .into_iter()
            .filter_map(|n| n.strip_suffix("::main").map(str::to_owned))
            .filter(|c| !crate::profile::sites::RUNTIME_CRATES.contains(&c.as_str()))
            .collect()
    }
}

/// Whether segments are a plain path's (`myapp`, `cache`), not an impl's (`_$LT$...`).
fn plain(segs: &[&str]) -> bool {
    segs.first()
        .is_some_and(|s| !s.is_empty() && !s.starts_with('_') && !s.starts_with('<'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each stub named in this test binary is an x86-64 `jmp *slot(%rip)` (after an
    /// `endbr64` in `.plt.sec`) through the GOT slot of the relocation that names it.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn plt_stubs_jump_through_the_slot_of_their_name() {
        use object::read::elf::{ElfFile64, Rela as _, SectionHeader as _};
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let file = ElfFile64::<object::LittleEndian>::parse(&exe[..]).unwrap();
        let endian = file.endian();
        let sections = file.elf_section_table();
        let slots: Vec<u64> = sections
            .section_by_name(endian, b".rela.plt")
            .map(|(_, rela)| {
                let relas: &[object::elf::Rela64<object::LittleEndian>] =
                    rela.data_as_array(endian, &exe[..]).unwrap();
                relas.iter().map(|r| r.r_offset(endian)).collect()
            })
            .unwrap_or_default();
        let stubs = plt_stubs(&exe).unwrap_or_default();
        assert_eq!(stubs.len(), slots.len(), "one stub per .rela.plt entry");
        assert!(
            !stubs.is_empty(),
            "a Rust test binary calls through its PLT"
        );
        // File bytes of a virtual address, through the section holding it.
        let at = |addr: u64| {
            let (_, sh) = sections
                .enumerate()
                .find(|(_, sh)| {
                    let start = sh.sh_addr(endian);
                    addr >= start && addr < start + sh.sh_size(endian)
                })
                .unwrap();
            let off = (addr - sh.sh_addr(endian) + sh.sh_offset(endian)) as usize;
            &exe[off..off + 16]
        };
        for (stub, slot) in stubs.iter().zip(slots) {
            let mut code = at(stub.addr);
            let mut next = stub.addr;
            if code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
                code = &code[4..];
                next += 4;
            }
            // `bnd jmp` carries a 0xf2 prefix.
            if code[0] == 0xf2 {
                code = &code[1..];
                next += 1;
            }
            assert_eq!(
                &code[..2],
                &[0xff, 0x25],
                "not a jmp *disp(%rip) at {:#x}",
                stub.addr
            );
            let disp = i32::from_le_bytes(code[2..6].try_into().unwrap());
            let target = (next + 6).wrapping_add_signed(i64::from(disp));
            assert_eq!(target, slot, "stub at {:#x}", stub.addr);
        }
        let table = Table::load(Path::new("/proc/self/exe")).unwrap();
        let name = table.name_at(stubs[0].addr + 3).unwrap();
        assert!(
            name.ends_with(b"@plt"),
            "{}",
            String::from_utf8_lossy(&name)
        );
    }

    #[test]
    fn legacy_symbols_split_into_segments() {
        let segs = legacy_segments(b"_ZN5myapp5cache6insert17h0123456789abcdefE").unwrap();
        assert_eq!(segs, [&b"myapp"[..], b"cache", b"insert"]);
        let segs = legacy_segments(b"_ZN4core3ptr22drop_in_place$LT$x$GT$17h0123456789abcdefE");
        assert_eq!(segs.unwrap().len(), 3);
        assert_eq!(legacy_segments(b"malloc"), None);
        // Truncated: not a name.
        assert_eq!(legacy_segments(b"_ZN5my"), None);
    }
}
