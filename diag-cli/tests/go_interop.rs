//! Profiles from the real peer: a small Go program (tests/go/leak.go) writes six heap
//! profiles with `runtime/pprof` as it leaks; `diag diff` of the first and last must rank Go's
//! leaking function first with the growth Go recorded, `diag trend` of all six must call it
//! growing, and `diag top` must read them. Needs Debian's golang-go (CI installs it).

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

mod support;

/// stdout of `diag args...`, which must succeed.
fn diag(args: &[&OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(args)
        .output()
        .expect("running diag");
    assert!(
        out.status.success(),
        "diag {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn go_heap_profiles_diff_and_top() {
    let Some(go) = support::peer("go", "golang-go", None) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("diag-go-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/leak.go");
    let (a, b) = (dir.join("a.pb.gz"), dir.join("b.pb.gz"));
    let between: Vec<_> = (1..=4).map(|i| dir.join(format!("m{i}.pb.gz"))).collect();
    let out = Command::new(go)
        .args(["run"])
        .arg(&src)
        .arg(&a)
        .args(&between)
        .arg(&b)
        .env("HOME", &dir)
        .env("GOCACHE", dir.join("cache"))
        .env("GO111MODULE", "off")
        .output()
        .expect("go run");
    assert!(
        out.status.success(),
        "go run: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let v: serde_json::Value = serde_json::from_str(&diag(&[
        "diff".as_ref(),
        a.as_ref(),
        b.as_ref(),
        "--json".as_ref(),
    ]))
    .unwrap();
    let first = &v["sites"][0];
    assert_eq!(first["function"], "main.leak", "{v}");
    // 400 more 64 KiB buffers; Go's own estimate, scaled from 4 KiB sampling.
    let delta = first["delta_bytes"].as_f64().unwrap();
    let truth = 400.0 * 65536.0;
    assert!(
        (delta - truth).abs() / truth < 0.25,
        "delta {delta} vs {truth}"
    );

    // Go's timestamps order the snapshots; 80 buffers a step, so main.leak keeps growing
    // (five rises in five steps: the fewest that can be significant at 0.05).
    let mut args: Vec<&OsStr> = vec!["trend".as_ref(), "--json".as_ref(), b.as_ref()];
    args.extend(between.iter().map(|p| p.as_os_str()));
    args.push(a.as_ref());
    let v: serde_json::Value = serde_json::from_str(&diag(&args)).unwrap();
    assert_eq!(v["slope_per"], "second", "{v}");
    let first = &v["sites"][0];
    assert_eq!(first["function"], "main.leak", "{v}");
    assert_eq!(first["verdict"], "growing", "{v}");
    assert_eq!(first["rose_in"], 5, "{v}");

    assert!(diag(&["top".as_ref(), b.as_ref()]).contains("main.leak"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Without `go` on PATH the Go test fails and names the install command; with
/// `DIAG_SKIP_PEERS=1` it passes and says on stderr what it skipped (past libtest's capture).
/// Runs this test binary again, on the other test only, with an empty PATH.
#[test]
fn a_missing_peer_fails_or_is_skipped_out_loud() {
    let me = std::env::current_exe().unwrap();
    let run = |skip: bool| {
        let mut c = Command::new(&me);
        c.args([
            "--exact",
            "go_heap_profiles_diff_and_top",
            "--test-threads=1",
        ])
        .env("PATH", "")
        .env_remove("DIAG_SKIP_PEERS");
        if skip {
            c.env("DIAG_SKIP_PEERS", "1");
        }
        c.output().unwrap()
    };
    let failed = run(false);
    let text = String::from_utf8_lossy(&failed.stdout).into_owned()
        + &String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "passed without go: {text}");
    assert!(text.contains("apt-get install golang-go"), "{text}");
    let skipped = run(true);
    let err = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{err}");
    assert!(
        err.contains("SKIPPED (DIAG_SKIP_PEERS=1)") && err.contains("`go` is not on PATH"),
        "{err}"
    );
}
