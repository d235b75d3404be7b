//! `diag report FILE...`: the page from saved profiles, its size for a profile of 10,000
//! distinct stacks, and clear errors for input it cannot use.

use std::time::Instant;

use diag_core::profile::{Frame, Profile, Sample, ValueType, pprof_codec};

mod support;
use support::{fails, fixture, ok, scratch};

fn path(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn report_of_two_heaps_and_a_cpu_profile() {
    let dir = scratch("report-files");
    let page = dir.join("r.html");
    let stdout = ok(&[
        "report",
        &path("before.pb.gz"),
        &path("after.pb.gz"),
        &path("cpu.pb"),
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(stdout.trim(), page.display().to_string());
    let html = std::fs::read_to_string(&page).unwrap();
    let table = &html[html.find("id=\"growth-table\"").expect("growth table")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("myapp::cache::Cache::insert"), "{table}");
    assert!(
        html.contains("<svg class=\"flame diff\"") && html.contains("<svg class=\"flame single\"")
    );
    assert!(html.contains("myapp::json::parse"), "CPU table");
    assert!(html.contains("outlined: path to myapp::cache::Cache::insert"));
    // Two snapshots: the verdict names the growth, and says a p-value needs more.
    assert!(html.contains("no p-value"));
    assert!(!html.contains("https://") && !html.contains("http://"));
}

#[test]
fn input_it_cannot_use_is_a_clear_error() {
    let e = fails(&["report", &path("before.pb.gz"), &path("not-a-profile.txt")]);
    assert!(
        e.contains("not-a-profile.txt") && e.contains("not a pprof profile"),
        "{e}"
    );
    let e = fails(&["report", &path("before.pb.gz")]);
    assert!(e.contains("the only heap snapshot"), "{e}");
    let e = fails(&["report", &path("before.pb.gz"), "http://127.0.0.1:9"]);
    assert!(e.contains("not both"), "{e}");
    let e = fails(&["report", &path("cpu.pb"), "--seconds", "3"]);
    assert!(
        e.contains("--seconds and --since apply to a live service"),
        "{e}"
    );
    let e = fails(&["report", "http://127.0.0.1:9", "--seconds", "1"]);
    assert!(e.contains("127.0.0.1:9"), "{e}");
}

/// A deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn frame(function: String, file: &str) -> Frame {
    Frame {
        function,
        file: Some(file.to_owned()),
        line: 1,
        address: 0,
    }
}

/// `n` distinct stacks as a service's would be: allocator frames, application frames mixed
/// with dependency frames, the runtime at the bottom; innermost first.
fn stacks(n: usize) -> Vec<Vec<Frame>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let mut s = vec![frame(
            "alloc::raw_vec::RawVecInner<A>::try_allocate_in".into(),
            "/rustc/x/library/alloc/src/raw_vec.rs",
        )];
        for _ in 0..4 + rng.below(20) {
            if rng.below(3) == 0 {
                s.push(frame(
                    format!("hyper::proto::h1::role::f{}", rng.below(40)),
                    "/c/registry/src/x/hyper-1.0/src/role.rs",
                ));
            } else {
                s.push(frame(
                    format!("myapp::m{}::handler_{}", rng.below(30), rng.below(50)),
                    "src/app.rs",
                ));
            }
        }
        for k in 0..6 {
            s.push(frame(
                format!("tokio::runtime::task::harness::poll_{k}"),
                "/c/registry/src/x/tokio-1.0/src/harness.rs",
            ));
        }
        let key: Vec<String> = s.iter().map(|f| f.function.clone()).collect();
        if seen.insert(key) {
            out.push(s);
        }
    }
    out
}

fn profile(
    types: &[(&str, &str)],
    stacks: &[Vec<Frame>],
    value: impl Fn(usize) -> i64,
    time: i64,
) -> Profile {
    Profile {
        sample_types: types.iter().map(|(t, u)| ValueType::new(*t, *u)).collect(),
        samples: stacks
            .iter()
            .enumerate()
            .map(|(i, s)| Sample {
                stack: s.clone(),
                values: vec![value(i); types.len()],
                labels: Vec::new(),
            })
            .collect(),
        time_nanos: time,
        ..Profile::default()
    }
}

/// Growth and CPU heavy-tailed (a few stacks wide, most narrow), as in services: many frames
/// are wide enough to draw.
#[test]
fn a_profile_of_10k_stacks_gives_a_page_under_5_mb() {
    const N: usize = 10_000;
    let dir = scratch("report-10k");
    let s = stacks(N);
    let heap = [("inuse_objects", "count"), ("inuse_space", "bytes")];
    let t0 = 1_700_000_000_000_000_000;
    let before = profile(&heap, &s, |i| 1000 + i as i64, t0);
    let after = profile(
        &heap,
        &s,
        |i| 1000 + i as i64 + 50_000_000 / (i as i64 + 1),
        t0 + 60_000_000_000,
    );
    let cpu = profile(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        &s,
        |i| 1 + 100_000 / (i as i64 + 1),
        t0,
    );
    let mut files = Vec::new();
    for (name, p) in [("before", &before), ("after", &after), ("cpu", &cpu)] {
        let f = dir.join(format!("{name}.pb.gz"));
        std::fs::write(&f, pprof_codec::encode_gzip(p)).unwrap();
        files.push(f.display().to_string());
    }
    let page = dir.join("big.html");
    let start = Instant::now();
    let mut args: Vec<&str> = vec!["report"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["-o", page.to_str().unwrap()]);
    ok(&args);
    let took = start.elapsed();
    let size = std::fs::metadata(&page).unwrap().len();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg class=\"flame diff\"") && html.contains("myapp::m"));
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "report of {N} stacks (heap x2 + CPU): {size} bytes in {took:.1?}"
    );
    assert!(size < 5 * 1024 * 1024, "{size} bytes for {N} stacks");
}
