//! `#[actix_web::main]` with diag started in `main`: the System's runtime (watched by `init()`,
//! as it runs inside it) is listed in `/debug/tasks` but serves no requests, so `runtime` sums
//! the two workers only. Built only with the `actix` feature. One test: which runtimes are
//! watched is process-global.
#![cfg(feature = "actix")]

mod support;

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use diag_core::wire::Tasks;
use support::{wait_until, when};

fn tasks(addr: &str) -> Tasks {
    let a = support::get(addr, "/debug/tasks").unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    serde_json::from_slice(&a.body).unwrap()
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[test]
fn the_system_runtime_is_listed_not_summed() {
    // What `#[actix_web::main]` expands to: the body runs on the System's runtime.
    actix_web::rt::System::new().block_on(async {
        let diag = diag_core::Diag::builder()
            .addr("127.0.0.1:0")
            .start()
            .unwrap();
        let diag_addr = diag.local_addr().unwrap().to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let app_addr = listener.local_addr().unwrap().to_string();
        let server = HttpServer::new(|| {
            App::new()
                .wrap(diag_core::actix::Diag::default())
                .route("/x", web::get().to(ok))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        // The client blocks: off the System's thread, which accepts the connections.
        let t = actix_web::rt::task::spawn_blocking(move || {
            wait_until(
                Duration::from_secs(60),
                "both workers to serve requests (one connection per request)",
                || {
                    for _ in 0..4 {
                        assert_eq!(support::get(&app_addr, "/x").unwrap().status, 200);
                    }
                    let t = Box::new(tasks(&diag_addr));
                    when(t, |t| {
                        t.runtimes.iter().filter(|r| r.serves_requests).count() == 2
                    })
                },
            )
        })
        .await
        .unwrap();
        handle.stop(true).await;
        diag.shutdown();
        let listed: Vec<(&str, bool)> = t
            .runtimes
            .iter()
            .map(|r| (r.name.as_str(), r.serves_requests))
            .collect();
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert_eq!(
            listed[0],
            ("runtime", false),
            "the System's, watched by start()"
        );
        assert!(
            listed[1..]
                .iter()
                .all(|(n, s)| n.starts_with("actix-") && *s),
            "{listed:?}"
        );
        assert_eq!(t.runtime.workers, 2, "the two workers, not the System's");
    });
}
