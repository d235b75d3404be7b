//! The sampling estimator is unbiased: over repeated independent trials the mean estimate of
//! live bytes and objects, per allocation size, is within a statistical bound of the truth.
//! One test in this binary: the allocator is process-global.

use diag_core::DiagAlloc;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

const RATE: u64 = 64 * 1024;
const TRIALS: usize = 40;

/// A function that keeps `n` blocks of one size alive in `out`.
type Keeper = fn(&mut Vec<Box<[u8]>>, usize);

#[inline(never)]
fn keep_small(out: &mut Vec<Box<[u8]>>, n: usize) {
    for _ in 0..n {
        out.push(vec![1u8; 100].into_boxed_slice());
    }
}

#[inline(never)]
fn keep_medium(out: &mut Vec<Box<[u8]>>, n: usize) {
    for _ in 0..n {
        out.push(vec![1u8; 10_000].into_boxed_slice());
    }
}

#[inline(never)]
fn keep_large(out: &mut Vec<Box<[u8]>>, n: usize) {
    for _ in 0..n {
        out.push(vec![1u8; 300_000].into_boxed_slice());
    }
}

fn estimate(p: &diag_core::profile::Profile, function: &str) -> (f64, f64) {
    let io = p.sample_index("inuse_objects").unwrap();
    let is = p.sample_index("inuse_space").unwrap();
    let mut t = (0.0, 0.0);
    for s in &p.samples {
        if s.stack.iter().any(|f| f.function.ends_with(function)) {
            t.0 += s.values[io] as f64;
            t.1 += s.values[is] as f64;
        }
    }
    t
}

fn mean_and_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn estimates_are_unbiased_for_every_size() {
    diag_core::heap::set_sample_rate(RATE);
    let cases: [(&str, usize, usize, Keeper); 3] = [
        ("keep_small", 100, 20_000, keep_small),
        ("keep_medium", 10_000, 400, keep_medium),
        ("keep_large", 300_000, 20, keep_large),
    ];
    for (name, size, n, f) in cases {
        let truth_bytes = (size * n) as f64;
        let mut bytes = Vec::new();
        let mut objects = Vec::new();
        for _ in 0..TRIALS {
            let mut kept = Vec::with_capacity(n);
            f(&mut kept, n);
            let (o, b) = estimate(&diag_core::heap::profile("inuse_space"), name);
            objects.push(o);
            bytes.push(b);
            drop(kept);
        }
        let (mb, seb) = mean_and_se(&bytes);
        let (mo, seo) = mean_and_se(&objects);
        eprintln!(
            "{name}: mean bytes {mb:.0} (truth {truth_bytes}, se {seb:.0}), mean objects {mo:.1} (truth {n}, se {seo:.1})"
        );
        // Unbiased: the mean is within 4.5 standard errors of the truth (false alarm ~1e-5),
        // and the standard error itself is small enough for that to mean something.
        assert!(
            (mb - truth_bytes).abs() <= 4.5 * seb + 1.0,
            "{name}: bytes biased"
        );
        assert!(
            (mo - n as f64).abs() <= 4.5 * seo + 0.5,
            "{name}: objects biased"
        );
        assert!(
            seb < 0.1 * truth_bytes,
            "{name}: too noisy to judge ({seb})"
        );
        // After the frees, nothing of this site is live.
        let (o, b) = estimate(&diag_core::heap::profile("inuse_space"), name);
        assert_eq!((o, b), (0.0, 0.0), "{name}: freed blocks still counted");
    }
}
