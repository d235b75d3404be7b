//! Helpers for the profile module's unit tests: a tiny deterministic PRNG and profile builders.

use super::model::{Frame, Profile, Sample, ValueType};

/// xorshift64*: deterministic, good enough to generate test inputs.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The four heap columns in Go's order.
pub(crate) fn heap_types() -> Vec<ValueType> {
    vec![
        ValueType::new("alloc_objects", "count"),
        ValueType::new("alloc_space", "bytes"),
        ValueType::new("inuse_objects", "count"),
        ValueType::new("inuse_space", "bytes"),
    ]
}

/// A heap sample: `stack` innermost first, `bytes` in use in `objects` objects, twice that
/// allocated in total.
pub(crate) fn heap_sample(stack: &[&str], bytes: i64, objects: i64) -> Sample {
    Sample {
        stack: stack.iter().map(|f| Frame::named(*f)).collect(),
        values: vec![objects * 2, bytes * 2, objects, bytes],
        labels: Vec::new(),
    }
}

/// A heap profile of `(stack, inuse bytes)` pairs, one object per 64 bytes (at least one).
pub(crate) fn heap_profile(samples: &[(&[&str], i64)]) -> Profile {
    Profile {
        sample_types: heap_types(),
        samples: samples
            .iter()
            .map(|(stack, bytes)| heap_sample(stack, *bytes, ((bytes + 63) / 64).max(1)))
            .collect(),
        period_type: Some(ValueType::new("space", "bytes")),
        period: 512 * 1024,
        default_sample_type: Some("inuse_space".to_owned()),
        ..Profile::default()
    }
}

/// A pprof-rs style CPU profile of `(stack, samples)` pairs, 10ms per sample.
pub(crate) fn cpu_profile(samples: &[(&[&str], i64)]) -> Profile {
    Profile {
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        samples: samples
            .iter()
            .map(|(stack, n)| Sample {
                stack: stack.iter().map(|f| Frame::named(*f)).collect(),
                values: vec![*n, n * 10_000_000],
                labels: Vec::new(),
            })
            .collect(),
        period_type: Some(ValueType::new("cpu", "nanoseconds")),
        period: 10_000_000,
        ..Profile::default()
    }
}

const NAMES: &[&str] = &[
    "myapp::main",
    "myapp::handlers::upload::{{closure}}",
    "<myapp::Foo as core::clone::Clone>::clone",
    "alloc::raw_vec::RawVec<T,A>::with_capacity_in",
    "<[u8; 32] as core::fmt::Debug>::fmt",
    "std::rt::lang_start",
    "__rust_alloc",
    "tokio::runtime::task::raw::poll",
    "naïve::ünïcode",
];

/// A random profile that the pprof codec must round-trip exactly.
pub(crate) fn random_profile(rng: &mut Rng) -> Profile {
    let ncols = 1 + rng.below(4) as usize;
    let sample_types: Vec<ValueType> = heap_types().into_iter().take(ncols).collect();
    let nsamples = rng.below(12) as usize;
    let mut samples = Vec::with_capacity(nsamples);
    for _ in 0..nsamples {
        let depth = rng.below(8) as usize;
        let mut stack = Vec::with_capacity(depth);
        let mut address = 0;
        for _ in 0..depth {
            // Sometimes share the previous frame's address: an inlined call.
            if rng.below(3) != 0 {
                address = if rng.below(4) == 0 {
                    0
                } else {
                    0x1000 + rng.below(64) * 16
                };
            }
            let file = match rng.below(3) {
                0 => None,
                1 => Some("src/main.rs".to_owned()),
                _ => Some("/rustc/library/alloc/src/vec/mod.rs".to_owned()),
            };
            stack.push(Frame {
                function: (*rng.pick(NAMES)).to_owned(),
                file,
                line: rng.below(500) as u32,
                address,
            });
        }
        let values = (0..ncols)
            .map(|_| rng.below(1 << 40) as i64 - (1 << 20))
            .collect();
        let labels = if rng.below(4) == 0 {
            vec![("thread".to_owned(), "tokio-runtime-worker".to_owned())]
        } else {
            Vec::new()
        };
        samples.push(Sample {
            stack,
            values,
            labels,
        });
    }
    let default_sample_type = match rng.below(3) {
        0 => None,
        _ => Some(sample_types[rng.below(ncols as u64) as usize].ty.clone()),
    };
    Profile {
        sample_types,
        samples,
        period_type: (rng.below(2) == 0).then(|| ValueType::new("space", "bytes")),
        period: rng.below(1 << 20) as i64,
        time_nanos: rng.next() as i64,
        duration_nanos: rng.below(1 << 40) as i64,
        default_sample_type,
        comments: (0..rng.below(3)).map(|i| format!("comment{i}=x")).collect(),
        mappings: (0..rng.below(3))
            .map(|i| {
                let start = rng.below(1 << 47);
                crate::profile::Mapping {
                    start,
                    limit: start + 1 + rng.below(1 << 24),
                    offset: rng.below(1 << 20),
                    file: format!("/lib/lib{i}.so"),
                    build_id: if i == 0 {
                        "abc123".into()
                    } else {
                        String::new()
                    },
                }
            })
            .collect(),
    }
}
