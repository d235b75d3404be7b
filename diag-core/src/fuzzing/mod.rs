//! Entry points for the fuzz targets in `tests/fuzz` (cargo feature `fuzzing`). Not a stable
//! API: it exists so the fuzzers can reach crate-private parsing code without making it public.
//!
//! Each function panics if an invariant of the code under test is broken, which is what a fuzz
//! target reports as a crash.

use axum::http::StatusCode;

use crate::http::query::Params;

/// The parameter lists the debug endpoints accept, plus one with an enumerated parameter.
const ALLOWED: &[&[&str]] = &[&[], &["debug", "gc"], &["bytes"], &["format", "seconds"]];

/// Parses `raw` (a query string, the part after `?`) as every debug endpoint would, then reads
/// each accepted parameter as an integer and as an enumeration, checking that:
/// - every error is a 400 with a non-empty reason;
/// - a parameter given once with an accepted name parses, one given twice or with another name
///   is refused;
/// - values read are within their bounds or the default.
pub fn query(raw: &[u8]) {
    let raw = String::from_utf8_lossy(raw);
    // Also the "no query at all" case: the same as an empty one.
    for raw in [Some(raw.as_ref()), None] {
        for allowed in ALLOWED {
            check_query(raw, allowed);
        }
    }
}

fn check_query(raw: Option<&str>, allowed: &[&str]) {
    let names: Vec<String> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    let expect_ok = names
        .iter()
        .enumerate()
        .all(|(i, n)| allowed.contains(&n.as_str()) && !names[..i].contains(n));
    let params = match Params::parse(raw, allowed) {
        Ok(p) => {
            assert!(expect_ok, "accepted {raw:?} for {allowed:?}");
            p
        }
        Err(e) => {
            assert!(!expect_ok, "refused {raw:?} for {allowed:?}: {}", e.reason);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{raw:?}");
            assert!(!e.reason.trim().is_empty(), "{raw:?}");
            return;
        }
    };
    for name in allowed {
        for (min, max, default) in [(0, 1, 0), (0, 1 << 40, u64::MAX), (1, 600, 30)] {
            match params.u64_in(name, min, max, default) {
                Ok(n) => assert!(
                    n == default || (min..=max).contains(&n),
                    "{name}={n} outside {min}..={max} for {raw:?}"
                ),
                Err(e) => {
                    assert_eq!(e.status, StatusCode::BAD_REQUEST);
                    assert!(e.reason.contains(name), "{}", e.reason);
                }
            }
        }
        let choices = ["proto", "text", "json"];
        match params.one_of(name, &choices, "default") {
            Ok(v) => assert!(v == "default" || choices.contains(&v), "{v:?}"),
            Err(e) => {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
                assert!(e.reason.contains(name), "{}", e.reason);
            }
        }
    }
}
