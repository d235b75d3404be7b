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
//! Tables are keyed by file path: the service's symbolizer (`stack::resolve`) and the CLI's
//! (`symbolize::files`) use the same ones, and drop them with their other caches ([`clear`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use object::{Object, ObjectSymbol, SymbolKind};

use super::mapped::Mapped;
use super::naming::demangle;

/// Function symbols indexed per image at most.
const MAX_SYMBOLS: usize = 1 << 19;

/// A function symbol: its address in the file, and where its name lies in the file.
struct Func {
    addr: u64,
    name_at: u64,
    size: u32,
    name_len: u32,
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
            });
        }
        drop(file);
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

    /// The raw name of the function whose symbol covers file address `at`.
    pub(crate) fn name_at(&self, at: u64) -> Option<&[u8]> {
        let i = self
            .funcs
            .partition_point(|f| f.addr <= at)
            .checked_sub(1)?;
        let f = &self.funcs[i];
        if at >= f.addr.saturating_add(u64::from(f.size)) {
            return None;
        }
        self.map
            .bytes()
            .get(f.name_at as usize..)?
            .get(..f.name_len as usize)
    }
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
    with_table(path, |t| f(t.and_then(|t| t.name_at(at))))
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
