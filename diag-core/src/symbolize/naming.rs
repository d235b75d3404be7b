//! The naming rules: what DWARF and symbol tables resolve at an address becomes the profile
//! model's frames, the same way in the service (heap, CPU and blocking stacks, through
//! `stack::resolve`) and in the CLI (profiles symbolized from files, [`super::files`]).

use std::collections::HashMap;

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

/// One symbol as the symbolizer resolved it, in plain data whatever the backend: the
/// demangled name without hash suffix, the source file and line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawSymbol {
    pub(crate) name: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: u32,
}

impl RawSymbol {
    pub(crate) fn from_resolved<S: Resolved + ?Sized>(sym: &S) -> Self {
        RawSymbol {
            name: sym.name_bytes().map(demangle),
            file: sym.file_name(),
            line: sym.line_number().unwrap_or(0),
        }
    }
}

/// The frames at code address `addr` (a return address: the call is the byte before),
/// innermost (inlined) first, from the symbols `resolve` passes to its callback; one frame
/// named by the address (see [`unknown`]) if there are none. See [`Namer::frames`] for the
/// names. Every frame's `address` is the call's (`addr - 1`), as pprof expects of a non-leaf
/// location.
pub(crate) fn resolve_with<S: Resolved + ?Sized>(
    namer: &mut Namer,
    symtab: &dyn SymbolTable,
    addr: usize,
    resolve: impl FnOnce(&mut dyn FnMut(&S)),
) -> Vec<Frame> {
    let mut raw = Vec::new();
    resolve(&mut |sym| raw.push(RawSymbol::from_resolved(sym)));
    if raw.is_empty() {
        return vec![unknown(addr)];
    }
    let mut out = namer.frames(addr, &raw, symtab);
    for f in &mut out {
        f.address = call_address(addr);
    }
    out
}

/// The demangled name, without hash, of a raw (mangled) symbol name; the name itself if it is
/// not a Rust symbol.
/// An ELF symbol version (`memcpy@GLIBC_2.14`, `xdr_uint32_t@@GLIBC_2.2.5`, as a debug file's
/// `.symtab` spells versioned symbols) is not part of the name; a PLT stub's `@plt` is.
pub(crate) fn demangle(raw: &[u8]) -> String {
    if let Some(target) = raw.strip_suffix(b"@plt") {
        return format!("{}@plt", demangle(target));
    }
    match std::str::from_utf8(raw) {
        Ok(s) => match rustc_demangle::try_demangle(s) {
            Ok(d) => format!("{d:#}"),
            Err(_) => s.split_once('@').map_or(s, |(name, _)| name).to_owned(),
        },
        Err(_) => String::from_utf8_lossy(raw).into_owned(),
    }
}

/// What naming asks of the binaries' symbol tables (an interface so tests can give their own).
pub(crate) trait SymbolTable {
    /// The symbol-table name of the function holding return address `addr`.
    fn function_at(&self, addr: usize) -> Option<String>;
    /// Plain-path functions of the image holding `addr` whose path segments `keep` accepts,
    /// at most `limit`.
    fn functions_where(
        &self,
        addr: usize,
        keep: &dyn Fn(&[&str]) -> bool,
        limit: usize,
    ) -> Vec<String>;
}

/// Most distinct functions looked up in a symbol table, per process: beyond it, short names
/// get their crate from what was learned or their package directory (bounds the cost of a
/// first snapshot of a huge binary).
const MAX_LOOKUPS: usize = 4096;

/// Names frames, learning which crate each package's sources belong to from the evidence
/// the binary gives (symbol-table paths), never from directory names alone.
#[derive(Debug, Default)]
pub(crate) struct Namer {
    /// A package's (or `src/bin/NAME` binary's) directory -> its crate, as evidence showed.
    crates: HashMap<String, String>,
    /// (unit, module path, function) -> the full path the symbol table gave, if any.
    lookups: HashMap<(String, String, String), Option<String>>,
}

