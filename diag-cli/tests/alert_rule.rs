//! The alert rule the README offers (section "Leak alarm"), checked with the real
//! `promtool test rules`: no alert while the alarm is quiet or has been on for less than
//! 15 minutes, then one alert per suspect site, its annotations naming the site and route.

use std::process::Command;

mod support;

/// The YAML block after the `<!-- alert-rule` marker in the workspace README.
fn readme_rule() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading README.md");
    let after = readme
        .split_once("<!-- alert-rule")
        .expect("README.md has the alert rule marker")
        .1;
    let block = after
        .split_once("```yaml\n")
        .expect("a yaml block follows the marker")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

const TESTS: &str = r#"rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'diag_leak_suspects{job="shop",instance="10.0.0.7:6060"}'
        values: '0 0 1x40'
      - series: 'diag_leak_growth_bytes_per_second{job="shop",instance="10.0.0.7:6060",site="myapp::cache::remember",route="/users/{id}"}'
        values: '_ _ 2048x40'
      - series: 'diag_leak_suspects{job="auth",instance="10.0.0.8:6060"}'
        values: '0x42'
    alert_rule_test:
      - eval_time: 10m
        alertname: DiagMemoryLeak
        exp_alerts: []
      - eval_time: 20m
        alertname: DiagMemoryLeak
        exp_alerts:
          - exp_labels:
              severity: warning
              job: shop
              instance: "10.0.0.7:6060"
              site: "myapp::cache::remember"
              route: "/users/{id}"
            exp_annotations:
              summary: "Memory leak suspected in shop at myapp::cache::remember"
              description: "myapp::cache::remember (route /users/{id}) on 10.0.0.7:6060 has grown steadily at 2kiB/s for 15 minutes. See it: diag leaks URL, then diag diff URL --since 1h"
"#;

#[test]
fn readme_alert_rule_passes_promtool() {
    let rule = readme_rule();
    assert!(rule.contains("diag_leak_suspects > 0"), "{rule}");
    assert!(rule.contains("for: 15m"), "{rule}");
    let Some(promtool) = support::peer("promtool", "prometheus", Some("DIAG_PROMTOOL")) else {
        return;
    };
    let dir = support::scratch("alert-rule");
    std::fs::write(dir.join("rules.yml"), &rule).unwrap();
    std::fs::write(dir.join("tests.yml"), TESTS).unwrap();
    let check = Command::new(&promtool)
        .args(["check", "rules", "rules.yml"])
        .current_dir(&dir)
        .output()
        .expect("running promtool");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let out = Command::new(&promtool)
        .args(["test", "rules", "tests.yml"])
        .current_dir(&dir)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}
