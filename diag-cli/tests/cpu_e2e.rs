//! End to end, CPU: the hot example service in-process with a client keeping `/burn` busy;
//! `diag flamegraph URL --seconds 5` writes a well-formed SVG naming the hot function and
//! saves the raw profile, in which the hot function holds most samples, labelled with its
//! route, and which `go tool pprof` reads. Then the endpoint's one-at-a-time rule (409) and the early-disconnect path
//! (the profiler is freed at once). One test: the allocator and the profiler are global.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;

use support::{Http, cpu_profile_sampling as sampling, wait_until, when};

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

const HOT: &str = "diag_examples::hot::burn_cpu";

/// Share of all samples whose stack contains `function`.
fn share(p: &diag_core::profile::Profile, function: &str) -> f64 {
    let i = p.sample_index("samples").expect("samples column");
    let total = p.total(i) as f64;
    let hot: i64 = p
        .samples
        .iter()
        .filter(|s| s.stack.iter().any(|f| f.function == function))
        .map(|s| s.values[i])
        .sum();
    hot as f64 / total.max(1.0)
}

/// `GET http://addr/path` with a timeout: (status, body).
fn get(addr: &str, path: &str, timeout: Duration) -> (u16, String) {
    let answer = Http::with_timeout(timeout)
        .try_get(&format!("http://{addr}{path}"))
        .unwrap_or_else(|e| panic!("no answer (timeout?): {e}"));
    (answer.status, answer.text())
}

