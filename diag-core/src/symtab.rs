//! Function names from the ELF symbol tables of the loaded images.
//!
//! The debug info of a build with `debug = "line-tables-only"` names functions without their
//! module path (`remember_request`); the symbol table of the same binary names the function
//! an address lies in with its full path (`_ZN13diag_examples5leaky16remember_request...`).
//! [`crate::symbols`] asks here for the outermost (not inlined) frame of an address whose
//! debug-info name is short. Tables are read when a profile is served (never on the
//! allocation path), once per image, from the image's file mapped read-only, and keep only
//! the function symbols: bounded by [`MAX_SYMBOLS`] and [`MAX_NAME_BYTES`] per image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use object::{Object, ObjectSymbol, SymbolKind};

/// Function symbols kept per image at most.
const MAX_SYMBOLS: usize = 1 << 20;
/// Bytes of symbol names kept per image at most.
const MAX_NAME_BYTES: usize = 64 << 20;

/// One image's function symbols, sorted by address.
struct Table {
    /// (address in the file, size, name offset in `names`, name length).
    funcs: Vec<(u64, u64, u32, u32)>,
    /// The raw (mangled) names, back to back.
    names: Vec<u8>,
}

impl Table {
    /// Reads the function symbols of the ELF file at `path`; None if it cannot be read or
    /// parsed.
    fn load(path: &Path) -> Option<Table> {
        let map = Mapped::open(path)?;
        let file = object::File::parse(map.bytes()).ok()?;
        let mut funcs = Vec::new();
        let mut names = Vec::new();
        for sym in file.symbols() {
            if sym.kind() != SymbolKind::Text || sym.size() == 0 {
                continue;
            }
            let Ok(name) = sym.name_bytes() else {
                continue;
            };
            if funcs.len() == MAX_SYMBOLS || names.len() + name.len() > MAX_NAME_BYTES {
                break;
            }
            funcs.push((
                sym.address(),
                sym.size(),
                names.len() as u32,
                name.len() as u32,
            ));
            names.extend_from_slice(name);
        }
        funcs.sort_unstable_by_key(|f| f.0);
        Some(Table { funcs, names })
    }

    /// The raw name of the function whose symbol covers file address `at`.
    fn name_at(&self, at: u64) -> Option<&[u8]> {
        let i = self.funcs.partition_point(|f| f.0 <= at).checked_sub(1)?;
        let (start, size, off, len) = self.funcs[i];
        (at < start.saturating_add(size)).then(|| &self.names[off as usize..][..len as usize])
    }
}

/// A file mapped read-only for as long as this lives.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &Path) -> Option<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a private read-only mapping of an open file; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// Tables by image file; None for a file that could not be read.
fn tables() -> &'static Mutex<HashMap<PathBuf, Option<Table>>> {
    static TABLES: OnceLock<Mutex<HashMap<PathBuf, Option<Table>>>> = OnceLock::new();
    TABLES.get_or_init(Default::default)
}

/// The demangled name, without hash, of the function whose symbol covers code address
/// `addr` in this process; None if no loaded image's symbol table has one.
pub(crate) fn function_at(addr: usize) -> Option<String> {
    let seg = crate::heap::segment_of(addr)?;
    let path = seg.file.unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    let at = addr.checked_sub(seg.bias)? as u64;
    let mut tables = tables().lock().unwrap_or_else(|e| e.into_inner());
    let table = tables
        .entry(path)
        .or_insert_with_key(|p| Table::load(p))
        .as_ref()?;
    let raw = table.name_at(at)?;
    Some(format!("{:#}", backtrace::SymbolName::new(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_symbol() -> usize {
        std::hint::black_box(7)
    }

    #[test]
    fn names_this_binarys_functions_with_their_paths() {
        let f = a_function_with_a_symbol as *const () as usize;
        assert_eq!(a_function_with_a_symbol(), 7);
        let name = function_at(f + 1).expect("a symbol for a function of this binary");
        assert!(
            name.ends_with("symtab::tests::a_function_with_a_symbol"),
            "{name}"
        );
        // libc's malloc, from libc's own table (or its dynamic symbols' absence: then None).
        let m = libc::malloc as *const () as usize;
        if let Some(n) = function_at(m) {
            assert!(n.contains("malloc"), "{n}");
        }
        // Not code: no name.
        let on_stack = 0u64;
        assert_eq!(function_at(&on_stack as *const u64 as usize), None);
    }
}
