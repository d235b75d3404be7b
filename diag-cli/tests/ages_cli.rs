//! `diag ages` on input it cannot read ages from: a clear error and exit 2, never a panic.

mod support;

#[test]
fn profiles_without_ages_are_a_clear_error() {
    // A heap profile from before ages (the fixtures were saved by an older diag).
    let e = support::fails(&["ages", "before.pb.gz"]);
    assert!(e.contains("no `age_secs` labels"), "{e}");
    // A CPU profile has no in-use column.
    let e = support::fails(&["ages", "cpu.pb"]);
    assert!(e.contains("inuse_space"), "{e}");
    for bad in [
        "corrupt.pb.gz",
        "truncated.pb.gz",
        "not-a-profile.txt",
        "missing.pb.gz",
    ] {
        let e = support::fails(&["ages", bad]);
        assert!(e.contains(bad), "the error names {bad}: {e}");
    }
    let e = support::fails(&["ages", "http://127.0.0.1:1", "--timeout", "2"]);
    assert!(e.contains("127.0.0.1:1"), "{e}");
}

#[test]
fn at_reads_a_services_history_only() {
    // A saved file is read as it is: --at has no history to pick from.
    let e = support::fails(&["ages", "before.pb.gz", "--at", "10m"]);
    assert!(
        e.contains("--at reads a live service's heap history"),
        "{e}"
    );
    let e = support::fails(&["ages", "http://127.0.0.1:1", "--at", "soon"]);
    assert!(e.contains("--at"), "{e}");
    let e = support::fails(&[
        "ages",
        "http://127.0.0.1:1",
        "--at",
        "10m",
        "--timeout",
        "2",
    ]);
    assert!(e.contains("127.0.0.1:1"), "{e}");
}
