//! The allocation-heavy workloads the heap benches time (`heap_overhead` through the
//! `alloc_workload` child, `heap_ab` in process). Each takes an iteration count and a seed and
//! returns a checksum, so the optimiser cannot drop the work, and frees everything it
//! allocates before it returns.

/// One workload: its name, the function, and its full operation count per thread.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The name benches and `alloc_workload` take on the command line.
    pub name: &'static str,
    /// Runs `iters` operations from `seed`; returns a checksum.
    pub run: fn(usize, u64) -> u64,
    /// Operations per thread in a full run of `heap_overhead`.
    pub full_ops: usize,
}

/// Every workload, in the order the benches report them.
pub const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "churn",
        run: churn,
        full_ops: 10_000_000,
    },
    Workload {
        name: "mixed",
        run: mixed,
        full_ops: 1_000_000,
    },
    Workload {
        name: "json",
        run: json,
        full_ops: 200_000,
    },
];

/// The workload called `name`.
pub fn by_name(name: &str) -> Option<Workload> {
    WORKLOADS.iter().copied().find(|w| w.name == name)
}

#[inline(always)]
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Small alloc/free pairs and nothing else: the worst case for an allocator wrapper.
#[inline(never)]
pub fn churn(iters: usize, seed: u64) -> u64 {
    let mut x = seed | 1;
    let mut sum = 0u64;
    for _ in 0..iters {
        let x = xorshift(&mut x);
        let n = 16 + (x % 240) as usize;
        let mut v: Vec<u8> = Vec::with_capacity(n);
        v.push(x as u8);
        sum = sum.wrapping_add(std::hint::black_box(&v)[0] as u64);
    }
    sum
}

/// A buffer-heavy mix: a working set of 1024 live buffers of log-uniform sizes (8 B to
/// 64 KiB) replaced at random, zeroed and touched, plus string formatting. Most of its time
/// is zeroing the buffers.
#[inline(never)]
pub fn mixed(iters: usize, seed: u64) -> u64 {
    let mut x = seed | 1;
    let mut live: Vec<Vec<u8>> = (0..1024).map(|_| Vec::new()).collect();
    let mut sum = 0u64;
    for i in 0..iters {
        let x = xorshift(&mut x);
        let size = 8usize << (x % 14);
        let size = size + (x >> 20) as usize % size;
        let mut v = vec![0u8; size];
        v[size - 1] = i as u8;
        let slot = (x >> 40) as usize % live.len();
        live[slot] = v;
        if i % 8 == 0 {
            let s = format!("request {i} from {:x}", x);
            sum = sum.wrapping_add(s.len() as u64);
        }
        sum = sum.wrapping_add(live[slot][0] as u64);
    }
    sum
}

/// A service-like request: parse a ~5 KB JSON document (an API response: 24 records with
/// strings, numbers, tags and a nested object) into a `serde_json::Value`, change one field,
/// and serialise it back. Small allocations of many sizes (strings, vectors, map nodes),
/// all freed at the end of each operation, with real work between them.
#[inline(never)]
pub fn json(iters: usize, seed: u64) -> u64 {
    let doc = json_document(seed);
    let mut sum = 0u64;
    for i in 0..iters {
        let mut v: serde_json::Value = serde_json::from_str(&doc).expect("valid document");
        v["page"] = serde_json::Value::from(i);
        let out = serde_json::to_string(&v).expect("serialisable");
        sum = sum.wrapping_add(out.len() as u64);
    }
    sum
}

/// The document [`json`] parses: the same shape for every seed, varied contents.
fn json_document(seed: u64) -> String {
    let mut x = seed | 1;
    let mut items = Vec::new();
    for id in 0..24 {
        let r = xorshift(&mut x);
        let tags: Vec<String> = (0..(r % 5))
            .map(|t| format!("tag-{}", (r >> (8 * t)) % 97))
            .collect();
        items.push(serde_json::json!({
            "id": id,
            "sku": format!("SKU-{:08x}", r as u32),
            "name": format!("Item number {id} of the catalogue, batch {}", r % 1000),
            "price_cents": r % 100_000,
            "in_stock": !r.is_multiple_of(3),
            "tags": tags,
            "dimensions": {"w": (r >> 8) % 500, "h": (r >> 16) % 500, "unit": "mm"},
        }));
    }
    serde_json::json!({"page": 0, "per_page": 24, "items": items}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_deterministic_and_found_by_name() {
        for w in WORKLOADS {
            assert_eq!((w.run)(50, 7), (w.run)(50, 7), "{}", w.name);
            assert_eq!(by_name(w.name).map(|f| f.name), Some(w.name));
        }
        assert!(by_name("nope").is_none());
        let doc = json_document(3);
        assert!((4_000..8_000).contains(&doc.len()), "{} bytes", doc.len());
    }
}
