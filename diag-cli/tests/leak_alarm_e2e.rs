//! End to end over real sockets: the leaky example runs in this process with `DiagAlloc`
//! installed and a fast heap history (`?interval_ms=200` as a user would POST it); a leak
//! must become a suspect of the service's own leak alarm, named by its site with its route,
//! in `GET /debug/leaks`, in `/metrics` and in `diag leaks`. One test: the allocator is
//! process-global.

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

fn get(agent: &ureq::Agent, url: &str) -> String {
    let mut r = agent.get(url).call().expect(url);
    assert_eq!(r.status(), 200, "{url}");
    r.body_mut().read_to_string().unwrap()
}

#[test]
fn the_service_raises_the_alarm_on_a_leak() {
    let service = support::leaky_with_history(200, 120);
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());
    let agent = support::agent();

    // Leak 64 KiB x 8 with churn until the alarm names the leak (or 60 s pass).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    let suspect = loop {
        for _ in 0..8 {
            get(&agent, &format!("{app_url}/leak?kb=64"));
        }
        get(&agent, &format!("{app_url}/churn"));
        last = get(&agent, &format!("{diag_url}/debug/leaks"));
        let v: diag_core::wire::Leaks = serde_json::from_str(&last).expect("typed JSON");
        if let Some(s) = v
            .suspects
            .iter()
            .find(|s| s.site.ends_with("leaky::remember_request"))
        {
            break s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no suspect named remember_request within 60 s; last /debug/leaks: {last}"
        );
        // The leak must grow across history points 200 ms apart.
        std::thread::sleep(Duration::from_millis(50)); // workload: the leak's pace
    };
    assert!(suspect.p < 0.01, "{suspect:?}");
    assert!(suspect.rate_bytes_per_sec > 0.0 && suspect.last_bytes > suspect.first_bytes);
    assert_eq!(
        suspect.labels.get("route").map(String::as_str),
        Some("/leak"),
        "{suspect:?}"
    );
    let raw: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert!(
        raw["suspects"][0]["labels"].is_object(),
        "labels by key: {last}"
    );
    assert!(suspect.points >= 3, "{suspect:?}");
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    for k in [
        "alpha",
        "min_rate_bytes_per_sec",
        "checks",
        "points",
        "suspects",
    ] {
        assert!(!v[k].is_null(), "{k} missing: {last}");
    }

    let metrics = get(&agent, &format!("{diag_url}/metrics"));
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("diag_leak_growth_bytes_per_second{") && l.contains("remember_request")
        })
        .unwrap_or_else(|| panic!("no growth series for the leak:\n{metrics}"));
    assert!(line.contains(r#"route="/leak""#), "{line}");
    assert!(metrics.contains("diag_leak_checks_total "), "{metrics}");
    let suspects_line = metrics
        .lines()
        .find(|l| l.starts_with("diag_leak_suspects "))
        .unwrap();
    let n: f64 = suspects_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(n >= 1.0, "{suspects_line}");

    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["leaks", &diag_url])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("leak suspect"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains("leaky::remember_request"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("route=/leak"), "{table}");
    assert!(
        table.contains(&format!("diag diff {diag_url} --since 1h")),
        "{table}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["leaks", &diag_url, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    assert!(
        v["suspects"].as_array().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
}
