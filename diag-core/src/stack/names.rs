//! Naming the frames of this process: the naming rules ([`crate::symbolize`]) over the
//! symbol tables of the images loaded here, looked up by address.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::profile::Frame;
use crate::symbolize::naming::{Namer, Resolved, SymbolTable};
use crate::symbolize::symtab;

/// The frames at return address `addr` of this process, innermost (inlined) first, from the
/// symbols `resolve` passes to its callback (see [`crate::symbolize::naming::resolve_with`]).
pub(crate) fn resolve_with<S: Resolved + ?Sized>(
    addr: usize,
    resolve: impl FnOnce(&mut dyn FnMut(&S)),
) -> Vec<Frame> {
    let mut namer = namer().lock().unwrap_or_else(|e| e.into_inner());
    crate::symbolize::naming::resolve_with(&mut namer, &ProcessSymbols, addr, resolve)
}

/// Forgets what naming learned (it is learned again from the symbol tables when needed): with
/// the symbolizer's caches, so that none of its blocks stays among a freed parse.
pub(crate) fn forget() {
    let old = std::mem::take(&mut *namer().lock().unwrap_or_else(|e| e.into_inner()));
    drop(old);
}

/// The process's naming state (what it learned of crate names).
fn namer() -> &'static Mutex<Namer> {
    static NAMER: OnceLock<Mutex<Namer>> = OnceLock::new();
    NAMER.get_or_init(Default::default)
}

/// The file of the image whose code holds `addr` (the executable for the main program).
fn image_file(addr: usize) -> Option<(PathBuf, usize)> {
    let seg = crate::stack::segment_of(addr)?;
    let path = seg.file.unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    Some((path, seg.bias))
}

/// This process's symbol tables.
struct ProcessSymbols;

impl SymbolTable for ProcessSymbols {
    fn function_at(&self, addr: usize) -> Option<String> {
        function_at(addr.checked_sub(1)?)
    }

    fn functions_where(
        &self,
        addr: usize,
        keep: &dyn Fn(&[&str]) -> bool,
        limit: usize,
    ) -> Vec<String> {
        let Some((path, _)) = image_file(addr) else {
            return Vec::new();
        };
        symtab::with_table(&path, |t| {
            t.map(|t| t.functions_where(keep, limit))
                .unwrap_or_default()
        })
    }
}

/// The demangled name, without hash, of the function whose symbol covers code address
/// `addr` in this process; None if no loaded image's symbol table has one.
pub(crate) fn function_at(addr: usize) -> Option<String> {
    let (path, bias) = image_file(addr)?;
    let at = addr.checked_sub(bias)? as u64;
    symtab::with_raw_name(&path, at, |raw| raw.map(crate::symbolize::naming::demangle))
}

/// The crates of this executable that define a `main` function at their root (`myapp::main`):
/// the binary's own crate, as its symbol table names it.
pub(crate) fn main_crates() -> Vec<String> {
    symtab::with_table(std::path::Path::new("/proc/self/exe"), |t| {
        t.map(symtab::Table::main_crates).unwrap_or_default()
    })
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
            name.ends_with("names::tests::a_function_with_a_symbol"),
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

    #[test]
    fn finds_this_binarys_functions_by_path() {
        assert_eq!(a_function_with_a_symbol(), 7);
        let here = a_function_with_a_symbol as *const () as usize;
        let found = ProcessSymbols.functions_where(
            here,
            &|s| s.last().is_some_and(|l| *l == "a_function_with_a_symbol"),
            4,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].ends_with("stack::names::tests::a_function_with_a_symbol"),
            "{found:?}"
        );
    }

    /// The outermost frame of an address in this binary comes out with its real path even if
    /// the debug info had only a short name: what `resolve_with` does for it, checked on a
    /// function of this test binary.
    #[test]
    fn outermost_frames_take_the_symbol_tables_name() {
        #[inline(never)]
        fn named_in_the_symbol_table() -> usize {
            std::hint::black_box(3)
        }
        assert_eq!(named_in_the_symbol_table(), 3);
        let addr = named_in_the_symbol_table as *const () as usize + 2;
        let full = ProcessSymbols.function_at(addr).expect("symbol");
        assert!(full.ends_with("::named_in_the_symbol_table"), "{full}");
        assert!(
            full.starts_with("diag_core::stack::names::tests::"),
            "{full}"
        );
    }
}
