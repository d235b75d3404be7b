//! Site attribution: which frame of a stack is "the application's code".
//!
//! A site is the innermost frame of the application: frames of std, core, alloc, the allocator
//! and diag itself ([`FrameKind::Runtime`]) and of dependencies ([`FrameKind::Dependency`]) are
//! folded into the application frame that called them, so a leak through `Vec::with_capacity`
//! or `bytes::Bytes::copy_from_slice` is attributed to the function that called it. A stack
//! with no application frame gets a marked site ([`NO_APP_FRAME`]), never silently a
//! dependency's function. [`SiteRules`] says how a frame is told apart.
//!
//! The decision is made per frame from what the profile carries (function name, source file,
//! the crates it records), never the address, so two runs of the same binary, or two builds of
//! it, attribute identically, on the service's machine or any other.

use super::model::Frame;

/// Crate roots whose frames are runtime, not user code: the standard library, the allocators
/// and the profilers (diag itself, dhat, backtrace capture).
pub const RUNTIME_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "diag_core",
    "diag",
    "backtrace",
    "hashbrown",
    "dhat",
    "mimalloc",
    "libmimalloc_sys",
    "tikv_jemallocator",
    "tikv_jemalloc_sys",
    "jemallocator",
];

/// Symbol-name prefixes of allocator and unwinder entry points (not Rust paths).
const RUNTIME_SYMBOL_PREFIXES: &[&str] = &["__rust_", "__rdl_", "__rg_", "__rustc", "_Unwind_"];

/// Exact C allocator symbol names.
const RUNTIME_SYMBOLS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "reallocarray",
];

/// Rust's primitive type names: an impl on one (`<str as alloc::string::ToString>`) belongs to
/// the crate of the trait.
const PRIMITIVES: &[&str] = &[
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64",
];

/// The crate root of a demangled function name: `myapp` for `myapp::db::query`, `alloc` for
/// `<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop`, `myapp` for
/// `<myapp::Foo as core::clone::Clone>::clone`. For an impl on a primitive, slice, tuple,
/// reference or pointer type the trait's crate is used (`<[T] as alloc::slice::hack::ConvertVec>`
/// is `alloc`). A plain symbol (`malloc`) is its own root.
pub fn crate_root(function: &str) -> &str {
    let s = strip_type_prefixes(function);
    let root = leading_ident(s);
    let self_is_path = !root.is_empty() && !PRIMITIVES.contains(&root);
    if self_is_path && s[root.len()..].starts_with("::") {
        return root;
    }
    // `<SelfType as trait::Path>::f` with a non-path self type: use the trait's root.
    if function.trim_start().starts_with('<')
        && let Some(pos) = function.find(" as ")
    {
        let tr = &function[pos + 4..];
        let trait_root = leading_ident(strip_type_prefixes(tr));
        if !trait_root.is_empty() && !PRIMITIVES.contains(&trait_root) {
            return trait_root;
        }
        // A trait declared in an inherent impl of a primitive or slice type
        // (`<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec`): such impls are the standard
        // library's, which a name does not say more precisely.
        if tr.starts_with('<') {
            return "core";
        }
    }
    root
}

/// True if `function` is runtime code (std, core, alloc, the allocator, diag, ...) that a site
/// is never attributed to. The allocator shims (`__rust_alloc`, `__rdl_alloc`, `__rg_alloc`,
/// `__rustc::...`) are runtime whatever path a symbolizer gave them (with
/// `debug = "line-tables-only"` the shim is named after the file of the `#[global_allocator]`
/// line: `myapp::__rust_alloc`).
pub fn is_runtime(function: &str) -> bool {
    let name = function.trim();
    if RUNTIME_SYMBOLS.contains(&name)
        || RUNTIME_SYMBOL_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return true;
    }
    if is_allocator_shim(name) {
        return true;
    }
    let root = crate_root(name);
    RUNTIME_CRATES.contains(&root) || RUNTIME_SYMBOL_PREFIXES.iter().any(|p| root.starts_with(p))
}

