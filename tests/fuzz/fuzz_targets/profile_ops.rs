//! Profile operations on any profile that decodes: `diff`, `delta`, `trend`, `top`, `folded`,
//! `flamegraph` and `diff_flamegraph` must never panic, fail only with `InvalidInput`, and
//! `diff(a, a)` and a trend of `a` alone must be empty.
//!
//! The first byte picks how the two profiles are made: even, from raw bytes through
//! `profile::load` (two big-endian-u16-length-prefixed halves, so real pprof and dhat files are
//! seeds); odd, built from structured fuzz data (names drawn mostly from a dictionary of real
//! Rust, C and allocator symbols), then encoded to pprof and loaded back so every profile tested
//! is one that `load` can return.
#![no_main]

use diag_core::ErrorKind;
use diag_core::profile::{
    Attribution, DiffOptions, FlameOptions, Frame, Profile, Sample, TopOptions, TrendOptions,
    ValueType, delta, diff, diff_flamegraph, flamegraph, folded, load, pprof_codec, top, trend,
    write_folded,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

const FUNCTIONS: &[&str] = &[
    "myapp::cache::fill",
    "myapp::main",
    "myapp::leak::h0123456789abcdef",
    "__rust_alloc",
    "__rdl_alloc",
    "malloc",
    "alloc::raw_vec::RawVec<T,A>::with_capacity_in",
    "alloc::vec::Vec<T>::push",
    "std::collections::hash::map::HashMap<K,V,S>::insert",
    "core::ptr::drop_in_place<myapp::Foo>",
    "<str as alloc::string::ToString>::to_string",
    "<[u8; 32] as myapp::T>::f",
    "<(A, B) as myapp::Foo>::go",
    "<myapp::Foo as core::clone::Clone>::clone",
    "<&T as core::fmt::Debug>::fmt",
    "<<",
    " as ",
    "<",
    "::",
    "",
    ";",
    "a;b\nc\r",
    "diag_core::heap::sample",
    "tokio::runtime::task::raw::poll",
    "0x1234",
];
const TYPES: &[&str] = &[
    "inuse_space",
    "inuse_objects",
    "alloc_space",
    "alloc_objects",
    "cpu",
    "samples",
    "",
];
const UNITS: &[&str] = &["bytes", "count", "nanoseconds", ""];

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Other(String),
}

