//! The heap sampler's cached unwinder in a real program: stacks it takes (with its learnt
//! steps) symbolize to the same frames as libgcc's, on the main thread, on spawned threads and
//! on a thread with a small stack (that the steps unwind as framehop alone does is the unit
//! test `steps_match_framehop`); and loading or unloading a library (which moves the loader's counters and makes the
//! unwinder rescan its module list) neither breaks capture nor pushes stacks to the fallback.
//! One test: the allocator and its counters are process-global.

use diag_core::DiagAlloc;
use diag_core::heap::{self, Unwinder};

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// Keeps one 4000-byte block per call, allocated in a function named after the unwinder.
#[inline(never)]
fn kept_by_cached(keep: &mut Vec<Vec<u8>>) {
    keep.push(std::hint::black_box(vec![1u8; 4000]));
}

#[inline(never)]
fn kept_by_libgcc(keep: &mut Vec<Vec<u8>>) {
    keep.push(std::hint::black_box(vec![2u8; 4000]));
}

/// The same caller for both, a few frames deep.
#[inline(never)]
fn parent(depth: u32, keep: &mut Vec<Vec<u8>>, u: Unwinder) {
    if depth > 0 {
        parent(std::hint::black_box(depth - 1), keep, u);
        std::hint::black_box(&keep);
        return;
    }
    match u {
        Unwinder::Libgcc => kept_by_libgcc(keep),
        Unwinder::Cached => kept_by_cached(keep),
    }
}

/// The symbolized stack of the live sample whose stack holds `leaf`, from `leaf` outwards.
fn stack_of(leaf: &str) -> Vec<String> {
    let p = heap::profile(heap::INUSE_SPACE);
    let s = p
        .samples
        .iter()
        .find(|s| s.stack.iter().any(|f| f.function.ends_with(leaf)))
        .unwrap_or_else(|| panic!("no sample under {leaf}"));
    let names: Vec<String> = s.stack.iter().map(|f| f.function.clone()).collect();
    let at = names.iter().position(|f| f.ends_with(leaf)).unwrap();
    names[at..].to_vec()
}

fn check_same_stacks(label: &str) {
    let mut keep = Vec::new();
    heap::set_unwinder(Unwinder::Cached);
    let before = heap::stats().unwind;
    parent(6, &mut keep, Unwinder::Cached);
    let after = heap::stats().unwind;
    assert_eq!(
        after.fallbacks, before.fallbacks,
        "{label}: the cached unwinder gave a stack to libgcc"
    );
    assert!(after.cached > before.cached, "{label}: nothing captured");
    assert!(
        after.rule_hits + after.rule_misses > before.rule_hits + before.rule_misses,
        "{label}: captured with no rule lookup counted: {before:?} -> {after:?}"
    );
    heap::set_unwinder(Unwinder::Libgcc);
    parent(6, &mut keep, Unwinder::Libgcc);
    heap::set_unwinder(Unwinder::Cached);

    let cached = stack_of("kept_by_cached");
    let libgcc = stack_of("kept_by_libgcc");
    // (The crate is built with opt-level 2: a level of the recursion may be folded.)
    assert!(
        cached
            .iter()
            .filter(|f| f.ends_with("unwinder::parent"))
            .count()
            >= 4,
        "{label}: {cached:#?}"
    );
    assert!(
        cached.iter().any(|f| f.ends_with("check_same_stacks")),
        "{label}: {cached:#?}"
    );
    // Everything but the leaf is the same call chain.
    assert_eq!(cached[1..], libgcc[1..], "{label}");
    drop(keep);
}

/// A library the test binary does not link: part of glibc, so present wherever it runs.
const EXTRA_LIBRARY: &std::ffi::CStr = c"libresolv.so.2";

#[test]
fn cached_stacks_match_libgcc_across_threads_and_library_loads() {
    heap::set_sample_rate(1); // every allocation sampled: each `vec!` above is a capture
    check_same_stacks("main thread");
    std::thread::spawn(|| check_same_stacks("spawned thread"))
        .join()
        .unwrap();
    std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(|| check_same_stacks("128 KiB stack"))
        .unwrap()
        .join()
        .unwrap();

    // SAFETY: dlopen/dlclose of a glibc library with no constructors of consequence.
    let handle = unsafe { libc::dlopen(EXTRA_LIBRARY.as_ptr(), libc::RTLD_NOW) };
    assert!(!handle.is_null(), "dlopen {EXTRA_LIBRARY:?}");
    check_same_stacks("after dlopen");
    // SAFETY: the handle came from dlopen above and nothing of the library is in use.
    assert_eq!(unsafe { libc::dlclose(handle) }, 0);
    check_same_stacks("after dlclose");
    heap::set_sample_rate(heap::DEFAULT_SAMPLE_BYTES);
}
