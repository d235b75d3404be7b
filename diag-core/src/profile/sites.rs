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
mod tests {
    use super::*;

    #[test]
    fn crate_roots() {
        assert_eq!(crate_root("myapp::db::query"), "myapp");
        assert_eq!(
            crate_root("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"),
            "alloc"
        );
        assert_eq!(
            crate_root("<myapp::Foo as core::clone::Clone>::clone"),
            "myapp"
        );
        assert_eq!(
            crate_root("<&mut myapp::Foo as core::fmt::Debug>::fmt"),
            "myapp"
        );
        assert_eq!(crate_root("<dyn myapp::Handler>::call"), "myapp");
        assert_eq!(
            crate_root("<[T] as alloc::slice::hack::ConvertVec>::to_vec"),
            "alloc"
        );
        assert_eq!(
            crate_root("<str as alloc::string::ToString>::to_string"),
            "alloc"
        );
        assert_eq!(crate_root("<u32 as myapp::Codec>::encode"), "myapp");
        assert_eq!(crate_root("<(A, B) as core::clone::Clone>::clone"), "core");
        assert_eq!(
            crate_root("<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec"),
            "core"
        );
        assert_eq!(crate_root("malloc"), "malloc");
        assert_eq!(crate_root(""), "");
    }

    #[test]
    fn runtime_frames() {
        for f in [
            "alloc::raw_vec::RawVec<T,A>::with_capacity_in",
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone",
            "std::collections::hash::map::HashMap<K,V,S>::insert",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
            "<diag_core::heap::DiagAlloc<A> as core::alloc::global::GlobalAlloc>::alloc",
            "<dhat::Alloc as core::alloc::global::GlobalAlloc>::alloc",
            "backtrace::backtrace::trace",
            "__rust_alloc",
            "__rdl_alloc",
            "__rg_realloc",
            "__rustc::__rust_alloc",
            // The shim named after the file of the `#[global_allocator]` line
            // (line-tables-only), with System, mimalloc or jemalloc inside.
            "myapp::__rust_alloc",
            "mi_leak::__rust_realloc",
            "myapp::server::__rdl_alloc",
            "malloc",
            "realloc",
            "_Unwind_Backtrace",
        ] {
            assert!(is_runtime(f), "{f} should be runtime");
        }
        for f in [
            "myapp::leak",
            "<myapp::Foo as core::clone::Clone>::clone",
            "myapp::handlers::upload::{{closure}}",
            "tokio::runtime::task::raw::poll",
            "stdx::thing",
            "mallocx",
            "0x1234",
        ] {
            assert!(!is_runtime(f), "{f} should be user code");
        }
    }

    #[test]
    fn site_skips_runtime_frames() {
        let stack: Vec<Frame> = [
            "__rust_alloc",
            "alloc::alloc::alloc",
            "alloc::raw_vec::RawVec<T,A>::with_capacity_in",
            "alloc::vec::Vec<T>::with_capacity",
            "myapp::cache::fill",
            "myapp::main",
            "std::rt::lang_start",
        ]
        .into_iter()
        .map(Frame::named)
        .collect();
        assert_eq!(site_index(&stack), Some(4));
        assert_eq!(site(&stack).unwrap().function, "myapp::cache::fill");
    }

    const REG: &str = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
    const RUSTC: &str = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";

    fn at(function: &str, file: &str) -> Frame {
        Frame {
            function: function.to_owned(),
            file: (!file.is_empty()).then(|| file.to_owned()),
            line: 1,
            address: 0,
        }
    }

    #[test]
    fn dependency_frames_fold_into_the_application_frame() {
        let stack = vec![
            at("myapp::__rust_alloc", "/src/myapp/src/main.rs"),
            at(
                "alloc::raw_vec::finish_grow",
                &format!("{RUSTC}/alloc/src/raw_vec/mod.rs"),
            ),
            at(
                "<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec",
                &format!("{RUSTC}/alloc/src/slice.rs"),
            ),
            at(
                "bytes::bytes::Bytes::copy_from_slice",
                &format!("{REG}/bytes-1.11.0/src/bytes.rs"),
            ),
            at("myapp::leaks::copy_bytes", "/src/myapp/src/leaks.rs"),
            at(
                "tokio::runtime::task::raw::poll",
                &format!("{REG}/tokio-1.48.0/src/runtime/task/raw.rs"),
            ),
        ];
        let rules = SiteRules::for_stacks([stack.as_slice()]);
        assert_eq!(rules.app_crates().collect::<Vec<_>>(), ["myapp"]);
        let kinds: Vec<FrameKind> = stack.iter().map(|f| rules.kind(f)).collect();
        use FrameKind::*;
        assert_eq!(
            kinds,
            [Runtime, Runtime, Runtime, Dependency, App, Dependency]
        );
        let site = rules.site(&stack).unwrap();
        assert_eq!((site.index, site.app), (4, true));
        assert_eq!(site.name, "myapp::leaks::copy_bytes");
        // The name-only rule, for comparison, stops at the dependency's constructor.
        assert_eq!(site_index(&stack), Some(3));
        assert!(is_runtime("<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec"));
    }