/// Whether `function` is an allocator or unwinder entry point (`__rust_alloc`, `__rdl_alloc`,
/// `__rg_alloc`, `__rustc::__rust_alloc`, `_Unwind_Backtrace`) under any path a symbolizer
/// gave it (`myapp::__rust_alloc`: the shim's debug info points at the `#[global_allocator]`
/// line).
pub fn is_allocator_shim(function: &str) -> bool {
    let name = function.trim();
    if name.starts_with('<') {
        return false;
    }
    let head = name.split('<').next().unwrap_or(name);
    let last = head.rsplit("::").next().unwrap_or(head);
    RUNTIME_SYMBOL_PREFIXES.iter().any(|p| last.starts_with(p))
}

/// What a frame is, for site attribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameKind {
    /// The application's code: a site.
    App,
    /// A dependency: source in Cargo's registry or git checkouts, a crate that is not one of
    /// the application's, or a C function. Folded into the application frame that called it.
    Dependency,
    /// The standard library, the allocator and its shims, diag itself: folded into their
    /// caller, and never a site even of a stack without an application frame.
    Runtime,
}

/// Where a frame's source file lies, if that says what the frame is.
fn kind_of_file(file: &str) -> Option<FrameKind> {
    let f = file.replace('\\', "/");
    if f.contains("/registry/src/") || f.contains("/git/checkouts/") {
        Some(FrameKind::Dependency)
    } else if f.starts_with("/rustc/") || f.contains("/lib/rustlib/src/rust/library/") {
        Some(FrameKind::Runtime)
    } else if f.starts_with('/') || f.contains("/src/") || f.starts_with("src/") {
        // A source file of a package built here (an absolute path, or one relative to the
        // workspace); C sources of the system's libraries (`./nptl/pthread_create.c`) are not.
        (f.ends_with(".rs")).then_some(FrameKind::App)
    } else {
        None
    }
}

/// Whether a demangled name is a Rust path (`a::b`, `<a::B as c::D>::e`) rather than a C symbol
/// or an address.
fn is_rust_path(name: &str) -> bool {
    name.starts_with('<') || name.split('<').next().unwrap_or("").contains("::")
}

/// The marker that starts the site name of a stack without an application frame.
pub const NO_APP_FRAME: &str = "[no application frame]";

/// The comment key under which a profile records the application's crates
/// (`app_crates=myapp,myapp_db`), so a machine without the service's sources attributes its
/// stacks the way the service would.
pub const APP_CRATES_COMMENT: &str = "app_crates";

/// How a profile's stacks are attributed to sites: which frames are the application's.
///
/// A frame with a source file is decided by where the file lies: Cargo's registry and git
/// checkouts are dependencies, the Rust library sources (`/rustc/<hash>/library/...`) runtime,
/// any other Rust source the application. A frame without one (`debug = false`) is decided by
/// its crate: the application's crates are those seen with application files in the profile,
/// those the profile records ([`APP_CRATES_COMMENT`], the service's own binary crate and
/// `DIAG_APP_CRATES`), and those added with [`SiteRules::with_app_crates`]. A profile that gives
/// no such evidence at all (another tool's) keeps the name-only rule: every frame that is not
/// runtime is the application's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteRules {
    app_crates: std::collections::BTreeSet<String>,
}

impl SiteRules {
    /// The rules for `profile`, from the evidence it carries (see [`SiteRules`]).
    pub fn for_profile(profile: &super::Profile) -> Self {
        Self::for_profiles([profile])
    }

