//! Address -> frames, done when a profile is served (never on the allocation path), cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::profile::Frame;

/// Addresses kept in the cache before it is cleared (bounds diag's own memory).
const MAX_CACHED: usize = 256 * 1024;

type Cache = HashMap<usize, Arc<[Frame]>>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The frames at return address `addr`, innermost (inlined) first. Unknown addresses get one
/// frame named by address.
pub(crate) fn frames(addr: usize) -> Arc<[Frame]> {
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = c.get(&addr) {
        return f.clone();
    }
    let out = crate::stack::symbols::resolve_with(addr, |cb| {
        backtrace::resolve(addr as *mut std::ffi::c_void, cb)
    });
    let f: Arc<[Frame]> = out.into();
    if c.len() >= MAX_CACHED {
        c.clear();
    }
    c.insert(addr, f.clone());
    f
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

/// Symbolizes a captured stack: inlined frames expanded, the profiler's own frames at the top
/// removed.
pub(crate) fn stack(addrs: &[usize]) -> Vec<Frame> {
    let mut out = Vec::with_capacity(addrs.len() * 2);
    for &a in addrs {
        out.extend(frames(a).iter().cloned());
    }
    let keep_from = out
        .iter()
        .position(|f| !is_machinery(&f.function))
        .unwrap_or(out.len());
    out.drain(..keep_from);
    out
}
