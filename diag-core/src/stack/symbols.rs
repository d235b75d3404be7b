//! Turning what a symbolizer resolves into the profile model's frames: shared by diag's own
//! symbolizer ([`crate::stack::symbolize`], for heap, CPU and blocking stacks) and any other
//! source of resolved symbols (`backtrace::Symbol`).

use crate::profile::Frame;

/// One function a symbolizer found at an address (an inlined one, or the one the address lies
/// in): its raw (mangled) name, source file and line, each if known.
pub(crate) trait Resolved {
    /// The raw name, mangled as the debug info or symbol table holds it.
    fn name_bytes(&self) -> Option<&[u8]>;
    /// The source file.
    fn file_name(&self) -> Option<String>;
    /// The source line.
    fn line_number(&self) -> Option<u32>;
}

/// A [`Resolved`] function as diag's symbolizer reads it from DWARF or a symbol table.
pub(crate) struct RawFrame<'a> {
    /// The raw name.
    pub(crate) name: Option<std::borrow::Cow<'a, [u8]>>,
    /// The source file.
    pub(crate) file: Option<&'a str>,
    /// The source line.
    pub(crate) line: Option<u32>,
}

impl Resolved for RawFrame<'_> {
    fn name_bytes(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }
    fn file_name(&self) -> Option<String> {
        self.file.map(str::to_owned)
    }
    fn line_number(&self) -> Option<u32> {
        self.line
    }
}

impl Resolved for backtrace::Symbol {
    fn name_bytes(&self) -> Option<&[u8]> {
        self.name().map(|n| n.as_bytes())
    }
    fn file_name(&self) -> Option<String> {
        self.filename().map(|p| p.display().to_string())
    }
    fn line_number(&self) -> Option<u32> {
        self.lineno()
    }
}

/// The frames at code address `addr`, innermost (inlined) first, from the symbols `resolve`
/// passes to its callback (diag's symbolizer, or `backtrace::resolve_frame`); one frame
/// named by the address if there are none. See [`frame`] for the names; the outermost
/// frame, the function `addr` lies in, is named from the ELF symbol table when its debug
/// info has only a short name, so its path is the real one rather than one derived from its
/// source file.
pub(crate) fn resolve_with<S: Resolved + ?Sized>(
    addr: usize,
    resolve: impl FnOnce(&mut dyn FnMut(&S)),
) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut last_short = None;
    resolve(&mut |sym| {
        let (f, short) = frame(sym, addr);
        out.push(f);
        last_short = short;
    });
    match (out.last_mut(), last_short) {
        (None, _) => out.push(unknown(addr)),
        (Some(outer), Some(short)) => {
            if let Some(full) = symbol_name(addr).filter(|full| same_function(&short, full)) {
                outer.function = full;
            }
        }
        (Some(_), None) => {}
    }
    out
}

/// The symbol-table name of the function holding `addr` (a return address: the call
/// instruction is the byte before, as the symbolizer resolves it).
fn symbol_name(addr: usize) -> Option<String> {
    #[cfg(all(feature = "heap", target_os = "linux"))]
    {
        crate::stack::symtab::function_at(addr.checked_sub(1)?)
    }
    #[cfg(not(all(feature = "heap", target_os = "linux")))]
    {
        let _ = addr;
        None
    }
}

/// Whether the symbol-table name `full` (`myapp::cache::insert`,
/// `alloc::vec::Vec<T,A>::with_capacity_in`) is the function the debug info calls `short`
/// (`insert`, `with_capacity_in<u8, alloc::alloc::Global>`): the last path segment matches.
/// A closure or coroutine body has no name of its own: the debug info calls it `{closure#0}`,
/// `{async_fn#0}` or `{async_block#1}`, the symbol table `{{closure}}` (legacy mangling) or
/// `{closure#0}` (v0); either matches any of them.
fn same_function(short: &str, full: &str) -> bool {
    let head = short.split('<').next().unwrap_or("");
    // A trailing `::<T>` (v0 mangling's generic arguments) is not a path segment.
    let full = match full.rfind("::<") {
        Some(i) if full.ends_with('>') => &full[..i],
        _ => full,
    };
    let Some((_, last)) = full.rsplit_once("::") else {
        return false;
    };
    !head.is_empty() && (last == head || (is_body(head) && is_body(last)))
}

