//! What a heap snapshot costs with many distinct stacks: wall time of the first (cold: the
//! symbolizer opens the binary's DWARF) and of later (warm) snapshots, each symbolized and
//! encoded as `/debug/pprof/heap` serves it, and the anonymous memory the process keeps after.
//!
//! Exact mode (every allocation sampled) makes each of `STACKS` (default 10,000) call paths a
//! stack of its own with one live block: a path spells its number in 14 two-way calls through
//! 28 functions, and its leaf allocates through one of eight standard-library routes (`Box`,
//! `Vec`, `String`, `format!`, `HashMap`, `BTreeMap`, `VecDeque`, `to_vec`), so the stacks
//! cross the standard library's compilation units as a service's do.
//!
//! Then warm snapshots with and without ages (`heap::set_profile_ages`), in interleaved pairs.
//!
//! `cargo bench -p diag-benches --bench snapshot_cost` (env `STACKS`, `WARM` runs, default 5).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use diag_benches::env_usize;
use diag_core::DiagAlloc;
use diag_core::heap;

#[global_allocator]
static ALLOC: DiagAlloc = DiagAlloc::system();

/// Levels of two-way calls: 2^14 paths.
const BITS: u32 = 14;

/// One live block, allocated through one of eight standard-library routes.
#[allow(dead_code)] // Held to stay live, never read.
enum Held {
    Boxed(Box<[u8; 48]>),
    Words(Vec<u64>),
    Text(String),
    Map(HashMap<usize, usize>),
    Tree(BTreeMap<usize, usize>),
    Queue(VecDeque<u32>),
    Halves(Vec<u16>),
}

/// The leaf: one live allocation through one of eight standard-library routes.
#[inline(never)]
fn leaf(path: usize) -> Held {
    match path % 8 {
        0 => Held::Boxed(Box::new([path as u8; 48])),
        1 => Held::Words(Vec::with_capacity(6 + path % 3)),
        2 => Held::Text(String::from("a string held by the benchmark")),
        3 => Held::Text(format!("path {path}")),
        4 => Held::Map(HashMap::from([(path, path)])),
        5 => Held::Tree(BTreeMap::from([(path, path)])),
        6 => Held::Queue(VecDeque::with_capacity(10)),
        _ => Held::Halves([path as u16; 20].to_vec()),
    }
}

macro_rules! levels {
    ($($a:ident $b:ident $next:ident;)*) => {$(
        #[inline(never)]
        fn $a(path: usize, orig: usize) -> Held {
            let h = $next(path >> 1, orig);
            std::hint::black_box(1);
            h
        }
        #[inline(never)]
        fn $b(path: usize, orig: usize) -> Held {
            let h = $next(path >> 1, orig);
            std::hint::black_box(2);
            h
        }
    )*};
}

/// Level `k` calls level `k + 1` through its `a` or `b` function as bit `k` of the path says.
macro_rules! choose {
    ($($name:ident $a:ident $b:ident;)*) => {$(
        #[inline(never)]
        fn $name(path: usize, orig: usize) -> Held {
            if path & 1 == 0 { $a(path, orig) } else { $b(path, orig) }
        }
    )*};
}

choose! {
    l0 a0 b0; l1 a1 b1; l2 a2 b2; l3 a3 b3; l4 a4 b4; l5 a5 b5; l6 a6 b6;
    l7 a7 b7; l8 a8 b8; l9 a9 b9; l10 a10 b10; l11 a11 b11; l12 a12 b12; l13 a13 b13;
}
levels! {
    a0 b0 l1; a1 b1 l2; a2 b2 l3; a3 b3 l4; a4 b4 l5; a5 b5 l6; a6 b6 l7;
    a7 b7 l8; a8 b8 l9; a9 b9 l10; a10 b10 l11; a11 b11 l12; a12 b12 l13; a13 b13 l14;
}

/// The end of every path: the leaf's route comes from the path's number.
#[inline(never)]
fn l14(_rest: usize, orig: usize) -> Held {
    let h = leaf(orig);
    std::hint::black_box(3);
    h
}

/// A block allocated at the end of the call path that spells `path`.
fn at_path(path: usize) -> Held {
    l0(path, path)
}

fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One snapshot as `/debug/pprof/heap` makes it: the profile, symbolized, gzip'd pprof.
fn snapshot() -> (Duration, usize) {
    let t = Instant::now();
    let p = heap::profile(heap::INUSE_SPACE);
    let bytes = {
        let _own = diag_core::IgnoreAllocs::new();
        diag_core::profile::pprof_codec::encode_gzip(&p).len()
    };
    let took = t.elapsed();
    drop(p);
    (took, bytes)
}

fn main() {
    let stacks = env_usize("STACKS", 10_000).min(1 << BITS);
    let warm = env_usize("WARM", 5).max(1);
    // Room for every path's stack and the program's own (the default cap is 16 Ki).
    heap::set_max_stacks(1 << 16);
    let mut held: Vec<Held> = Vec::with_capacity(stacks);
    heap::set_sample_rate(1);
    held.extend((0..stacks).map(at_path));
    heap::set_sample_rate(512 * 1024);
    let st = heap::stats();
    let anon0 = rss_anon_kib();
    let (cold, bytes) = snapshot();
    let anon_cold = rss_anon_kib();
    let mut warms: Vec<Duration> = (0..warm).map(|_| snapshot().0).collect();
    warms.sort();
    let anon_warm = rss_anon_kib();
    // Warm snapshots with and without ages, interleaved pairs.
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let (mut bytes_with, mut bytes_without) = (0, 0);
    for _ in 0..warm {
        heap::set_profile_ages(true);
        let (t, b) = snapshot();
        with.push(t);
        bytes_with = b;
        heap::set_profile_ages(false);
        let (t, b) = snapshot();
        without.push(t);
        bytes_without = b;
    }
    heap::set_profile_ages(true);
    with.sort();
    without.sort();
    let ms = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1e3;
    println!(
        "snapshot_cost: warm, interleaved: with ages median {:.1} ms ({bytes_with} bytes), \
         without {:.1} ms ({bytes_without} bytes): {:.2}x",
        ms(&with),
        ms(&without),
        ms(&with) / ms(&without),
    );
    println!(
        "snapshot_cost: {} stacks in the table, {} bytes gzip'd; cold {:.1} ms, warm median \
         {:.1} ms (of {warm}); RssAnon +{} KiB after the cold snapshot, +{} KiB after the warm \
         ones",
        st.stacks,
        bytes,
        cold.as_secs_f64() * 1e3,
        warms[warms.len() / 2].as_secs_f64() * 1e3,
        anon_cold.saturating_sub(anon0),
        anon_warm.saturating_sub(anon0),
    );
    drop(held);
}
