//! `diag leaks` names what a service that does not name its stacks (`DIAG_SYMBOLIZE=off`)
//! left as `stack#N`: the leaky example runs in this process with `DiagAlloc` and a 200 ms
//! heap history; once its leak is a suspect (by stack id, route `/leak`), `diag leaks` names
//! it `leaky::remember_request` from the mapped binary (this test's own, same host) and with
//! `--binary`. One test: the allocator is process-global.

use std::process::Command;
use std::time::Duration;

mod support;

use support::{Http, wait_until};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

fn diag(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diag {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn diag_leaks_names_the_stack_ids_of_an_unsymbolized_service() {
    let service = diag_examples::InProcess::start(
        diag_core::Diag::builder()
            .heap_sample_bytes(256 * 1024)
            .symbolize(false),
        diag_examples::leaky::app().layer(diag_core::layer()),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());
    let http = Http::new();
    let r = http
        .agent()
        .post(format!(
            "{diag_url}/debug/heap/history?interval_ms=200&points=60"
        ))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 200);

    let suspect = wait_until(
        Duration::from_secs(90),
        "a stack#N suspect labelled route=/leak in /debug/leaks",
        || {
            for _ in 0..8 {
                assert_eq!(http.status(&format!("{app_url}/leak?kb=64")), 200);
            }
            let body = http.get(&format!("{diag_url}/debug/leaks"))?.text();
            let v: diag_core::wire::Leaks = serde_json::from_str(&body).expect("typed JSON");
            v.suspects
                .into_iter()
                .find(|s| s.labels.get("route").map(String::as_str) == Some("/leak"))
                .ok_or(body)
                .map_err(|b| b.chars().take(600).collect::<String>())
        },
    );
    assert!(suspect.site.starts_with("stack#"), "{suspect:?}");
    assert!(
        suspect.stack.iter().all(|f| f.starts_with("0x")),
        "{suspect:?}"
    );

    // Named from the mapped file (this binary, same build ID, same host).
    let table = diag(&["leaks", &diag_url]);
    let row = table
        .lines()
        .find(|l| l.contains("route=/leak"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("leaky::remember_request"), "{table}");

    // And with --binary, as JSON: the site and a named stack.
    let exe = std::env::current_exe().unwrap();
    let json = diag(&[
        "leaks",
        &diag_url,
        "--json",
        "--binary",
        exe.to_str().unwrap(),
    ]);
    let v: diag_core::wire::Leaks = serde_json::from_str(&json).unwrap();
    let named = v
        .suspects
        .iter()
        .find(|s| s.stack_id == suspect.stack_id)
        .unwrap_or_else(|| panic!("{json}"));
    assert!(named.site.ends_with("leaky::remember_request"), "{json}");
    assert!(
        named.stack.iter().any(|f| f.contains("remember_request")),
        "{json}"
    );
}