    #[test]
    fn without_files_the_application_crates_decide() {
        // `debug = false`: names from the symbol table, no files.
        let stack: Vec<Frame> = [
            "__rust_alloc",
            "bytes::bytes::Bytes::copy_from_slice",
            "myapp::leaks::copy_bytes",
            "<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}",
        ]
        .into_iter()
        .map(Frame::named)
        .collect();
        // No evidence of what the application is: every non-runtime frame counts (the rule
        // for other tools' profiles).
        let none = SiteRules::default();
        assert_eq!(
            none.site(&stack).unwrap().name,
            "bytes::bytes::Bytes::copy_from_slice"
        );
        // The binary's crate recorded in the profile (or given with --app-crates).
        let rules = SiteRules::default().with_app_crates(["myapp"]);
        assert_eq!(rules.site(&stack).unwrap().name, "myapp::leaks::copy_bytes");
        // A package name is taken as its crate's.
        let rules = SiteRules::default().with_app_crates(["my-app", " "]);
        assert_eq!(rules.app_crates().collect::<Vec<_>>(), ["my_app"]);
    }

    #[test]
    fn stacks_without_an_application_frame_get_a_marked_site() {
        let rules = SiteRules::default().with_app_crates(["myapp"]);
        let stack: Vec<Frame> = [
            "__rust_alloc",
            "alloc::raw_vec::RawVec<T,A>::grow_one",
            "__GI___clock_nanosleep",
            "tokio::runtime::task::core::Core<T,S>::poll",
            "tokio::runtime::scheduler::multi_thread::worker::Context::run",
            "start_thread",
        ]
        .into_iter()
        .map(Frame::named)
        .collect();
        let site = rules.site(&stack).unwrap();
        assert!(!site.app);
        assert_eq!(site.index, 3);
        assert_eq!(
            site.name,
            "[no application frame] tokio::runtime::task::core::Core<T,S>::poll"
        );
        // All runtime: the outermost frame, marked as well.
        let stack: Vec<Frame> = ["malloc", "std::rt::lang_start"]
            .into_iter()
            .map(Frame::named)
            .collect();
        let site = rules.site(&stack).unwrap();
        assert_eq!((site.index, site.app), (1, false));
        assert_eq!(site.name, "[no application frame] std::rt::lang_start");
        assert_eq!(rules.site(&[]), None);
    }

    #[test]
    fn profiles_record_the_application_crates() {
        let mut p = crate::profile::Profile::default();
        p.samples.push(crate::profile::Sample {
            stack: vec![Frame::named("bytes::Bytes::new"), Frame::named("svc::run")],
            values: vec![1],
            labels: Vec::new(),
        });
        assert_eq!(
            SiteRules::for_profile(&p)
                .site(&p.samples[0].stack)
                .unwrap()
                .name,
            "bytes::Bytes::new"
        );
        p.comments.push(format!("{APP_CRATES_COMMENT}=svc,svc_db"));
        let rules = SiteRules::for_profile(&p);
        assert_eq!(rules.app_crates().collect::<Vec<_>>(), ["svc", "svc_db"]);
        assert_eq!(rules.site(&p.samples[0].stack).unwrap().name, "svc::run");
    }

    #[test]
    fn short_names_elide_generic_arguments_and_bodies() {
        for (full, short) in [
            ("myapp::cache::insert", "myapp::cache::insert"),
            (
                "tokio::loom::std::unsafe_cell::with_mut<tokio::runtime::task::core::Stage<F>, core::task::poll::Poll<()>>",
                "tokio::loom::std::unsafe_cell::with_mut",
            ),
            (
                "<alloc::vec::Vec<T,A> as core::clone::Clone>::clone",
                "<alloc::vec::Vec as core::clone::Clone>::clone",
            ),
            ("myapp::parse::<u8>", "myapp::parse"),
            ("myapp::a::<u8>::b", "myapp::a::b"),
            (
                "myapp::handlers::reconcile::{async_fn#0}",
                "myapp::handlers::reconcile",
            ),
            ("myapp::run::{{closure}}::{{closure}}", "myapp::run"),
            (
                "<F as axum::handler::Handler<((),),S>>::call::{{closure}}",
                "<F as axum::handler::Handler>::call",
            ),
            (
                "core::ops::function::FnOnce::call_once<fn() -> u8, ()>",
                "core::ops::function::FnOnce::call_once",
            ),
            (
                "[no application frame] tokio::runtime::task::raw::poll<F, S>",
                "[no application frame] tokio::runtime::task::raw::poll",
            ),
            ("malloc", "malloc"),
            ("{closure#0}", "{closure#0}"),
        ] {
            assert_eq!(short_name(full), short, "{full}");
        }
    }

    #[test]
    fn all_runtime_stack_uses_outermost() {
        let stack: Vec<Frame> = ["malloc", "std::rt::lang_start"]
            .into_iter()
            .map(Frame::named)
            .collect();
        assert_eq!(site_index(&stack), Some(1));
        assert_eq!(site_index(&[]), None);
    }
}
