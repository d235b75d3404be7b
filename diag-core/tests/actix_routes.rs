//! The actix-web middleware names routes from the patterns each worker learned: a path a
//! learned pattern would claim, but that actix routes to another resource (`/users/me`
//! registered before `/users/{id}`), is counted under the resource actix matched, every time;
//! tails, regex patterns and unmatched paths are counted as actix names them. Built only with
//! the `actix` feature (on in workspace builds through diag-cli's dev-dependencies).
#![cfg(feature = "actix")]

use actix_web::{App, HttpResponse, web};

/// `http_requests_total` of `route` (GET 200 or 404), from the process's `/metrics` text.
fn count(route: &str, status: u16) -> u64 {
    let series =
        format!(r#"http_requests_total{{route="{route}",method="GET",status="{status}"}} "#);
    diag_core::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[test]
fn each_request_is_counted_under_the_resource_actix_routed_it_to() {
    actix_web::rt::System::new().block_on(async {
        let app = actix_web::test::init_service(
            App::new()
                .wrap(diag_core::actix::Diag::default())
                .route("/ar/users/me", web::get().to(ok))
                .route("/ar/users/{id}", web::get().to(ok))
                .route("/ar/num/{n:[0-9]+}", web::get().to(ok))
                .route("/ar/files/{tail}*", web::get().to(ok)),
        )
        .await;
        // `/ar/users/{id}` is learned first, so it claims `/ar/users/me` until the check after
        // routing corrects it; the corrected route is then tried first.
        for path in [
            "/ar/users/1",
            "/ar/users/me",
            "/ar/users/2",
            "/ar/users/me",
            "/ar/users/me",
            "/ar/num/7",
            "/ar/num/8",
            "/ar/files/",
            "/ar/files/a/b.txt",
            "/ar/users/1/extra",
            "/ar/num/x",
        ] {
            let req = actix_web::test::TestRequest::get().uri(path).to_request();
            actix_web::test::call_service(&app, req).await;
        }
    });
    assert_eq!(count("/ar/users/{id}", 200), 2);
    assert_eq!(count("/ar/users/me", 200), 3);
    assert_eq!(count("/ar/num/{n:[0-9]+}", 200), 2);
    assert_eq!(
        count("/ar/files/{tail}*", 200),
        2,
        "{}",
        diag_core::metrics::render()
    );
    assert_eq!(
        count("unmatched", 404),
        2,
        "{}",
        diag_core::metrics::render()
    );
}

/// A service mounted at the root as a prefix, as actix-files' `Files::new("", dir)` mounts
/// itself (a file server's usual setup): it answers every path under it.
struct RootPrefix;

impl actix_web::dev::HttpServiceFactory for RootPrefix {
    fn register(self, config: &mut actix_web::dev::AppService) {
        let serve = actix_web::dev::fn_service(|req: actix_web::dev::ServiceRequest| async {
            Ok(req.into_response(HttpResponse::Ok().finish()))
        });
        config.register_service(
            actix_web::dev::ResourceDef::root_prefix(""),
            None,
            serve,
            None,
        );
    }
}

#[test]
fn a_prefix_service_at_the_root_is_named_slash_and_claims_no_other_route() {
    actix_web::rt::System::new().block_on(async {
        let app = actix_web::test::init_service(
            App::new()
                .wrap(diag_core::actix::Diag::default())
                .route("/pr/health", web::get().to(ok))
                .service(RootPrefix),
        )
        .await;
        for path in ["/pr/health", "/a", "/b/c.txt", "/b/", "/pr/health", "/a"] {
            let req = actix_web::test::TestRequest::get().uri(path).to_request();
            actix_web::test::call_service(&app, req).await;
        }
    });
    // The mount's pattern is empty; named `/`, not `""` (a label Prometheus reads as absent).
    assert_eq!(count("/", 200), 4, "{}", diag_core::metrics::render());
    assert_eq!(count("", 200), 0);
    assert_eq!(count("/pr/health", 200), 2);
}
