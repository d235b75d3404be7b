//! Runs the built `diag` binary on series of profiles: `diag trend`'s verdict on a rise that
//! is not yet a leak, and the CI gates (`diff --fail-above`, `trend --fail-on growing`: exit 1
//! with the offending sites, exit 2 for errors).

mod support;

use support::{diag, fails, fixture, ok, scratch, write_series};

fn path(name: &str) -> String {
    fixture(name).to_str().unwrap().to_owned()
}

#[test]
fn trend_says_when_a_rise_is_not_yet_a_leak() {
    // The levels climb (Mann-Kendall p < 0.001) but every rise is followed by a fall: a random
    // walk could do that, so not `growing`, and the table says what would settle it.
    let dir = scratch("trend-undecided");
    let files = write_series(
        &dir,
        &[("myapp::wanders", &[0, 100, 90, 200, 190, 300, 290, 400])],
    );
    let mut args: Vec<&str> = vec!["trend"];
    args.extend(files.iter().map(String::as_str));
    let table = ok(&args);
    assert!(
        table.contains("note: 1 steady site rose and is still rising, but too few of the steps"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.contains("myapp::wanders"))
        .unwrap();
    assert!(
        row.starts_with("steady") && row.contains(" 4/7 "),
        "{table}"
    );
    args.push("--json");
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let site = &v["sites"][0];
    assert!(site["p_levels"].as_f64().unwrap() < 0.01, "{site}");
    assert_eq!(site["p_steps"], 0.5, "{site}");
    assert_eq!(site["still_rising"], true, "{site}");
    std::fs::remove_dir_all(dir).ok();
}

/// Exit code and stderr of a run expected to end with the CI gate's exit 1.
fn gated(args: &[&str]) -> (String, String) {
    let out = diag(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "diag {args:?}: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

#[test]
fn diff_fail_above_gates_ci_on_growth() {
    let (b, a) = (path("before.pb.gz"), path("after.pb.gz"));
    // The cache grew by 13 MiB: over 10 MiB fails, naming it, and the table is still printed.
    let (table, err) = gated(&["diff", &b, &a, "--fail-above", "10MiB"]);
    assert!(table.contains("+13.0 MiB"), "{table}");
    assert!(
        err.contains("diag: fail: 1 site grew by more than 10.0 MiB"),
        "{err}"
    );
    assert!(
        err.contains("+13.0 MiB  myapp::cache::Cache::insert (src/cache.rs:42)"),
        "{err}"
    );
    // Plain bytes, and judged on all sites even when --top shows fewer.
    let (_, err) = gated(&["diff", &b, &a, "--fail-above", "1", "--top", "1", "--json"]);
    assert!(err.contains("2 sites grew by more than 1 B"), "{err}");
    // Under the limit: success.
    ok(&["diff", &b, &a, "--fail-above", "14MiB"]);
    // Errors stay exit 2, also with the gate set.
    let err = fails(&["diff", &b, &path("corrupt.pb.gz"), "--fail-above", "1"]);
    assert!(err.contains("corrupt.pb.gz"), "{err}");
    // A bad size is a usage error naming the units.
    let out = diag(&["diff", &b, &a, "--fail-above", "10 parsecs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("512KiB"));
}

#[test]
fn trend_fail_on_growing_gates_ci_on_leaks() {
    let dir = scratch("trend-gate");
    let leak: Vec<i64> = (0..8).map(|k| 1000 * (k + 1)).collect();
    let flat = [500, 510, 490, 505, 495, 500, 510, 490];
    let files = write_series(&dir, &[("myapp::leak", &leak), ("myapp::steady", &flat)]);
    let mut args: Vec<&str> = vec!["trend"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--fail-on", "growing"]);
    let (table, err) = gated(&args);
    assert!(table.contains("myapp::leak"), "{table}");
    assert!(
        err.contains("diag: fail: 1 site growing at p < 0.05 (--fail-on growing):"),
        "{err}"
    );
    assert!(
        err.contains("+1000 B/s") && err.contains("myapp::leak"),
        "{err}"
    );
    assert!(!err.contains("myapp::steady"), "{err}");
    // Without the leak, the same gate passes.
    let files = write_series(&dir, &[("myapp::steady", &flat)]);
    let mut args: Vec<&str> = vec!["trend"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--fail-on", "growing"]);
    ok(&args);
    // Too few snapshots is an error, exit 2.
    fails(&["trend", &files[0], &files[1], "--fail-on", "growing"]);
    std::fs::remove_dir_all(dir).ok();
}