    /// The rules for profiles compared with one another (a diff, a trend): the evidence of
    /// all of them.
    pub fn for_profiles<'a>(profiles: impl IntoIterator<Item = &'a super::Profile>) -> Self {
        let profiles: Vec<&super::Profile> = profiles.into_iter().collect();
        let recorded: Vec<String> = profiles
            .iter()
            .flat_map(|p| recorded_app_crates(p))
            .collect();
        Self::for_stacks(
            profiles
                .iter()
                .flat_map(|p| p.samples.iter().map(|s| s.stack.as_slice())),
        )
        .with_app_crates(recorded)
    }

    /// The rules for a set of stacks, from the evidence their frames carry.
    pub fn for_stacks<'a>(stacks: impl IntoIterator<Item = &'a [Frame]>) -> Self {
        let mut app_crates = std::collections::BTreeSet::new();
        for stack in stacks {
            for f in stack {
                if f.file.as_deref().and_then(kind_of_file) == Some(FrameKind::App)
                    && !is_runtime(&f.function)
                    && is_rust_path(&f.function)
                {
                    let root = crate_root(&f.function);
                    if !app_crates.contains(root) {
                        app_crates.insert(root.to_owned());
                    }
                }
            }
        }
        SiteRules { app_crates }
    }

    /// The same rules with more crates of the application (`--app-crates`, `DIAG_APP_CRATES`);
    /// names are crate names (`my_app`; a package's `-` is taken as `_`).
    pub fn with_app_crates<S: AsRef<str>>(mut self, crates: impl IntoIterator<Item = S>) -> Self {
        for c in crates {
            let c = c.as_ref().trim().replace('-', "_");
            if !c.is_empty() {
                self.app_crates.insert(c);
            }
        }
        self
    }

    /// The crates taken as the application's, in name order.
    pub fn app_crates(&self) -> impl Iterator<Item = &str> {
        self.app_crates.iter().map(String::as_str)
    }

    /// What `frame` is.
    pub fn kind(&self, frame: &Frame) -> FrameKind {
        let name = frame.function.trim();
        if is_runtime(name) {
            return FrameKind::Runtime;
        }
        if let Some(kind) = frame.file.as_deref().and_then(kind_of_file) {
            return kind;
        }
        if self.app_crates.is_empty() {
            // No evidence of what the application is: the name-only rule.
            return FrameKind::App;
        }
        if is_rust_path(name) && self.app_crates.contains(crate_root(name)) {
            FrameKind::App
        } else {
            FrameKind::Dependency
        }
    }

    /// The site of `stack` (innermost first), see [`Site`]; `None` for an empty stack.
    pub fn site(&self, stack: &[Frame]) -> Option<Site> {
        if stack.is_empty() {
            return None;
        }
        let kinds: Vec<FrameKind> = stack.iter().map(|f| self.kind(f)).collect();
        if let Some(i) = kinds.iter().position(|k| *k == FrameKind::App) {
            return Some(Site {
                index: i,
                name: stack[i].function.clone(),
                app: true,
            });
        }
        // No application frame: the innermost dependency frame of Rust code (a C function
        // such as `clock_nanosleep` says less about where the stack comes from), marked; or
        // if the stack is all runtime its outermost frame (everything was folded into it),
        // marked too.
        let dependency = |i: &usize| kinds[*i] == FrameKind::Dependency;
        let i = (0..stack.len())
            .filter(dependency)
            .find(|&i| is_rust_path(&stack[i].function))
            .or_else(|| (0..stack.len()).find(dependency))
            .unwrap_or(stack.len() - 1);
        Some(Site {
            index: i,
            name: format!("{NO_APP_FRAME} {}", stack[i].function),
            app: false,
        })
    }

    /// [`SiteRules::site`] as the blocking views show it: the site's name and its text, the
    /// application frame with its file and line ([`Frame::text`]), or the marked name.
    pub fn site_text(&self, stack: &[Frame]) -> Option<(String, String)> {
        let site = self.site(stack)?;
        let text = if site.app {
            stack[site.index].text()
        } else {
            site.name.clone()
        };
        Some((site.name, text))
    }
}

