#![cfg(feature = "heap")]
//! A leak through `Vec::with_capacity` is attributed to the function that leaked it, with an
//! estimate close to the truth. One test per binary: the allocator is process-global.

use diag_core::DiagAlloc;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

#[inline(never)]
fn leaky_function(keep: &mut Vec<Vec<u8>>, n: usize) {
    for _ in 0..n {
        let mut v = Vec::with_capacity(4096);
        v.push(1u8);
        keep.push(std::hint::black_box(v));
    }
}

#[test]
fn leak_is_attributed_to_its_caller() {
    diag_core::heap::set_sample_rate(64 * 1024);
    let mut keep = Vec::new();
    leaky_function(&mut keep, 20_000); // ~78 MiB in 4 KiB blocks
    let p = diag_core::heap::profile("inuse_space");
    let inuse = p.sample_index("inuse_space").unwrap();
    let mut by_leaf: Vec<(String, i64)> = Vec::new();
    for s in &p.samples {
        let site = s
            .stack
            .iter()
            .find(|f| f.function.contains("leaky_function"))
            .map(|f| f.function.clone());
        if let Some(site) = site {
            by_leaf.push((site, s.values[inuse]));
        }
    }
    let total: i64 = by_leaf.iter().map(|x| x.1).sum();
    let truth = 20_000i64 * 4096;
    let err = (total - truth).abs() as f64 / truth as f64;
    eprintln!(
        "estimate {total} truth {truth} err {err:.3} samples {}",
        p.samples.len()
    );
    for s in p.samples.iter().take(3) {
        eprintln!(
            "{:?}",
            s.stack.iter().map(|f| &f.function).collect::<Vec<_>>()
        );
    }
    assert!(err < 0.1, "estimate {total} vs {truth}");
    let st = diag_core::heap::stats();
    assert!(st.live_bytes >= truth as u64, "{st:?}");
    drop(keep);
}