/// A closure's or coroutine's path segment: `{closure#0}`, `{async_block#2}`, `{{closure}}`.
fn is_body(segment: &str) -> bool {
    segment.len() > 2 && segment.starts_with('{') && segment.ends_with('}')
}

/// A frame from a resolved symbol at code address `addr`: the demangled name without the hash
/// suffix (or the address when there is no name), file and line when known; and, for a Rust
/// function whose debug-info name had no module path (one [`with_module`] gave a path), that
/// short name. C functions (`malloc`, `clone3`) and `main` have no path by nature and are
/// left alone.
fn frame<S: Resolved + ?Sized>(sym: &S, addr: usize) -> (Frame, Option<String>) {
    let file = sym.file_name();
    let (function, short) = match sym.name_bytes() {
        Some(n) => {
            let name = format!("{:#}", backtrace::SymbolName::new(n));
            match with_module(&name, file.as_deref()) {
                Some(qualified) => (qualified, Some(name)),
                None => (name, None),
            }
        }
        None => (format!("{addr:#x}"), None),
    };
    let frame = Frame {
        function,
        file,
        line: sym.line_number().unwrap_or(0),
        address: addr as u64,
    };
    (frame, short)
}

/// Whether a demangled name carries a path (`a::b`, `<a::B as c::D>::e`).
fn has_path(name: &str) -> bool {
    name.starts_with('<') || name.split('<').next().unwrap_or("").contains("::")
}

/// Gives a function name without its module path (what the debug info of a build with
/// `debug = "line-tables-only"` holds: `remember_request`, `with_capacity<u8>`) the path of
/// the module its source file is, so site attribution can still tell user code from std and
/// diag, and two functions called `new` stay apart. None for a name that already has a path,
/// or whose file names no module.
fn with_module(name: &str, file: Option<&str>) -> Option<String> {
    if has_path(name) {
        return None;
    }
    let module = module_of_file(file?)?;
    Some(format!("{module}::{name}"))
}

/// The name a frame ends up with: [`with_module`]'s, or the name as it is.
#[cfg(test)]
fn qualify(name: String, file: Option<&str>) -> String {
    with_module(&name, file).unwrap_or(name)
}

/// The Rust module path a source file is, from the file's path: the standard library's
/// sources (`/rustc/<hash>/library/core/src/slice/mod.rs` -> `core::slice`), a registry
/// crate's (`.../registry/src/<index>/tokio-1.48.0/src/runtime/task/core.rs` ->
/// `tokio::runtime::task::core`), or another package's (`diag-core/src/heap/alloc.rs` ->
/// `diag_core::heap::alloc`, the package directory's name standing for the crate's). None when
/// the path has no `src` directory to go by.
pub(crate) fn module_of_file(file: &str) -> Option<String> {
    let file = file.replace('\\', "/");
    let parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty()).collect();
    // The last `src` directory with a package (or standard-library crate) directory before it.
    let src = parts.iter().rposition(|p| *p == "src").filter(|&i| i > 0)?;
    let package = parts[src - 1];
    let mut krate = strip_version(package).replace('-', "_");
    let mut rest: Vec<&str> = parts[src + 1..].to_vec();
    let leaf = rest.pop()?.strip_suffix(".rs")?;
    if rest.first() == Some(&"bin") {
        // `src/bin/NAME.rs` or `src/bin/NAME/main.rs`: the binary crate NAME.
        rest.remove(0);
        krate = match rest.first() {
            Some(dir) => dir.replace('-', "_"),
            None => leaf.replace('-', "_"),
        };
        rest.clear();
    } else {
        // `mod.rs` is its directory's module; `lib.rs` and `main.rs` at the top, the crate root.
        let crate_root = rest.is_empty() && matches!(leaf, "lib" | "main");
        if leaf != "mod" && !crate_root {
            rest.push(leaf);
        }
    }
    if krate.is_empty() || !krate.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let mut path = krate;
    for m in rest {
        path.push_str("::");
        path.push_str(&m.replace('-', "_"));
    }
    Some(path)
}

