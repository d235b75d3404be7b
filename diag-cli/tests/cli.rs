//! Runs the built `diag` binary on fixture files: tables against golden files, JSON shape,
//! SVG output, and exit code 2 with a message naming the file for bad input.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};

use support::{diag, fails, fixture, golden, ok, scratch, write_series};

fn path(name: &str) -> String {
    fixture(name).to_str().unwrap().to_owned()
}

#[test]
fn diff_table_matches_golden() {
    let _ = fixture("before.pb.gz");
    let out = ok(&["diff", "before.pb.gz", "after.pb.gz"]);
    golden("diff.txt", &out);
    let first = out.lines().nth(4).unwrap();
    assert!(first.contains("+13.0 MiB"), "{out}");
    assert!(
        first.contains("myapp::cache::Cache::insert (src/cache.rs:42)"),
        "{out}"
    );
    assert!(out.contains("NEW"), "{out}");
}

/// Tables show short names unless `--full-names`; JSON keeps `function` whole and adds
/// `short`.
#[test]
fn names_are_short_in_tables_and_whole_in_json() {
    let (b, a) = (path("before.pb.gz"), path("after.pb.gz"));
    let short = ok(&["diff", &b, &a]);
    assert!(short.contains("myapp::handlers::upload (src"), "{short}");
    assert!(!short.contains("{{closure}}"), "{short}");
    let full = ok(&["diff", &b, &a, "--full-names"]);
    assert!(
        full.contains("myapp::handlers::upload::{{closure}} (src"),
        "{full}"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&["diff", &b, &a, "--json"])).unwrap();
    let upload = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["short"] == "myapp::handlers::upload")
        .expect("a site whose short name is the handler's");
    assert_eq!(upload["function"], "myapp::handlers::upload::{{closure}}");
    let top: serde_json::Value =
        serde_json::from_str(&ok(&["top", &a, "--json", "--full-names"])).unwrap();
    assert_eq!(top["entries"][1]["short"], "myapp::handlers::upload");
}