impl Name {
    fn get(&self, dict: &[&str]) -> String {
        match self {
            Name::Known(i) => dict[usize::from(*i) % dict.len()].to_owned(),
            Name::Other(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ArbFrame {
    function: Name,
    file: Option<String>,
    line: u32,
    address: u8,
}

#[derive(Arbitrary, Debug)]
struct ArbSample {
    stack: Vec<ArbFrame>,
    values: Vec<i64>,
    labels: Vec<(String, String)>,
}

#[derive(Arbitrary, Debug)]
struct ArbProfile {
    types: Vec<(Name, Name)>,
    samples: Vec<ArbSample>,
    default_type: Option<Name>,
    period: i64,
}

impl ArbProfile {
    fn build(&self) -> Profile {
        let sample_types: Vec<ValueType> = self
            .types
            .iter()
            .map(|(t, u)| ValueType::new(t.get(TYPES), u.get(UNITS)))
            .collect();
        let samples = self
            .samples
            .iter()
            .map(|s| {
                let mut values = s.values.clone();
                values.resize(sample_types.len(), 1);
                Sample {
                    stack: s
                        .stack
                        .iter()
                        .map(|f| Frame {
                            function: f.function.get(FUNCTIONS),
                            file: f.file.clone(),
                            line: f.line,
                            address: u64::from(f.address),
                        })
                        .collect(),
                    values,
                    labels: s.labels.clone(),
                }
            })
            .collect();
        Profile {
            sample_types,
            samples,
            period_type: None,
            period: self.period,
            default_sample_type: self.default_type.as_ref().map(|n| n.get(TYPES)),
            ..Profile::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Ops {
    sample_type: Option<Name>,
    n: u8,
    sites: bool,
    lines: bool,
    reverse: bool,
    min_width: f64,
    title: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct Built {
    a: ArbProfile,
    b: ArbProfile,
}

fn expect_invalid<T>(what: &str, r: diag_core::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e:?}");
            None
        }
    }
}

fn run(a: &Profile, b: &Profile, ops: &Ops) {
    // `None`: the default column of each function.
    let ty = ops.sample_type.as_ref().map(|n| n.get(TYPES));
    let mut dopts = DiffOptions::default();
    dopts.sample_type = ty.clone();
    expect_invalid("diff", diff(a, b, &dopts));
    // A delta profile of b over a encodes and decodes; a less itself is empty.
    if let Some(d) = expect_invalid("delta", delta(a, b)) {
        let back = pprof_codec::decode(&pprof_codec::encode(&d)).expect("delta round trip");
        assert_eq!(back.samples.len(), d.samples.len());
    }
    if let Some(d) = expect_invalid("delta a a", delta(a, a)) {
        assert!(d.samples.is_empty(), "delta(a, a) has samples: {:?}", d.samples);
    }
    if let Some(same) = expect_invalid("diff a a", diff(a, a, &dopts)) {
        assert!(
            same.sites.is_empty(),
            "diff(a, a) has sites: {:?}",
            same.sites
        );
        assert_eq!(same.totals.delta_bytes, 0);
    }

    // Trends over a, b, a, b with the profiles' own timestamps (often equal: refused), then
    // with none (the given order), and of `a` alone (nothing changes).
    let mut trend_opts = TrendOptions::default();
    trend_opts.sample_type = ty.clone();
    let series = [a, b, a, b];
    expect_invalid("trend", trend(&series, &trend_opts));
    let untimed = |p: &Profile| Profile {
        time_nanos: 0,
        ..p.clone()
    };
    let (ua, ub) = (untimed(a), untimed(b));
    if let Some(t) = expect_invalid("trend untimed", trend(&[&ua, &ub, &ua, &ub], &trend_opts)) {
        for s in &t.sites {
            assert!(s.p_growing >= 0.0 && s.p_growing <= 1.0, "{s:?}");
            assert!(s.p_shrinking >= 0.0 && s.p_shrinking <= 1.0, "{s:?}");
            assert_eq!(s.bytes.len(), 4);
            assert!(s.bytes.iter().any(|&v| v != s.bytes[0]), "{s:?}");
        }
    }
    if let Some(t) = expect_invalid("trend a a a", trend(&[&ua, &ua, &ua], &trend_opts)) {
        assert!(
            t.sites.is_empty(),
            "a trend of one profile has sites: {:?}",
            t.sites
        );
    }

    let mut topts = TopOptions::default();
    topts.sample_type = ty.clone();
    topts.n = usize::from(ops.n);
    topts.attribution = if ops.sites {
        Attribution::Sites
    } else {
        Attribution::Leaf
    };
    topts.lines = ops.lines;
    if let Some(t) = expect_invalid("top", top(a, &topts)) {
        assert!(topts.n == 0 || t.entries.len() <= topts.n);
    }

    expect_invalid("folded", folded(a, ty.as_deref()));
    expect_invalid(
        "write_folded",
        write_folded(a, ty.as_deref(), std::io::sink()),
    );

    let mut fopts = FlameOptions::default();
    fopts.sample_type = ty.clone();
    fopts.reverse = ops.reverse;
    fopts.min_width = ops.min_width;
    fopts.title = ops.title.clone();
    expect_invalid("flamegraph", flamegraph(a, &fopts, std::io::sink()));
    expect_invalid(
        "diff_flamegraph",
        diff_flamegraph(a, b, &fopts, std::io::sink()),
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let (a, b) = if mode % 2 == 0 {
        let Some(len) = rest
            .get(..2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return;
        };
        let rest = &rest[2..];
        let (first, second) = rest.split_at(len.min(rest.len()));
        let (Ok(a), Ok(b)) = (load(first), load(second)) else {
            return;
        };
        u = Unstructured::new(&[]);
        (a, b)
    } else {
        let Ok(built) = Built::arbitrary(&mut u) else {
            return;
        };
        // Encoding then loading must work, except for a profile without columns, which pprof
        // decoders refuse.
        let load_back = |p: Profile| match load(&pprof_codec::encode(&p)) {
            Ok(p) => Some(p),
            Err(e) => {
                assert!(p.sample_types.is_empty(), "encode then load: {e}");
                None
            }
        };
        let (Some(a), Some(b)) = (load_back(built.a.build()), load_back(built.b.build())) else {
            return;
        };
        (a, b)
    };
    let ops = Ops::arbitrary(&mut u).unwrap_or(Ops {
        sample_type: None,
        n: 0,
        sites: mode & 2 != 0,
        lines: mode & 8 != 0,
        reverse: mode & 4 != 0,
        min_width: 0.1,
        title: None,
    });
    run(&a, &b, &ops);
});