/// `tokio-1.48.0` -> `tokio`; a name without a version suffix is returned as it is.
fn strip_version(dir: &str) -> &str {
    match dir.rfind('-') {
        Some(i) if dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => &dir[..i],
        _ => dir,
    }
}

/// A frame for an address nothing resolved, named by the address as pprof does.
pub(crate) fn unknown(addr: usize) -> Frame {
    Frame {
        function: format!("{addr:#x}"),
        file: None,
        line: 0,
        address: addr as u64,
    }
}

/// The executable file mappings of this process from `/proc/self/maps`, the main binary
/// first (what pprof expects), for the `mapping` table of served profiles. Empty where
/// `/proc` is not available.
pub(crate) fn mappings() -> Vec<crate::profile::Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut out = parse_maps(&maps);
    // Stable: the main binary's segments first, in address order, then the rest.
    out.sort_by_key(|m| m.file != exe);
    out
}

/// Parses `/proc/PID/maps` text: file-backed executable ranges only.
fn parse_maps(text: &str) -> Vec<crate::profile::Mapping> {
    text.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode path (the path may contain spaces)
            let mut f = line.splitn(6, ' ');
            let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
            let path = f.nth(2)?.trim_start();
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (start, limit) = range.split_once('-')?;
            Some(crate::profile::Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                limit: u64::from_str_radix(limit, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                file: path.to_owned(),
                build_id: String::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_lines_parse() {
        let text = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 123 /usr/bin/my app
55d0c0b00000-55d0c0c00000 r-xp 00100000 fd:01 123 /usr/bin/my app
7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
7f0000004000-7f0000005000 r-xp 00002000 fd:01 9 /lib/libc.so.6
";
        let m = super::parse_maps(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].file, "/usr/bin/my app");
        assert_eq!(
            (m[0].start, m[0].limit, m[0].offset),
            (0x55d0c0b00000, 0x55d0c0c00000, 0x100000)
        );
        assert_eq!(m[1].file, "/lib/libc.so.6");
    }

    #[test]
    fn module_paths_from_source_files() {
        use super::module_of_file as m;
        let rustc = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
        assert_eq!(
            m(&format!("{rustc}/core/src/slice/mod.rs")).unwrap(),
            "core::slice"
        );
        assert_eq!(
            m(&format!("{rustc}/alloc/src/raw_vec/mod.rs")).unwrap(),
            "alloc::raw_vec"
        );
        assert_eq!(
            m(&format!("{rustc}/alloc/src/alloc.rs")).unwrap(),
            "alloc::alloc"
        );
        assert_eq!(m(&format!("{rustc}/std/src/lib.rs")).unwrap(), "std");
        assert_eq!(
            m("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.48.0/src/runtime/task/core.rs").unwrap(),
            "tokio::runtime::task::core"
        );
        assert_eq!(
            m("/home/u/.cargo/registry/src/idx/backtrace-0.3.77/src/backtrace/libunwind.rs")
                .unwrap(),
            "backtrace::backtrace::libunwind"
        );
        assert_eq!(
            m("diag-core/src/heap/unwind/mod.rs").unwrap(),
            "diag_core::heap::unwind"
        );
        assert_eq!(
            m("/work/main/diag-core/src/heap/alloc.rs").unwrap(),
            "diag_core::heap::alloc"
        );
        assert_eq!(m("myapp/src/main.rs").unwrap(), "myapp");
        assert_eq!(m("myapp/src/bin/load-gen.rs").unwrap(), "load_gen");
        assert_eq!(m("myapp/src/cache/mod.rs").unwrap(), "myapp::cache");
        assert_eq!(m("src/main.rs"), None);
        assert_eq!(m("/usr/include/stdio.h"), None);
        assert_eq!(m("build/out.c"), None);
    }

    #[test]
    fn symbol_names_match_short_names_by_last_segment() {
        use super::same_function as same;
        assert!(same(
            "remember_request",
            "diag_examples::leaky::remember_request"
        ));
        assert!(same(
            "with_capacity_in<u8, alloc::alloc::Global>",
            "alloc::vec::Vec<T,A>::with_capacity_in"
        ));
        assert!(same("clone", "<myapp::Foo as core::clone::Clone>::clone"));
        assert!(same("parse", "myapp::parse::<u8>"));
        assert!(!same("insert", "myapp::cache::remove"));
        // Closure and coroutine bodies: any body matches any body, never a named function.
        assert!(same("{closure#0}", "myapp::run::{{closure}}"));
        assert!(same("{closure#1}", "myapp::run::{closure#1}"));
        assert!(same(
            "{async_block#0}<fn() -> u8, u8>",
            "<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}"
        ));
        assert!(same("{async_fn#0}", "myapp::leak::{closure#0}::<u8>"));
        assert!(!same("{closure#0}", "myapp::run"));
        assert!(!same("run", "myapp::run::{{closure}}"));
        assert!(!same("{closure#0}", "{{closure}}"));
        // A symbol without a path says nothing more than the short name.
        assert!(!same("malloc", "malloc"));
        assert!(!same("", "a::b"));
    }

    /// The outermost frame of an address in this binary comes out with its real path even if
    /// the debug info had only a short name: what `resolve_with` does for it, checked on a
    /// function of this test binary.
    #[cfg(all(feature = "heap", target_os = "linux"))]
    #[test]
    fn outermost_frames_take_the_symbol_tables_name() {
        #[inline(never)]
        fn named_in_the_symbol_table() -> usize {
            std::hint::black_box(3)
        }
        assert_eq!(named_in_the_symbol_table(), 3);
        let addr = named_in_the_symbol_table as *const () as usize + 2;
        let full = super::symbol_name(addr).expect("symbol");
        assert!(
            super::same_function("named_in_the_symbol_table", &full),
            "{full}"
        );
        assert!(
            full.starts_with("diag_core::stack::symbols::tests::"),
            "{full}"
        );
    }

    #[test]
    fn short_names_get_their_module_and_full_names_stay() {
        use super::qualify;
        let f = Some("/work/app/myapp/src/cache.rs");
        assert_eq!(qualify("insert".into(), f), "myapp::cache::insert");
        assert_eq!(
            qualify("with_capacity_in<u8, alloc::alloc::Global>".into(), f),
            "myapp::cache::with_capacity_in<u8, alloc::alloc::Global>"
        );
        assert_eq!(
            qualify("myapp::cache::insert".into(), f),
            "myapp::cache::insert"
        );
        assert_eq!(
            qualify("<myapp::Foo as core::clone::Clone>::clone".into(), f),
            "<myapp::Foo as core::clone::Clone>::clone"
        );
        assert_eq!(qualify("malloc".into(), None), "malloc");
        assert_eq!(
            qualify("malloc".into(), Some("./malloc/malloc.c")),
            "malloc"
        );
    }

    #[test]
    fn this_process_maps_its_own_code() {
        let m = super::mappings();
        let here = super::mappings as fn() -> Vec<crate::profile::Mapping> as usize as u64;
        if std::path::Path::new("/proc/self/maps").exists() {
            assert!(m.iter().any(|m| m.contains(here)), "{m:?}");
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            assert_eq!(m[0].file, exe.display().to_string());
        }
    }
}