impl Namer {
    /// The frames of the symbols `raw` resolved at `addr` (innermost first). Names are the
    /// debug info's, except a Rust function named without its module path (debug info with
    /// `debug = "line-tables-only"`):
    /// - the outermost (not inlined) frame takes its symbol-table name;
    /// - a closure or async body (`{async_fn#0}`) takes its enclosing function's path from the
    ///   generic arguments of the frames it was inlined into
    ///   (`myapp::api::get::{async_fn_env#0}` -> `myapp::api::get::{async_fn#0}`);
    /// - another function of the application (not in Cargo's registry or the Rust sources)
    ///   takes the path the symbol table has for a function of its module and name
    ///   (`remember` in `src/leaks.rs` -> `myapp::leaks::Registry::remember`), or its crate
    ///   from that evidence and its module from its file;
    /// - a dependency's or std's takes its module from its file (`tokio::runtime::task::core`).
    ///
    /// C functions (`malloc`, `clone3`) and `main` have no path by nature and are left alone.
    pub(crate) fn frames(
        &mut self,
        addr: usize,
        raw: &[RawSymbol],
        symtab: &dyn SymbolTable,
    ) -> Vec<Frame> {
        let n = raw.len();
        let mut out: Vec<Frame> = raw
            .iter()
            .map(|r| Frame {
                function: r.name.clone().unwrap_or_else(|| format!("{addr:#x}")),
                file: r.file.clone(),
                line: r.line,
                address: addr as u64,
            })
            .collect();
        // Which frames need a path: Rust functions from a Rust source file without one.
        let sources: Vec<Option<Source>> = raw
            .iter()
            .map(|r| match &r.name {
                Some(name) if !has_path(name) => r.file.as_deref().and_then(Source::of),
                _ => None,
            })
            .collect();
        let mut named = vec![false; n];
        // The outermost frame: the symbol table's name.
        if let (Some(src), Some(short)) = (&sources[n - 1], raw[n - 1].name.as_deref())
            && let Some(full) = symtab
                .function_at(addr)
                .filter(|full| same_function(short, full))
        {
            self.learn(src, &full);
            out[n - 1].function = full;
            named[n - 1] = true;
        }
        // Bodies: their enclosing function from the frames they were inlined into.
        for i in 0..n {
            let (Some(src), Some(short)) = (&sources[i], raw[i].name.as_deref()) else {
                continue;
            };
            if named[i] {
                continue;
            }
            let outer = raw[i + 1..].iter().filter_map(|r| r.name.as_deref());
            if let Some(path) = enclosing_path(short, outer, src) {
                self.learn(src, &path);
                out[i].function = path;
                named[i] = true;
            }
        }
        // The rest: crate (and type, for a method) from the symbol table's evidence.
        for i in 0..n {
            let (Some(src), Some(short)) = (&sources[i], raw[i].name.as_deref()) else {
                continue;
            };
            if !named[i] {
                out[i].function = self.qualify(addr, short, src, symtab);
            }
        }
        out
    }

    /// Records that `src`'s unit is the crate `full` (a path) starts with, if the path's
    /// modules are the file's.
    fn learn(&mut self, src: &Source, full: &str) {
        if src.dependency {
            return;
        }
        let segs: Vec<&str> = plain_segments(full);
        if segs.len() > src.modules.len()
            && segs[1..=src.modules.len()]
                .iter()
                .zip(&src.modules)
                .all(|(a, b)| a == b)
        {
            self.crates
                .entry(src.unit.clone())
                .or_insert_with(|| segs[0].to_owned());
        }
    }

    /// `short` (a name without path) with its crate and module.
    fn qualify(
        &mut self,
        addr: usize,
        short: &str,
        src: &Source,
        symtab: &dyn SymbolTable,
    ) -> String {
        let head = short.split('<').next().unwrap_or(short);
        let suffix = &short[head.len()..];
        let krate = if src.dependency {
            src.guess.clone()
        } else {
            if !is_body(head)
                && let Some(full) = self.lookup(addr, head, src, symtab)
            {
                return format!("{full}{suffix}");
            }
            self.crate_of(addr, src, symtab)
        };
        let mut path = krate;
        for m in &src.modules {
            path.push_str("::");
            path.push_str(m);
        }
        format!("{path}::{short}")
    }

    /// The symbol table's full path of function `leaf` of `src`'s module (`crate::module::leaf`
    /// or `crate::module::Type::leaf`), if exactly one is there; learns the crate from it.
    fn lookup(
        &mut self,
        addr: usize,
        leaf: &str,
        src: &Source,
        symtab: &dyn SymbolTable,
    ) -> Option<String> {
        let key = (src.unit.clone(), src.modules.join("::"), leaf.to_owned());
        if let Some(found) = self.lookups.get(&key) {
            return found.clone();
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            return None;
        }
        let m = src.modules.len();
        let known = self.crates.get(&src.unit).cloned();
        let modules = &src.modules;
        let found = symtab.functions_where(
            addr,
            &|s| {
                s.len() >= m + 2
                    && s.len() <= m + 3
                    && s[1..=m].iter().zip(modules).all(|(a, b)| a == b)
                    && s.last().is_some_and(|l| *l == leaf)
                    && known.as_ref().is_none_or(|k| k == s[0])
            },
            2,
        );
        let found = match found.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        if let Some(full) = &found {
            self.learn(src, full);
        }
        self.lookups.insert(key, found.clone());
        found
    }

