//! Runtimes diag did not start inside: before any is watched, `/debug/tasks` says so and
//! names the line to add; `watch_runtime_named` watches several at once, each by name, summed
//! in `runtime` (only those serving requests, once one has); a name already watched is refused, and so is a runtime already watched (under
//! any name, by either call); a runtime that shuts down leaves the list.
//! One test: which runtimes are watched is process-global.

mod support;

use std::time::Duration;

use diag_core::wire::Tasks;
use support::{wait_until, when};

fn tasks(addr: &str) -> Tasks {
    let a = support::get(addr, "/debug/tasks").unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    serde_json::from_slice(&a.body).unwrap()
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn several_runtimes_are_watched_by_name() {
    // Started from a plain thread, outside any runtime: nothing to watch yet.
    let diag = diag_core::Diag::builder()
        .addr("127.0.0.1:0")
        .start()
        .unwrap();
    let addr = diag.local_addr().unwrap().to_string();
    let t = tasks(&addr);
    let why = t
        .not_watching
        .as_deref()
        .expect("says why nothing is watched");
    assert!(
        why.contains("diag_core::watch_runtime(&tokio::runtime::Handle::current())"),
        "{why}"
    );
    assert!(!t.runtime.watching && t.runtimes.is_empty() && !t.lag.running);

    let (server, background) = (runtime(2), runtime(1));
    assert!(diag_core::watch_runtime_named("server", server.handle()));
    assert!(diag_core::watch_runtime_named(
        "background",
        background.handle()
    ));
    assert!(
        !diag_core::watch_runtime_named("server", background.handle()),
        "a name already watched is refused"
    );
    assert!(
        !diag_core::watch_runtime_named("server-again", server.handle()),
        "a runtime already watched is refused under another name"
    );
    diag_core::watch_runtime(background.handle());
    let t = wait_until(
        Duration::from_secs(30),
        "both runtimes' lag probes to take samples",
        || {
            let t = Box::new(tasks(&addr));
            let sampled = t.runtimes.iter().all(|r| r.lag.samples_in_window > 0);
            when(t, |t| t.runtimes.len() == 2 && sampled)
        },
    );
    assert!(t.not_watching.is_none());
    let names: Vec<&str> = t.runtimes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["server", "background"]);
    assert_eq!(t.runtimes[0].runtime.workers, 2);
    assert_eq!(t.runtimes[1].runtime.workers, 1);
    assert_eq!(t.runtime.workers, 3, "summed in runtime");
    assert!(t.runtime.watching && t.lag.running);
    let samples: u64 = t.runtimes.iter().map(|r| r.lag.samples_in_window).sum();
    assert!(
        t.lag.samples_in_window >= samples,
        "the lag of all runtimes together holds each one's samples"
    );

    // Blocking the one worker of `background` shows in its lag, not in the server's.
    background.block_on(async {
        // workload: the blocking call whose lag is measured
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
            .await
            .unwrap()
    });
    let t = wait_until(
        Duration::from_secs(30),
        "background's lag to show the 300 ms block",
        || {
            when(Box::new(tasks(&addr)), |t| {
                t.runtimes[1].lag.max_ms >= 250.0
            })
        },
    );
    assert!(t.lag.max_ms >= 250.0);

    // A runtime that shuts down leaves the list; its name can be watched again.
    drop(background);
    wait_until(
        Duration::from_secs(30),
        "the background runtime to leave the list",
        || when(tasks(&addr).runtimes.len(), |&n| n == 1),
    );
    let again = runtime(1);
    assert!(diag_core::watch_runtime_named("background", again.handle()));
    // Watching it again does nothing; a runtime not yet watched gets the first free name.
    diag_core::watch_runtime(again.handle());
    // The user's line inside a runtime diag already watches.
    server.block_on(async { diag_core::watch_runtime(&tokio::runtime::Handle::current()) });
    let t = tasks(&addr);
    let names: Vec<&str> = t.runtimes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["server", "background"]);
    assert_eq!(t.runtime.workers, 3, "each runtime counted once");
    assert!(t.runtimes.iter().all(|r| !r.serves_requests));

    // Once a request has run on `server`, the sums are those of the runtimes serving requests:
    // `background` stays listed (as actix's System runtime would beside its workers).
    server.block_on(async {
        let route = diag_core::recorder::Route::named("/served");
        let method = diag_core::recorder::Method::new("GET");
        let ((), call) = route.watch(method, async {}).await;
        call.finish(200);
    });
    let t = tasks(&addr);
    let serving: Vec<bool> = t.runtimes.iter().map(|r| r.serves_requests).collect();
    assert_eq!(serving, [true, false]);
    assert_eq!(
        t.runtime.workers, 2,
        "only the runtime serving requests is summed"
    );
    let third = runtime(1);
    diag_core::watch_runtime(third.handle());
    let t = tasks(&addr);
    let names: Vec<&str> = t.runtimes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["server", "background", "runtime-1"]);
    drop(server);
    drop(again);
    drop(third);
    diag.shutdown();
}
