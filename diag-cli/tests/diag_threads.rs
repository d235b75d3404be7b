//! diag's own CPU apart: samples of diag's threads (`thread=diag-*`) are left out of
//! `diag top`, `diag flamegraph` and `diag report` by default, with their share said;
//! `--include-diag` keeps them; the report's hottest application functions never count them.

use diag_core::profile::{Frame, Profile, Sample, ValueType, pprof_codec};

mod support;
use support::{diag, ok, scratch};

/// A CPU profile: the application's `myapp::render` on a worker (60 %), diag's symbolizer
/// (`gimli::read::parse`) on `diag-blocking` (40 %).
fn cpu_profile(dir: &std::path::Path) -> String {
    let sample = |thread: &str, stack: &[&str], n: i64| Sample {
        stack: stack.iter().map(|f| Frame::named(*f)).collect(),
        values: vec![n, n * 10_000_000],
        labels: vec![("thread".to_owned(), thread.to_owned())],
    };
    let p = Profile {
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        samples: vec![
            sample("tokio-runtime-worker", &["myapp::render", "main"], 60),
            sample(
                "diag-blocking",
                &["gimli::read::parse", "diag_core::symbolize::x"],
                40,
            ),
        ],
        ..Profile::default()
    };
    let file = dir.join("cpu-with-diag.pb");
    std::fs::write(&file, pprof_codec::encode(&p)).unwrap();
    file.to_str().unwrap().to_owned()
}

#[test]
fn top_leaves_diag_out_and_says_how_much() {
    let dir = scratch("diag-threads-top");
    let file = cpu_profile(&dir);
    let out = diag(&["top", &file]);
    assert!(out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("myapp::render"), "{stdout}");
    assert!(!stdout.contains("gimli"), "{stdout}");
    assert!(
        stderr.contains("left out diag's own threads (thread=diag-*): 40.0%"),
        "{stderr}"
    );
    let all = ok(&["top", &file, "--include-diag"]);
    assert!(all.contains("gimli::read::parse"), "{all}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn flamegraph_leaves_diag_out_unless_asked() {
    let dir = scratch("diag-threads-flame");
    let file = cpu_profile(&dir);
    let svg = dir.join("f.svg");
    ok(&["flamegraph", &file, "-o", svg.to_str().unwrap()]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("myapp::render"));
    assert!(!text.contains("diag-blocking"));
    ok(&[
        "flamegraph",
        &file,
        "-o",
        svg.to_str().unwrap(),
        "--include-diag",
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("diag-blocking"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn report_says_diag_share_and_never_ranks_it_as_the_application() {
    let dir = scratch("diag-threads-report");
    let file = cpu_profile(&dir);
    let page = dir.join("r.html");
    for include in [false, true] {
        let mut args = vec!["report", &file, "-o", page.to_str().unwrap()];
        if include {
            args.push("--include-diag");
        }
        ok(&args);
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(
            html.contains("diag&#39;s own threads (thread=diag-*) were 40.0% of the CPU")
                || html.contains("diag's own threads (thread=diag-*) were 40.0% of the CPU"),
            "{html}"
        );
        assert_eq!(
            html.contains("gimli::read::parse"),
            include,
            "include={include}"
        );
        let verdict = &html[html
            .find("Hottest application functions")
            .unwrap_or_else(|| panic!("{html}"))..];
        let verdict = &verdict[..verdict.find("</li>").unwrap()];
        assert!(!verdict.contains("gimli"), "{verdict}");
        assert!(verdict.contains("myapp::render"), "{verdict}");
    }
    std::fs::remove_dir_all(dir).ok();
}
