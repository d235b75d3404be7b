//! Site attribution: which frame of a stack is "the user's code".
//!
//! A site is the innermost frame of the user's code: frames of std, core, alloc, the allocator
//! and diag itself are folded into their caller, so a leak through `Vec::with_capacity` is
//! attributed to the function that called it.
//!
//! The decision is made per frame from the demangled function name alone (never the address),
//! so two runs of the same binary, or two builds of it, attribute identically.

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
        let trait_root = leading_ident(strip_type_prefixes(&function[pos + 4..]));
        if !trait_root.is_empty() {
            return trait_root;
        }
    }
    root
}

/// True if `function` is runtime code (std, core, alloc, the allocator, diag, ...) that a site
/// is never attributed to.
pub fn is_runtime(function: &str) -> bool {
    let name = function.trim();
    if RUNTIME_SYMBOLS.contains(&name)
        || RUNTIME_SYMBOL_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return true;
    }
    let root = crate_root(name);
    RUNTIME_CRATES.contains(&root) || RUNTIME_SYMBOL_PREFIXES.iter().any(|p| root.starts_with(p))
}

/// The index in `stack` (innermost first) of its site: the innermost frame that is not
/// runtime code. If every frame is runtime code the outermost frame is the site (everything
/// was folded into it); an empty stack has none.
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

/// The site frame of `stack`, see [`site_index`].
pub fn site(stack: &[Frame]) -> Option<&Frame> {
    site_index(stack).map(|i| &stack[i])
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