/// The application's crates a profile records (see [`APP_CRATES_COMMENT`]).
fn recorded_app_crates(profile: &super::Profile) -> Vec<String> {
    profile
        .comment_value(APP_CRATES_COMMENT)
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The site of one stack, from [`SiteRules::site`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The index in the stack of the site's frame (for a stack without an application frame,
    /// the frame named in the marked name).
    pub index: usize,
    /// The site's name: the frame's function, or for a stack without an application frame
    /// `[no application frame] <function>` (see [`NO_APP_FRAME`]).
    pub name: String,
    /// False for a stack without an application frame.
    pub app: bool,
}

/// The index in `stack` (innermost first) of its site under the name-only rule (no file or
/// crate evidence): the innermost frame that is not runtime code. If every frame is runtime
/// code the outermost frame is the site (everything was folded into it); an empty stack has
/// none. [`SiteRules::site`] is the full rule.
pub fn site_index(stack: &[Frame]) -> Option<usize> {
    if stack.is_empty() {
        return None;
    }
    Some(
        stack
            .iter()
            .position(|f| !is_runtime(&f.function))
            .unwrap_or(stack.len() - 1),
    )
}

/// The site frame of `stack` under the name-only rule, see [`site_index`].
pub fn site(stack: &[Frame]) -> Option<&Frame> {
    site_index(stack).map(|i| &stack[i])
}

/// A function name as tables and flamegraph labels show it by default, as `go tool pprof`
/// does: generic arguments elided (`tokio::loom::std::unsafe_cell::with_mut<...>` ->
/// `tokio::loom::std::unsafe_cell::with_mut`, `<alloc::vec::Vec<T> as core::clone::Clone>::clone`
/// -> `<alloc::vec::Vec as core::clone::Clone>::clone`), and a closure or async body named by
/// its enclosing function (`myapp::handlers::reconcile::{async_fn#0}` ->
/// `myapp::handlers::reconcile`). A marked site keeps its marker.
pub fn short_name(function: &str) -> String {
    if let Some(rest) = function.strip_prefix(NO_APP_FRAME) {
        return format!("{NO_APP_FRAME} {}", short_name(rest.trim_start()));
    }
    let mut out = String::with_capacity(function.len());
    let mut depth = 0usize;
    let mut prev: Option<char> = None;
    // Generic argument lists open with `<` right after a name (`Vec<T>`) or `::` (`f::<T>`); a
    // `<` elsewhere opens a qualified path (`<A as B>::f`), which is kept with its `>`.
    let mut kept_open: Vec<bool> = Vec::new();
    for c in function.chars() {
        match c {
            '<' => {
                let generic =
                    prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == ':' || p == '}');
                let keep = depth == 0 && !generic;
                kept_open.push(keep);
                if keep {
                    out.push(c);
                } else {
                    if depth == 0 && out.ends_with("::") {
                        // `f::<T>`: the turbofish's `::` goes with its arguments.
                        out.truncate(out.len() - 2);
                    }
                    depth += 1;
                }
            }
            '>' if prev != Some('-') => match kept_open.pop() {
                Some(true) => out.push(c),
                Some(false) => depth = depth.saturating_sub(1),
                None => out.push(c),
            },
            _ if depth == 0 => out.push(c),
            _ => {}
        }
        prev = Some(c);
    }
    let mut name = out;
    // Trailing closure and coroutine bodies: the enclosing function names them.
    while let Some((head, last)) = name.rsplit_once("::") {
        if last.starts_with('{') && last.ends_with('}') && !head.is_empty() {
            name = head.to_owned();
        } else {
            break;
        }
    }
    name
}

/// Name used for a sample whose stack is empty.
pub const UNKNOWN_SITE: &str = "[unknown]";

fn strip_type_prefixes(mut s: &str) -> &str {
    loop {
        let before = s;
        s = s.trim_start().trim_start_matches(['<', '&', '*']);
        for prefix in ["mut ", "dyn ", "const ", "impl "] {
            if let Some(rest) = s.strip_prefix(prefix) {
                s = rest;
            }
        }
        if s.len() == before.len() {
            return s;
        }
    }
}

fn leading_ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.'))
        .unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests;