#[test]
fn diff_json_contract() {
    let out = ok(&[
        "diff",
        &path("before.pb.gz"),
        &path("after.pb.gz"),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sites = v["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 3, "{out}");
    let deltas: Vec<i64> = sites
        .iter()
        .map(|s| s["delta_bytes"].as_i64().unwrap())
        .collect();
    assert!(deltas.windows(2).all(|w| w[0] >= w[1]), "{deltas:?}");
    let s = &sites[0];
    assert_eq!(s["function"], "myapp::cache::Cache::insert");
    assert_eq!(s["delta_bytes"], 13 << 20);
    assert_eq!(s["before_bytes"], 2 << 20);
    assert_eq!(s["after_bytes"], 15 << 20);
    assert_eq!(s["delta_objects"], 208);
    let stack: Vec<&str> = s["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        stack[..3],
        [
            "myapp::cache::Cache::insert",
            "myapp::cache::Cache::refresh",
            "myapp::handlers::upload::{{closure}}"
        ]
    );
    assert_eq!(sites[1]["new"], true);

    let out = ok(&[
        "diff",
        &path("before.pb.gz"),
        &path("after.pb.gz"),
        "--json",
        "--top",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sites"].as_array().unwrap().len(), 1);

    let out = ok(&["diff", &path("after.pb.gz"), &path("after.pb.gz"), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sites"], serde_json::json!([]));
}

#[test]
fn diff_svg_is_written() {
    let dir = scratch("diff-svg");
    let svg = dir.join("growth.svg");
    let out = diag(&[
        "diff",
        &path("before.pb.gz"),
        &path("after.pb.gz"),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("growth.svg"));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("myapp::cache::Cache::insert"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn top_tables_match_golden() {
    let _ = fixture("after.pb.gz");
    golden("top-heap.txt", &ok(&["top", "after.pb.gz"]));
    golden(
        "top-heap-leaf.txt",
        &ok(&["top", "after.pb.gz", "--leaf", "--top", "3"]),
    );
    golden("top-cpu.txt", &ok(&["top", "cpu.pb"]));
    let cpu = ok(&["top", "cpu.pb", "--sample", "samples", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&cpu).unwrap();
    assert_eq!(v["total"], 100);
    assert_eq!(v["entries"][0]["function"], "myapp::json::parse");
    assert_eq!(v["entries"][0]["flat"], 61);
    assert_eq!(v["entries"][0]["cum"], 71);
}

#[test]
fn top_reads_dhat_json() {
    let dhat = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../diag-core/tests/fixtures/dhat-heap.json"
    );
    let out = ok(&["top", dhat, "--top", "1"]);
    assert!(out.contains("leaky_cache"), "{out}");
}

#[test]
fn flamegraph_writes_svg() {
    let dir = scratch("flamegraph");
    let svg = dir.join("out.svg");
    let svg = svg.to_str().unwrap();
    let out = diag(&[
        "flamegraph",
        &path("after.pb.gz"),
        "-o",
        svg,
        "--title",
        "Leak <1>",
        "--reverse",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(svg).unwrap();
    assert!(text.contains("Leak &lt;1&gt;"));
    assert!(text.contains("myapp::cache::Cache::insert"));
    let stdout = ok(&[
        "flamegraph",
        &path("cpu.pb"),
        "-o",
        "-",
        "--sample",
        "samples",
    ]);
    assert!(stdout.starts_with("<?xml") && stdout.contains("myapp::json::parse"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bogus_min_width_is_a_usage_error() {
    for bad in ["NaN", "-1", "inf", "wide"] {
        let out = diag(&[
            "flamegraph",
            &path("cpu.pb"),
            "-o",
            "-",
            &format!("--min-width={bad}"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("--min-width") && err.contains(bad),
            "{bad}: {err}"
        );
        assert!(out.stdout.is_empty(), "{bad}");
    }
    let svg = ok(&["flamegraph", &path("cpu.pb"), "-o", "-", "--min-width", "0"]);
    assert!(svg.contains("myapp::json::parse"));
}

#[test]
fn bad_inputs_exit_2_naming_the_file() {
    let _ = fixture("after.pb.gz");
    for (file, why) in [
        ("missing.pb.gz", "No such file"),
        ("truncated.pb.gz", "gzip"),
        ("corrupt.pb.gz", ""),
        ("empty.pb.gz", "empty"),
        ("not-a-profile.txt", "not a pprof profile"),
    ] {
        for args in [
            vec!["diff", file, "after.pb.gz"],
            vec!["diff", "after.pb.gz", file, "--json"],
            vec!["top", file],
            vec!["flamegraph", file, "-o", "-"],
        ] {
            let err = fails(&args);
            assert!(
                err.contains(&format!("reading {file}: ")),
                "{args:?}: {err}"
            );
            assert!(err.contains(why), "{args:?}: {err}");
        }
    }
    let err = fails(&["diff", "cpu.pb", "after.pb.gz"]);
    assert!(
        err.contains("comparing cpu.pb with after.pb.gz") && err.contains("inuse_space"),
        "{err}"
    );
    let err = fails(&["top", "after.pb.gz", "--sample", "cpu"]);
    assert!(err.contains("inuse_space/bytes"), "{err}");
    // URLs are live services: an unreachable one is named in the error.
    for cmd in ["top", "flamegraph"] {
        let err = fails(&[cmd, "http://127.0.0.1:1"]);
        assert!(
            err.contains("cannot reach") && err.contains("http://127.0.0.1:1"),
            "{err}"
        );
    }
}

#[test]
fn broken_pipe_exits_0() {
    use diag_core::profile::{Frame, Profile, Sample, ValueType, pprof_codec};
    let dir = scratch("pipe");
    let big = Profile {
        sample_types: vec![ValueType::new("samples", "count")],
        samples: (0..30_000)
            .map(|i| Sample {
                stack: vec![Frame::named(format!(
                    "myapp::generated::function_number_{i}"
                ))],
                values: vec![i + 1],
                labels: Vec::new(),
            })
            .collect(),
        ..Profile::default()
    };
    let file = dir.join("big.pb");
    std::fs::write(&file, pprof_codec::encode(&big)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["top", file.to_str().unwrap(), "--top", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn filters_narrow_what_every_command_reads() {
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    // --focus keeps the stacks through the cache; the table's total is theirs alone.
    let out = diag(&["top", &path("after.pb.gz"), "--focus", r"cache\.rs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("inuse_space total 15.0 MiB"), "{table}");
    assert!(!table.contains("session"), "{table}");
    assert!(stderr(&out).contains("--focus 'cache\\.rs': kept 2 of 5 stacks"));

    // --ignore takes the leak out of a diff; the rest of it stands.
    let out = ok(&[
        "diff",
        &path("before.pb.gz"),
        &path("after.pb.gz"),
        "--json",
        "--ignore",
        "Cache::insert",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let functions: Vec<&str> = v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["function"].as_str().unwrap())
        .collect();
    assert_eq!(
        functions,
        [
            "<myapp::session::Session as core::clone::Clone>::clone",
            "myapp::handlers::upload::{{closure}}"
        ]
    );

    // --hide cuts frames out of the drawing; the values stay.
    let svg = ok(&[
        "flamegraph",
        &path("cpu.pb"),
        "-o",
        "-",
        "--hide",
        "^myapp::handlers",
    ]);
    assert!(svg.contains("myapp::json::parse") && !svg.contains("myapp::handlers"));
    let cpu = ok(&["top", &path("cpu.pb"), "--hide", "handlers", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&cpu).unwrap();
    assert_eq!(v["total"], 1_000_000_000i64);

    // A trend follows only the focused sites.
    let dir = scratch("filter-trend");
    let files = write_series(
        &dir,
        &[
            ("myapp::leak", &[1000, 2000, 3000, 4000, 5000, 6000]),
            ("myapp::shrink", &[9000, 8000, 7000, 6000, 5000, 4000]),
        ],
    );
    let mut args: Vec<&str> = vec!["trend", "--json", "--focus", "shrink"];
    args.extend(files.iter().map(String::as_str));
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let sites = v["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{v}");
    assert_eq!(sites[0]["function"], "myapp::shrink");
    assert_eq!(sites[0]["verdict"], "shrinking");
    std::fs::remove_dir_all(dir).ok();

    // Nothing left is said, not an error; a bad pattern is a usage error naming the flag;
    // filters on the live view (which reads /metrics, not a profile) are refused.
    let out = diag(&["top", &path("after.pb.gz"), "--focus", "no-such-frame"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("warning: --focus 'no-such-frame' left no stack of 5"));
    for flag in ["--focus", "--ignore", "--hide"] {
        let out = diag(&[
            "diff",
            &path("before.pb.gz"),
            &path("after.pb.gz"),
            flag,
            "a(",
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
    }
    let err = fails(&["top", "http://127.0.0.1:1", "--ignore", "x"]);
    assert!(err.contains("--profile heap|cpu"), "{err}");
}

#[test]
fn diff_of_two_cpu_profiles_is_in_cpu_time() {
    use diag_core::profile::{self, pprof_codec};
    let before = std::fs::read(fixture("cpu.pb")).unwrap();
    let mut after = profile::load(&before).unwrap();
    // sha256 got 3x hotter: +500ms of CPU, +50 samples.
    for s in &mut after.samples {
        if s.stack[0].function.starts_with("sha2::") {
            for v in &mut s.values {
                *v *= 3;
            }
        }
    }
    let dir = scratch("cpu-diff");
    let file = dir.join("after-cpu.pb");
    std::fs::write(&file, pprof_codec::encode(&after)).unwrap();
    let out = ok(&["diff", &path("cpu.pb"), file.to_str().unwrap()]);
    assert!(out.starts_with("cpu: 1.00s -> 1.50s (+500.0ms)\n"), "{out}");
    assert!(!out.contains("MiB") && !out.contains("OBJECTS"), "{out}");
    assert!(out.contains("+500.0ms  100.0%"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "diff",
        &path("cpu.pb"),
        file.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["unit"], "nanoseconds");
    assert_eq!(v["sites"][0]["delta_bytes"], 500_000_000);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn top_by_line_splits_a_function() {
    let out = ok(&["top", &path("after.pb.gz"), "--lines", "--focus", "upload"]);
    assert!(out.contains("showing 6 of 6 lines"), "{out}");
    // The upload handler allocates at line 61 and calls the cache from line 88 (its async
    // body `upload::{{closure}}` shown by its short name).
    let upload: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("myapp::handlers::upload ("))
        .collect();
    assert_eq!(upload.len(), 2, "{out}");
    assert!(
        upload[0].starts_with(" 5.0 MiB") && upload[0].ends_with("upload.rs:61)"),
        "{out}"
    );
    assert!(
        upload[1].contains("15.0 MiB") && upload[1].ends_with("upload.rs:88)"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["top", &path("after.pb.gz"), "--lines", "--json"])).unwrap();
    assert_eq!(v["lines"], true);
    assert_eq!(v["entries"][0]["line"], 42);
}

#[test]
fn list_shows_source_lines_with_their_values() {
    // The fixture was recorded with relative paths (src/cache.rs:42); its source lives here.
    let dir = scratch("list");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let source: String = (1..=50).map(|n| format!("// cache line {n}\n")).collect();
    std::fs::write(dir.join("src/cache.rs"), source).unwrap();
    let out = ok(&[
        "list",
        "Cache::insert",
        &path("after.pb.gz"),
        "--source-path",
        dir.to_str().unwrap(),
        "--context",
        "1",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "ROUTINE ======================== myapp::cache::Cache::insert in src/cache.rs",
        "{out}"
    );
    assert!(
        lines[1].contains("15.0 MiB   15.0 MiB (flat, cum) 69.6%"),
        "{out}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [".", ".", "41", "//", "cache", "line", "41"]
    );
    assert!(
        lines[3].starts_with("  15.0 MiB   15.0 MiB     42  // cache line 42"),
        "{out}"
    );
    assert!(lines[4].ends_with("43  // cache line 43"), "{out}");
    // Without the source: the lines with value, and where to point it.
    let out = ok(&["list", "Cache::insert", &path("after.pb.gz")]);
    assert!(out.contains("source of src/cache.rs not found"), "{out}");
    assert!(out.contains("15.0 MiB   15.0 MiB     42"), "{out}");
    // A caller's line holds cum only.
    let out = ok(&["list", "Cache::refresh", &path("after.pb.gz")]);
    assert!(out.contains("         .   13.0 MiB     70"), "{out}");
    let err = fails(&["list", "no::such", &path("after.pb.gz")]);
    assert!(err.contains("no function matching 'no::such'"), "{err}");
    let err = fails(&["list", "x", "http://127.0.0.1:1"]);
    assert!(err.contains("saved profile"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn base_subtracts_an_earlier_profile_like_pprof() {
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "top",
        &path("after.pb.gz"),
        "--base",
        &path("before.pb.gz"),
        "--json",
    ]))
    .unwrap();
    // The diff as a top list: +13 MiB at the cache, +1.5 MiB of sessions, -1 MiB at upload.
    assert_eq!(v["total"], (13 << 20) + (1 << 19));
    assert_eq!(v["entries"][0]["function"], "myapp::cache::Cache::insert");
    assert_eq!(v["entries"][0]["flat"], 13 << 20);
    let upload = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["function"] == "myapp::handlers::upload::{{closure}}")
        .unwrap();
    assert_eq!(upload["flat"], -(1 << 20));
    let out = ok(&[
        "list",
        "Cache::insert",
        &path("after.pb.gz"),
        "--base",
        &path("before.pb.gz"),
    ]);
    assert!(out.contains("13.0 MiB   13.0 MiB (flat, cum)"), "{out}");
    let err = fails(&["top", &path("after.pb.gz"), "--base", &path("cpu.pb")]);
    assert!(
        err.contains("subtracting --base") && err.contains("different columns"),
        "{err}"
    );
    let err = fails(&["top", "http://127.0.0.1:1", "--base", &path("cpu.pb")]);
    assert!(err.contains("--base applies to profiles"), "{err}");
    for args in [
        vec!["top", "after.pb.gz", "--seconds", "5"],
        vec!["top", "http://127.0.0.1:1", "--seconds", "5"],
    ] {
        let err = fails(&args);
        assert!(
            err.contains("--seconds applies to a profile fetched"),
            "{err}"
        );
    }
}
