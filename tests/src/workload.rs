//! A deterministic allocation workload: the same sequence of allocations, reallocations and
//! frees in every process that runs it, so counts taken by different allocators compare
//! exactly. No hashing, no threads, no time.

use std::collections::BTreeMap;

/// What the workload leaves alive, so the caller decides when it is freed.
pub struct Kept {
    /// Strings kept.
    pub strings: Vec<String>,
    /// Boxes kept.
    pub boxes: Vec<Box<[u64]>>,
    /// A map kept.
    pub map: BTreeMap<u32, Vec<u8>>,
}

/// Runs the workload: about 20 000 allocations of sizes from 1 byte to 1 MiB, with growth by
/// realloc, shrinking, and frees; returns what it keeps alive.
#[inline(never)]
pub fn workload() -> Kept {
    let mut strings = Vec::new();
    let mut boxes = Vec::new();
    let mut map = BTreeMap::new();
    let mut x: u32 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..5000u32 {
        let r = next();
        // A string grown by pushes: reallocations.
        let mut s = String::new();
        for _ in 0..(r % 40) {
            s.push('x');
        }
        if i % 3 == 0 {
            strings.push(s);
        }
        // A boxed slice of varying size, some kept.
        let n = 1 + (r as usize >> 8) % 512;
        let b: Box<[u64]> = vec![u64::from(i); n].into_boxed_slice();
        if i % 5 == 0 {
            boxes.push(b);
        }
        // Map entries with vectors that shrink.
        let mut v = Vec::with_capacity(64 + (r as usize % 4096));
        v.extend_from_slice(&[1u8; 32]);
        v.shrink_to_fit();
        map.insert(r % 1000, v);
        if i % 1000 == 999 {
            // A big block, freed at once.
            let big = vec![0u8; 1 << 20];
            std::hint::black_box(&big);
        }
    }
    Kept {
        strings,
        boxes,
        map,
    }
}
