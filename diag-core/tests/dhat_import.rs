//! Imports a heap profile written by the real `dhat` crate and checks frame order and site
//! attribution. One test in this binary: dhat's allocator is process-global.
//!
//! The profile is also saved as `tests/fixtures/dhat-heap.json` when that file is missing, so
//! the committed fixture is real dhat output.

use std::hint::black_box;
use std::path::PathBuf;

use diag_core::profile::{self, TopOptions, sites};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[inline(never)]
fn leaky_cache(n: usize) -> Vec<Vec<u8>> {
    let mut cache = Vec::with_capacity(n);
    for _ in 0..n {
        cache.push(Vec::with_capacity(4096));
    }
    cache
}

#[inline(never)]
fn churn() {
    for i in 0..10 {
        black_box(vec![i as u8; 100]);
    }
}

#[test]
fn real_dhat_heap_profile() {
    let dir = std::env::temp_dir().join(format!("diag-dhat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dhat-heap.json");
    let kept;
    {
        let _profiler = dhat::Profiler::builder()
            .file_name(&path)
            .trim_backtraces(Some(16))
            .build();
        kept = black_box(leaky_cache(8));
        churn();
    }
    let bytes = std::fs::read(&path).unwrap();
    drop(kept);
    std::fs::remove_dir_all(&dir).ok();

    let p = profile::load(&bytes).expect("dhat output loads");
    let names: Vec<&str> = p.sample_types.iter().map(|t| t.ty.as_str()).collect();
    assert_eq!(
        names,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );

    // The 8 buffers of 4096 bytes are live at exit, allocated by `leaky_cache` via Vec.
    let site_of =
        |s: &diag_core::profile::Sample| sites::site(&s.stack).map(|f| f.function.clone());
    let leak: Vec<_> = p
        .samples
        .iter()
        .filter(|s| s.values[3] == 8 * 4096)
        .collect();
    assert_eq!(leak.len(), 1, "{:#?}", p.samples);
    let stack = &leak[0].stack;
    // Innermost first: the user function comes before (inside) its caller, the test.
    let at = |needle: &str| {
        stack
            .iter()
            .position(|f| f.function.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {stack:#?}"))
    };
    assert!(
        at("leaky_cache") < at("real_dhat_heap_profile"),
        "{stack:#?}"
    );
    assert!(
        site_of(leak[0]).unwrap().ends_with("leaky_cache"),
        "{stack:#?}"
    );
    assert_eq!(leak[0].values[2], 8);
    let site = &stack[sites::site_index(stack).unwrap()];
    assert!(
        site.file
            .as_deref()
            .is_some_and(|f| f.ends_with("dhat_import.rs")),
        "{site:?}"
    );
    assert!(site.line > 0);

    let mut opts = TopOptions::default();
    opts.attribution = profile::Attribution::Sites;
    let top = profile::top(&p, &opts).unwrap();
    assert!(top.entries[0].function.ends_with("leaky_cache"), "{top:#?}");

    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dhat-heap.json");
    if !fixture.exists() {
        std::fs::write(&fixture, &bytes).unwrap();
    }
    // The committed fixture (real dhat output of an earlier run) must load the same way.
    let saved = profile::load(&std::fs::read(&fixture).unwrap()).unwrap();
    let top = profile::top(&saved, &opts).unwrap();
    assert!(top.entries[0].function.ends_with("leaky_cache"), "{top:#?}");
}
