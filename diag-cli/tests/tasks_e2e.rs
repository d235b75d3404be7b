//! End to end: the stall example in-process on a 2-worker runtime, diag's listener on its own
//! thread, the `diag` binary reading `/debug/tasks`.
//!
//! One test (process-global allocator, watchdog and lag probe): healthy load gives no blocking
//! events; both workers stuck in `/sleep` still get `/debug/tasks` answered (and it shows two
//! ongoing events on two threads); afterwards `diag tasks --json` names `/sleep` with >= 250 ms
//! and `slow_io` on the stack, lag p99 has risen, and `/debug/pprof/block` decodes.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;

use support::{Http, wait_until};

#[global_allocator]
static A: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

fn diag_tasks_json(diag_url: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["tasks", diag_url, "--json", "--timeout", "10"])
        .output()
        .expect("run diag");
    assert!(
        out.status.success(),
        "diag tasks failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("diag tasks --json prints JSON")
}

#[test]
fn blocking_routes_are_caught_with_their_stacks() {
    let service = diag_examples::InProcess::start(
        // Count every request in the per-route task metrics, so the counts below are exact.
        diag_core::Diag::builder().task_sample(1),
        diag_examples::stall::app(),
    );
    let (diag_url, app_url) = (service.diag_url.clone(), service.app_url.clone());

    // Healthy load from two client threads: no blocking events, no false alarms.
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let url = app_url.clone();
            std::thread::spawn(move || {
                let http = Http::with_timeout(Duration::from_secs(10));
                for n in 0..150 {
                    let path = if (n + i) % 2 == 0 { "/ok" } else { "/work" };
                    http.get(&format!("{url}{path}")).expect("healthy request");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    std::thread::sleep(Duration::from_millis(300)); // checks that nothing happens: no late event
    let healthy = diag_tasks_json(&diag_url);
    assert_eq!(
        healthy["blocking_events"].as_array().map(Vec::len),
        Some(0),
        "no blocking events under healthy load: {healthy}"
    );
    let tasks = healthy["tasks"].as_array().expect("tasks");
    assert!(
        tasks.iter().any(|t| t["name"] == "/ok"
            && t["sampled_1_in"] == 1
            && t["polls"].as_u64() >= Some(150)),
        "per-route task metrics: {tasks:?}"
    );
    let p99_before = healthy["lag"]["p99_ms"].as_f64().expect("lag p99");

    // One blocking request first: the event is recorded, and the symbolizer (over a second
    // to load debug info in a debug build) is warm before the short-timeout phase below.
    let http = Http::with_timeout(Duration::from_secs(10));
    http.get(&format!("{app_url}/sleep"))
        .expect("sleep request");
    http.get(&format!("{diag_url}/debug/tasks")).expect("tasks");

    // Stall both workers: several clients hammer /sleep while another thread asks diag, until
    // diag has answered five times and once while both workers were blocked (an answer then
    // proves diag does not need the app's workers; how fast it comes depends on the machine's
    // load, so each answer may take up to 5 s), or 30 s have passed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stallers: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("{app_url}/sleep");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let http = Http::with_timeout(Duration::from_secs(20));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = http.get(&url);
                }
            })
        })
        .collect();
    let probe = Http::with_timeout(Duration::from_secs(5));
    let mut answered = 0;
    let mut saw_both_blocked = false;
    let give_up = Instant::now() + Duration::from_secs(30);
    while !(answered >= 5 && saw_both_blocked) && Instant::now() < give_up {
        let v = probe
            .get(&format!("{diag_url}/debug/tasks"))
            .expect("/debug/tasks answers while the app's workers are blocked")
            .json();
        answered += 1;
        // Two ongoing events at once: each worker has one poll slot, so both workers were
        // blocked when diag answered.
        let ongoing = v["blocking_events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["ongoing"] == true)
            .count();
        if ongoing >= 2 {
            saw_both_blocked = true;
        }
        std::thread::sleep(Duration::from_millis(40)); // workload: the probe's pace in the stall
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in stallers {
        s.join().expect("staller");
    }
    assert!(answered >= 5, "diag answered only {answered} times");
    assert!(
        saw_both_blocked,
        "never saw both workers blocked at once while diag answered"
    );

    // The stalls' events, once recorded (the watchdog files them as it sees the polls end),
    // and the lag they caused.
    let is_sleep_event = |e: &Value| {
        e["name"] == "/sleep"
            && e["duration_ms"].as_u64() >= Some(250)
            && e["stack"].as_array().is_some_and(|s| {
                s.iter().any(|f| {
                    f.as_str()
                        .is_some_and(|f| f.contains("diag_examples::stall::slow_io"))
                })
            })
    };
    let after = wait_until(
        Duration::from_secs(15),
        "a /sleep event >= 250 ms with slow_io on its stack, and lag p99 >= 100 ms",
        || {
            let v = diag_tasks_json(&diag_url);
            let recorded = v["blocking_events"]
                .as_array()
                .is_some_and(|es| es.iter().any(is_sleep_event))
                && v["lag"]["p99_ms"].as_f64() >= Some(100.0);
            if recorded { Ok(v) } else { Err(v) }
        },
    );
    let events = after["blocking_events"].as_array().expect("events");
    let sleep_event = events
        .iter()
        .find(|e| is_sleep_event(e))
        .unwrap_or_else(|| panic!("a /sleep event >= 250 ms with slow_io on its stack: {after}"));
    assert!(
        sleep_event["thread"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    // The stack starts at the blocked code, not in the signal handler or the kernel's
    // trampoline; on x86-64 Linux the handler unwinds with the cached unwinder.
    let top = sleep_event["stack"][0].as_str().unwrap_or_default();
    assert!(
        !top.contains("__restore_rt") && !top.contains("tasks::signal"),
        "stack starts in the signal machinery: {}",
        sleep_event["stack"]
    );
    let watchdog = &after["watchdog"];
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert!(
            watchdog["captured_cached"].as_u64() >= Some(1),
            "no stack taken by the cached unwinder: {watchdog}"
        );
    }
    let p99_after = after["lag"]["p99_ms"].as_f64().expect("lag p99");
    assert!(
        p99_after > p99_before && p99_after >= 100.0,
        "lag p99 rose while blocked: before {p99_before} ms, after {p99_after} ms"
    );
    assert!(
        after["blocking_sites"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["site"].as_str().is_some_and(|f| f.contains("slow_io"))),
        "counts by site name slow_io: {}",
        after["blocking_sites"]
    );

    // The block profile decodes and charges the time to slow_io.
    let bytes = http.ok(&format!("{diag_url}/debug/pprof/block")).body;
    let profile = diag_core::profile::pprof_codec::decode(&bytes).expect("decodes");
    let delay = profile.sample_index("delay").expect("delay column");
    let slow_io_ns: i64 = profile
        .samples
        .iter()
        .filter(|s| s.stack.iter().any(|f| f.function.contains("slow_io")))
        .map(|s| s.values[delay])
        .sum();
    assert!(slow_io_ns >= 250_000_000, "slow_io blocked {slow_io_ns} ns");

    // The human view names the route and the function, runtime frames folded.
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["tasks", &diag_url])
        .output()
        .expect("run diag");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("/sleep") && text.contains("slow_io") && text.contains("runtime frames"),
        "{text}"
    );

    // Bad input: an unknown query parameter is a 400 with a reason.
    assert_eq!(http.status(&format!("{diag_url}/debug/tasks?bogus=1")), 400);
    drop(service);
}
