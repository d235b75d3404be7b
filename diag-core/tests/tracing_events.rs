//! diag's own events reach the application's `tracing` subscriber (target `diag`): a blocking
//! poll at warn level with its route, duration and site, a refused debug request (409) at info,
//! a CPU profile's start and end at debug, a heap capture and a failed one at warn. The subscriber here is the application's (diag
//! installs none), global as an application's is. One test: the subscriber is global.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, span};

mod support;

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps every event of target `diag` as `LEVEL message k=v ...`.
struct Capture;

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "diag"
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut s = e.metadata().level().to_string();
        e.record(&mut Fields(&mut s));
        EVENTS.lock().unwrap().push(s);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// Waits up to 60 s for an event containing every one of `parts`.
fn wait_for(parts: &[&str]) -> String {
    // Long: the first blocking event's site is symbolized cold (seconds in a debug build).
    support::wait_until(
        Duration::from_secs(60),
        &format!("an event with {parts:?}"),
        || {
            let events = EVENTS.lock().unwrap();
            events
                .iter()
                .find(|e| parts.iter().all(|p| e.contains(p)))
                .cloned()
                .ok_or_else(|| events.clone())
        },
    )
}

/// The status `GET path` on `addr` answers.
fn get_status(addr: &str, path: &str) -> u16 {
    support::get(addr, path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .status
}

#[inline(never)]
fn block_the_worker() -> &'static str {
    std::thread::sleep(Duration::from_millis(300)); // workload: the blocking poll under test
    "done\n"
}

#[test]
fn diag_logs_through_tracing() {
    tracing::subscriber::set_global_default(Capture).unwrap();
    let diag = diag_core::Diag::builder()
        .addr("127.0.0.1:0")
        .blocking_threshold(Duration::from_millis(50))
        .start()
        .unwrap();
    let diag_addr = diag.local_addr().unwrap().to_string();
    let app = Router::new()
        .route("/block", get(|| async { block_the_worker() }))
        .layer(diag_core::layer());
    let (_rt, app_addr) = support::serve(app);

    assert_eq!(get_status(&app_addr, "/block"), 200);
    let e = wait_for(&["WARN", "blocking poll", "name=/block"]);
    assert!(e.contains("block_the_worker"), "the site is not named: {e}");
    assert!(e.contains("blocked_ms="), "{e}");

    // A second CPU profile while one runs: 409, logged.
    let first = {
        let a = diag_addr.clone();
        std::thread::spawn(move || get_status(&a, "/debug/pprof/profile?seconds=2"))
    };
    wait_for(&["DEBUG", "CPU profile started"]);
    assert_eq!(
        get_status(&diag_addr, "/debug/pprof/profile?seconds=1"),
        409
    );
    let e = wait_for(&["INFO", "debug request refused", "status=409"]);
    assert!(e.contains("reason="), "{e}");
    assert_eq!(first.join().unwrap(), 200);
    wait_for(&["DEBUG", "CPU profile finished", "periods="]);

    // A capture near the memory limit (1 KiB: the process is past it at once) into a
    // directory that is not there: a warning; into one that is: a warning naming the files.
    let dir = std::env::temp_dir().join(format!("diag-events-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    diag_core::heap::set_capture(Some(dir.clone()), 90, 20, Some(1024));
    let e = wait_for(&["WARN", "heap capture failed", "reason=\"memory_limit\""]);
    assert!(
        e.contains("diag-events-capture"),
        "the path is not said: {e}"
    );
    assert_eq!(diag_core::heap::capture_stats().failures, 1);
    std::fs::create_dir_all(&dir).unwrap();
    diag_core::heap::set_capture(Some(dir.clone()), 90, 20, Some(1024));
    let e = wait_for(&["WARN", "heap captured", "current="]);
    assert!(e.contains(&format!("diag diff {}", dir.display())), "{e}");
    assert_eq!(diag_core::heap::capture_stats().memory_limit, 1);
    diag_core::heap::set_capture(None, 90, 20, None);
    std::fs::remove_dir_all(dir).ok();
}