    /// The crate of `src`'s unit: what evidence showed, or the one crate of the symbol table
    /// that has `src`'s module (for a crate root file, the binary's crate with a `main`), or,
    /// failing evidence, the directory's name.
    fn crate_of(&mut self, addr: usize, src: &Source, symtab: &dyn SymbolTable) -> String {
        if let Some(k) = self.crates.get(&src.unit) {
            return k.clone();
        }
        let key = (src.unit.clone(), src.modules.join("::"), String::new());
        if !self.lookups.contains_key(&key) && self.lookups.len() < MAX_LOOKUPS {
            let m = src.modules.len();
            let modules = &src.modules;
            let found = if m == 0 {
                symtab.functions_where(addr, &|s| s.len() == 2 && s[1] == "main", 2)
            } else {
                symtab.functions_where(
                    addr,
                    &|s| s.len() > m + 1 && s[1..=m].iter().zip(modules).all(|(a, b)| a == b),
                    64,
                )
            };
            let mut roots: Vec<&str> = found.iter().map(|f| plain_segments(f)[0]).collect();
            roots.sort_unstable();
            roots.dedup();
            let found = match roots.as_slice() {
                [one] => Some((*one).to_owned()),
                _ => None,
            };
            if let Some(k) = &found {
                self.crates.insert(src.unit.clone(), k.clone());
            }
            self.lookups.insert(key, found);
        }
        self.crates
            .get(&src.unit)
            .cloned()
            .unwrap_or_else(|| src.guess.clone())
    }
}

/// The segments of a plain path, generic arguments aside (`a::b::C<T>::d` -> a, b, C, d).
fn plain_segments(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => {
                if depth == 0 {
                    out.push(&path[start..i]);
                }
                depth += 1;
            }
            b'>' if depth > 0 && (i == 0 || bytes[i - 1] != b'-') => {
                depth -= 1;
                start = i + 1;
            }
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                if start < i {
                    out.push(&path[start..i]);
                }
                i += 1;
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < path.len() && depth == 0 {
        out.push(&path[start..]);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The enclosing function's path of a closure or async body named `short` (`{async_fn#0}`,
/// `{closure#1}<u8>`), from the generic arguments of the frames it was inlined into (`outer`,
/// innermost first), which name its environment type: `myapp::api::get::{async_fn_env#0}`
/// gives `myapp::api::get::{async_fn#0}`. Only a path whose modules are `src`'s counts.
fn enclosing_path<'a>(
    short: &str,
    outer: impl Iterator<Item = &'a str>,
    src: &Source,
) -> Option<String> {
    let head = short.split('<').next().unwrap_or(short);
    let inner = head.strip_prefix('{')?.strip_suffix('}')?;
    let (kind, index) = inner.split_once('#')?;
    if kind.is_empty() || kind.ends_with("_env") || index.parse::<u32>().is_err() {
        return None;
    }
    let token = format!("::{{{kind}_env#{index}}}");
    for name in outer {
        let mut from = 0;
        while let Some(at) = name[from..].find(&token).map(|p| p + from) {
            from = at + token.len();
            let start = name[..at]
                .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '{' | '}' | '#')))
                .map_or(0, |p| p + 1);
            let base = &name[start..at];
            let segs: Vec<&str> = base.split("::").collect();
            let m = src.modules.len();
            if segs.len() > m + 1
                && segs[0].chars().all(|c| c.is_alphanumeric() || c == '_')
                && segs[1..=m].iter().zip(&src.modules).all(|(a, b)| a == b)
            {
                return Some(format!("{base}::{{{kind}#{index}}}"));
            }
        }
    }
    None
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

/// Whether a demangled name carries a path (`a::b`, `<a::B as c::D>::e`).
fn has_path(name: &str) -> bool {
    name.starts_with('<') || name.split('<').next().unwrap_or("").contains("::")
}

/// What a Rust source file's path says: the unit (package directory, or `src/bin/NAME` of a
/// binary) whose crate evidence is learned for, the crate name the path suggests (the
/// directory's, a last resort for application code), the module path inside the crate, and
/// whether the file is a dependency's or std's (Cargo's registry or git checkouts, the Rust
/// library sources), whose directory names are their crates'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    unit: String,
    guess: String,
    modules: Vec<String>,
    dependency: bool,
}

