//! `diag report URL` end to end, looked at in a real browser: the leaky example runs in this
//! process with `DiagAlloc` installed and leaking traffic; `diag report URL --seconds 4`
//! writes the page; headless Chromium (Debian's `chromium`) renders it. The DOM must name the
//! leaking function in the growth table and hold the SVG flamegraphs, the page's script must
//! have run, and the page must log no console message and make no network request (checked
//! with Chromium's own console log and NetLog; a deliberately broken page must fail the same
//! checks, so they cannot pass vacuously). A screenshot is written under the test's target
//! tmp dir for a person to look at. One test: the allocator is process-global.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

/// Drives the page's script as a person would: zooms into a narrow frame of the CPU
/// flamegraph (it must fill the width, frames beside it must hide) and back, searches the
/// differential flamegraph for the leak, sorts the growth table by growth, ascending; and
/// records what it saw in `div#probe`.
const PROBE: &str = r##"
(function () {
  var out = document.createElement("div");
  out.id = "probe";
  var num = function (g, a) { return Number(g.getAttribute(a)); };
  var cpu = document.querySelector("svg.flame.single");
  var frames = Array.prototype.slice.call(cpu.querySelectorAll("g.f"));
  var target = frames.filter(function (g) {
    return num(g, "data-w") > 0.02 && num(g, "data-w") < 0.5 && num(g, "data-d") > 1;
  })[0];
  var tx = num(target, "data-x"), tw = num(target, "data-w");
  var outside = frames.filter(function (g) {
    return num(g, "data-x") + num(g, "data-w") <= tx - 1e-6 || num(g, "data-x") >= tx + tw + 1e-6;
  })[0];
  target.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  out.setAttribute("data-zoomed", num(target.querySelector("rect"), "width").toFixed(1));
  out.setAttribute("data-outside-hidden", outside.style.display === "none" ? "yes" : "no");
  cpu.closest(".flamebox").querySelector("button.reset").dispatchEvent(new MouseEvent("click"));
  var back = num(target.querySelector("rect"), "width").toFixed(1) === (tw * 1200).toFixed(1);
  out.setAttribute("data-reset", back && outside.style.display !== "none" ? "restored" : "no");
  var box = document.querySelector("svg.flame.diff").closest(".flamebox");
  var input = box.querySelector("input");
  input.value = "remember_request$";
  input.dispatchEvent(new Event("input"));
  out.setAttribute("data-search", box.querySelector(".finfo").textContent);
  var th = document.querySelectorAll("#growth-table th")[1];
  th.dispatchEvent(new MouseEvent("click"));
  th.dispatchEvent(new MouseEvent("click"));
  out.setAttribute("data-sorted", th.getAttribute("data-dir"));
  document.body.appendChild(out);
}());
"##;

/// What Chromium saw of a page.
struct Rendered {
    dom: String,
    /// Console messages (Chromium logs each as `...:CONSOLE...] "message", source: ...`).
    console: Vec<String>,
    /// URLs the page itself requested over the network (not Chromium's own background
    /// requests, which are not tied to the page's site).
    requests: Vec<String>,
}

fn chromium_args(cmd: &mut Command, profile_dir: &Path) {
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
    ])
    .arg(format!("--user-data-dir={}", profile_dir.display()))
    .env("HOME", profile_dir);
}