#[test]
fn cpu_flamegraph_end_to_end() {
    let service = diag_examples::InProcess::start(
        diag_core::Diag::builder(),
        diag_examples::hot::app().layer(diag_core::layer()),
    );
    let diag_addr = service.diag_addr().to_owned();
    let diag_url = service.diag_url.clone();
    let app_addr = service.app_addr().to_owned();

    // Keep the hot endpoint busy.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, served, addr) = (stop.clone(), served.clone(), app_addr.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = get(&addr, "/burn?n=200000", Duration::from_secs(30));
                assert_eq!(status, 200, "/burn failed");
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let dir = std::env::temp_dir().join(format!("diag-cpu-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg_path = dir.join("hot.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["flamegraph", &diag_url, "--seconds", "5", "-o"])
        .arg(&svg_path)
        .output()
        .expect("run diag");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "diag flamegraph failed: {stderr}");
    assert!(
        stderr.contains("5 s"),
        "no progress line on stderr: {stderr}"
    );

    // The SVG is well-formed and names the hot function.
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let head = svg.trim_start();
    assert!(head.starts_with("<?xml") || head.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains(HOT), "the SVG does not name {HOT}");
    assert!(svg.contains("[thread "), "no thread root frames in the SVG");

    // The raw profile beside it: the hot function holds most samples.
    let raw = dir.join("hot.pb.gz");
    let bytes = std::fs::read(&raw).expect("raw profile saved beside the SVG");
    let p = diag_core::profile::load(&bytes).expect("decode the saved profile");
    assert_eq!(p.period_type.as_ref().unwrap().ty, "cpu");
    assert!(p.duration_nanos >= 4_000_000_000, "{}", p.duration_nanos);
    assert!(
        p.samples
            .iter()
            .all(|s| s.labels.iter().any(|(k, _)| k == "thread"))
    );
    // Samples taken inside a request's poll carry its route (pprof label `route`).
    let (mut in_hot, mut labelled) = (0i64, 0i64);
    for s in &p.samples {
        if s.stack.iter().any(|f| f.function == HOT) {
            in_hot += s.values[0];
            if s.labels.iter().any(|(k, v)| k == "route" && v == "/burn") {
                labelled += s.values[0];
            }
        }
    }
    assert!(
        labelled as f64 >= 0.95 * in_hot as f64,
        "{labelled} of {in_hot} samples in {HOT} carry route=/burn"
    );
    // `diag top --by route`: the /burn group first, holding the hot function.
    let out = Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(["top", raw.to_str().unwrap(), "--by", "route", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["by"], "route");
    let first = &v["groups"][0];
    assert_eq!(first["value"], "/burn", "{v}");
    assert!(first["share"].as_f64().unwrap() > 50.0, "{v}");
    assert!(
        first["top"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["function"] == HOT),
        "{v}"
    );
    let hot = share(&p, HOT);
    eprintln!("{HOT}: {:.1} % of {} samples", hot * 100.0, p.total(0));
    assert!(
        hot > 0.5,
        "{HOT} holds only {:.1} % of the samples",
        hot * 100.0
    );
    assert!(
        !p.samples.iter().any(|s| s
            .stack
            .iter()
            .any(|f| f.function.contains("cpu::sampler::handler")
                || f.function.contains("cpu::sampler::sample"))),
        "the profiler's own frames leaked into the stacks"
    );
    // The innermost frame is the interrupted code, never the signal trampoline above it
    // (`__restore_rt` in libc, unnamed: libc does not export it), which would make every flat
    // profile (`diag top`, `go tool pprof -top`) one address. Samples interrupted in libc are
    // kept (diag's sampler unwinds through it), named by libc's symbols.
    let libc: Vec<_> = p
        .mappings
        .iter()
        .filter(|m| m.file.contains("libc.so"))
        .collect();
    assert!(!libc.is_empty(), "no libc mapping in {:?}", p.mappings);
    let bad: Vec<&str> = p
        .samples
        .iter()
        .filter_map(|s| s.stack.first())
        .map(|f| f.function.as_str())
        .filter(|f| f.contains("restore_rt") || f.contains("sigreturn") || f.starts_with("0x"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} samples have an unnamed or trampoline innermost frame, e.g. {:?}",
        bad.len(),
        bad.first()
    );

    // go tool pprof opens it.
    if let Some(go) = support::peer("go", "golang-go", None) {
        let out = Command::new(go)
            .args(["tool", "pprof", "-top"])
            .arg(&raw)
            .output()
            .expect("run go tool pprof");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "go tool pprof failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(HOT),
            "go tool pprof -top does not list {HOT}:\n{text}"
        );
        // The mapping table names the main binary (this test executable).
        assert!(
            text.contains("File: cpu_e2e") && !text.contains("binary filename not available"),
            "{text}"
        );
    }

    // One profile at a time: a concurrent request gets 409 with a one-line reason.
    let first = {
        let addr = diag_addr.clone();
        std::thread::spawn(move || {
            get(
                &addr,
                "/debug/pprof/profile?seconds=3",
                Duration::from_secs(60),
            )
        })
    };
    wait_until(
        Duration::from_secs(10),
        "the first profile sampling",
        || when(sampling(), |&s| s),
    );
    let (status, body) = get(
        &diag_addr,
        "/debug/pprof/profile?seconds=1",
        Duration::from_secs(30),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body.trim_end().lines().count(), 1, "{body:?}");
    assert_eq!(first.join().unwrap().0, 200);

    // Bad values: 400 with a one-line reason.
    for q in [
        "seconds=0",
        "seconds=100000",
        "frequency=0",
        "frequency=5000",
        "format=png",
        "x=1",
    ] {
        let (status, body) = get(
            &diag_addr,
            &format!("/debug/pprof/profile?{q}"),
            Duration::from_secs(10),
        );
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body.trim_end().lines().count(), 1, "{q}: {body:?}");
    }

    // A client that goes away frees the profiler at once.
    wait_until(Duration::from_secs(10), "the last profile to end", || {
        when(sampling(), |&s| !s)
    });
    {
        let mut s = TcpStream::connect(&diag_addr).unwrap();
        write!(
            s,
            "GET /debug/pprof/profile?seconds=30 HTTP/1.1\r\nHost: {diag_addr}\r\n\r\n"
        )
        .unwrap();
        wait_until(Duration::from_secs(10), "the 30 s profile sampling", || {
            when(sampling(), |&s| s)
        });
    }
    wait_until(
        Duration::from_millis(300),
        "the profiler freed at once after its client went away",
        || when(sampling(), |&s| !s),
    );
    let t = Instant::now();
    let (status, body) = get(
        &diag_addr,
        "/debug/pprof/profile?seconds=1&format=folded",
        Duration::from_secs(20),
    );
    assert_eq!(status, 200, "a new profile after a disconnect: {body}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        body.contains("burn_cpu"),
        "folded stacks miss the hot function"
    );

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert!(served.load(Ordering::Relaxed) > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
