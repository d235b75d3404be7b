//! A route closure returning unbounded values: past `MAX_ROUTES` distinct names, requests
//! are recorded under the one overflow name `(other)` and counted as folded; the exposition
//! stays bounded. (Its own test binary: the route table is process-global.)

#![cfg(feature = "server")]

use std::convert::Infallible;

use http::{Request, Response};
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test]
async fn raw_paths_past_the_cap_fold_into_other() {
    let svc = ServiceBuilder::new()
        .layer(diag_core::layer_with(|req: &Request<String>| {
            req.uri().path().to_owned()
        }))
        .service(service_fn(|_req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let cap = diag_core::metrics::MAX_ROUTES;
    let extra = 100;
    for round in 0..2 {
        for i in 0..cap + extra {
            let req = Request::get(format!("/user/{i}"))
                .body(String::new())
                .unwrap();
            svc.clone().oneshot(req).await.unwrap();
        }
        let text = diag_core::metrics::render();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .collect();
        assert_eq!(series.len(), cap + 1, "{text}");
        let other = series
            .iter()
            .find(|l| l.contains(r#"route="(other)""#))
            .unwrap_or_else(|| panic!("{text}"));
        let n = (round + 1) * extra;
        assert!(other.ends_with(&format!(" {n}")), "{other}");
        assert!(
            text.contains(&format!("diag_route_names_folded_total {n}")),
            "{text}"
        );
        // The first names keep their own series, with every request counted.
        assert!(
            text.contains(&format!(
                r#"http_requests_total{{route="/user/0",method="GET",status="200"}} {}"#,
                round + 1
            )),
            "{text}"
        );
    }
}