impl Source {
    /// None for a path without a `src` directory, or not a `.rs` file.
    fn of(file: &str) -> Option<Source> {
        let file = file.replace('\\', "/");
        let parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty()).collect();
        // The last `src` directory with a package (or standard-library crate) directory before it.
        let src = parts.iter().rposition(|p| *p == "src").filter(|&i| i > 0)?;
        let package = parts[src - 1];
        let mut guess = strip_version(package).replace('-', "_");
        let mut unit = parts[..src].join("/");
        let mut rest: Vec<&str> = parts[src + 1..].to_vec();
        let leaf = rest.pop()?.strip_suffix(".rs")?;
        if rest.first() == Some(&"bin") {
            // `src/bin/NAME.rs` or `src/bin/NAME/main.rs`: the binary crate NAME.
            rest.remove(0);
            let name = rest.first().copied().unwrap_or(leaf);
            guess = name.replace('-', "_");
            unit = format!("{unit}/src/bin/{name}");
            rest.clear();
        } else {
            // `mod.rs` is its directory's module; `lib.rs` and `main.rs` at the top, the crate root.
            let crate_root = rest.is_empty() && matches!(leaf, "lib" | "main");
            if leaf != "mod" && !crate_root {
                rest.push(leaf);
            }
        }
        if guess.is_empty() || !guess.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let dependency = file.contains("/registry/src/")
            || file.contains("/git/checkouts/")
            || file.starts_with("/rustc/")
            || file.contains("/lib/rustlib/src/rust/library/");
        Some(Source {
            unit,
            guess,
            modules: rest.iter().map(|m| m.replace('-', "_")).collect(),
            dependency,
        })
    }
}

/// The Rust module path a source file is, from the file's path alone: the standard library's
/// sources (`/rustc/<hash>/library/core/src/slice/mod.rs` -> `core::slice`), a registry
/// crate's (`.../registry/src/<index>/tokio-1.48.0/src/runtime/task/core.rs` ->
/// `tokio::runtime::task::core`), or another package's (`diag-core/src/heap/alloc.rs` ->
/// `diag_core::heap::alloc`, the package directory's name standing for the crate's: a guess,
/// which [`Namer`] replaces with evidence). None when the path has no `src` directory to go by.
#[cfg(test)]
fn module_of_file(file: &str) -> Option<String> {
    let s = Source::of(file)?;
    let mut path = s.guess;
    for m in s.modules {
        path.push_str("::");
        path.push_str(&m);
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
/// Its frame is [`Frame::raw`] at the call (`addr - 1`): an unsymbolized location.
pub(crate) fn unknown(addr: usize) -> Frame {
    Frame::raw(call_address(addr))
}

/// A frame for return address `addr` with a name and no source.
#[cfg_attr(not(feature = "heap"), allow(dead_code))]
pub(crate) fn named(addr: usize, function: &str) -> Frame {
    Frame {
        function: function.to_owned(),
        file: None,
        line: 0,
        address: call_address(addr),
    }
}

/// The address of the call a return address `addr` returns from: the byte before it, inside
/// the call instruction (pprof's convention for a non-leaf location; any symbolizer names the
/// call's line there, where the return address itself may lie in the next line or function).
pub(crate) fn call_address(addr: usize) -> u64 {
    addr.saturating_sub(1) as u64
}

/// True for frames of the profiler's own machinery, dropped from the top of captured stacks.
pub(crate) fn is_machinery(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("diag_core::")
        || f.starts_with("backtrace::")
        || f.starts_with("__rust_alloc")
        || f.starts_with("__rust_realloc")
        || f.starts_with("__rust_dealloc")
        || f.starts_with("__rustc::")
        || f.starts_with("__rg_")
        || f.starts_with("__rdl_")
        || f.starts_with("_Unwind_")
        || f.starts_with("std::alloc::")
        || f.starts_with("alloc::alloc::")
        || crate::profile::sites::is_allocator_shim(function)
}

/// A stack's frames with the profiler's own at the top (innermost) removed.
pub(crate) fn drop_top_machinery(mut frames: Vec<Frame>) -> Vec<Frame> {
    let keep_from = frames
        .iter()
        .position(|f| !is_machinery(&f.function))
        .unwrap_or(frames.len());
    frames.drain(..keep_from);
    frames
}

#[cfg(test)]
mod tests;