/// Renders `page` with `--dump-dom`, console logging and a NetLog.
fn render(chromium: &Path, page: &Path, work: &Path) -> Rendered {
    let profile_dir = work.join("chromium-profile");
    let netlog = work.join("netlog.json");
    let _ = std::fs::remove_file(&netlog);
    let mut cmd = Command::new(chromium);
    chromium_args(&mut cmd, &profile_dir);
    let out = cmd
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    let log = std::fs::read_to_string(&netlog).expect("chromium wrote no NetLog");
    let log: serde_json::Value = serde_json::from_str(&log).expect("NetLog is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_i64()
        .expect("NetLog names URL_REQUEST_START_JOB");
    let requests = log["events"]
        .as_array()
        .expect("NetLog events")
        .iter()
        .filter(|e| e["type"].as_i64() == Some(start_job))
        .filter(|e| {
            // The page's own requests are keyed to its site (file://).
            e["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.contains("file://"))
        })
        .filter_map(|e| e["params"]["url"].as_str())
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:"))
        .map(str::to_owned)
        .collect();
    Rendered {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
        requests,
    }
}

fn screenshot(chromium: &Path, page: &Path, work: &Path, png: &Path) {
    let mut cmd = Command::new(chromium);
    chromium_args(&mut cmd, &work.join("chromium-profile"));
    let out = cmd
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1400,1000")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    assert!(
        out.status.success() && png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The element of `dom` that starts with `open` (up to its closing `close`).
fn element<'a>(dom: &'a str, open: &str, close: &str) -> &'a str {
    let start = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the DOM"));
    let end = dom[start..]
        .find(close)
        .unwrap_or_else(|| panic!("{open} is not closed"));
    &dom[start..start + end]
}

#[test]
fn report_of_a_live_leak_renders_in_chromium() {
    let chromium = support::peer("chromium", "chromium", Some("DIAG_CHROMIUM"));
    let service = diag_examples::InProcess::start(
        diag_core::Diag::builder().heap_sample_bytes(256 * 1024),
        diag_examples::leaky::app(),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report_e2e");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    // Leaking and normal traffic for the whole window.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let agent = support::agent();
            while !stop.load(Ordering::Relaxed) {
                for path in ["/leak?kb=64", "/churn"] {
                    let mut r = agent.get(&format!("{app_url}{path}")).call().expect(path);
                    r.body_mut().read_to_vec().unwrap();
                }
                std::thread::sleep(Duration::from_millis(5)); // workload: the traffic's pace
            }
        })
    };
    let page = work.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["report", &diag_url, "--seconds", "4", "-o"])
        .arg(&page)
        .output()
        .expect("running diag report");
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "diag report failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        page.display().to_string(),
        "stdout is the page's path"
    );
    assert!(
        stderr.contains("heap snapshot 7/7"),
        "no progress: {stderr}"
    );

    // Self-contained: nothing that loads anything; the only URL is the service's, as text.
    let html = std::fs::read_to_string(&page).unwrap();
    for needle in ["src=", "href=", "url(", "@import", "<link", "<iframe"] {
        assert!(!html.contains(needle), "the page holds `{needle}`");
    }
    let without_source = html.replace(&diag_url, "");
    assert!(
        !without_source.contains("http://") && !without_source.contains("https://"),
        "a URL other than the service's is in the page"
    );

    let Some(chromium) = chromium else { return };
    let seen = render(&chromium, &page, &work);
    let growth = element(
        &seen.dom,
        "<table class=\"sortable\" id=\"growth-table\">",
        "</table>",
    );
    assert!(
        growth.contains("remember_request"),
        "the growth table does not name the leak: {growth}"
    );
    let verdict = element(&seen.dom, "<section id=\"verdict\">", "</section>");
    assert!(verdict.contains("remember_request"), "{verdict}");
    assert!(
        seen.dom.contains("<svg class=\"flame diff\""),
        "no differential flamegraph"
    );
    assert!(
        seen.dom.contains("<svg class=\"flame single\""),
        "no CPU flamegraph"
    );
    assert!(
        seen.dom.contains("data-js=\"ok\""),
        "the page's script did not run to its end"
    );
    assert!(
        seen.console.is_empty(),
        "console messages: {:#?}",
        seen.console
    );
    assert!(
        seen.requests.is_empty(),
        "network requests: {:#?}",
        seen.requests
    );

    // The same checks catch a page that errs and fetches.
    let bad = work.join("broken.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><body><img src=\"http://192.0.2.1/x.png\">\
         <script>console.error('broken on purpose'); missing();</script></body></html>",
    )
    .unwrap();
    let broken = render(&chromium, &bad, &work);
    assert!(
        broken
            .console
            .iter()
            .any(|l| l.contains("broken on purpose"))
            && broken
                .console
                .iter()
                .any(|l| l.contains("missing is not defined")),
        "a console error went unseen: {:#?}",
        broken.console
    );
    assert_eq!(
        broken.requests,
        ["http://192.0.2.1/x.png"],
        "a request went unseen"
    );

    // The page's script, driven as a person would (see PROBE).
    let probe = work.join("probe.html");
    std::fs::write(
        &probe,
        html.replace("</body>", &format!("<script>{PROBE}</script></body>")),
    )
    .unwrap();
    let driven = render(&chromium, &probe, &work);
    assert!(
        driven.console.is_empty(),
        "console messages: {:#?}",
        driven.console
    );
    let probe_out = element(&driven.dom, "<div id=\"probe\"", "</div>");
    for expect in [
        "data-zoomed=\"1200.0\"",
        "data-outside-hidden=\"yes\"",
        "data-reset=\"restored\"",
        "data-search=\"1 frames match",
        "data-sorted=\"asc\"",
    ] {
        assert!(probe_out.contains(expect), "{expect} not in {probe_out}");
    }

    let png = work.join("report.png");
    screenshot(&chromium, &page, &work, &png);
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "report_e2e: screenshot {}",
        png.display()
    );
}
