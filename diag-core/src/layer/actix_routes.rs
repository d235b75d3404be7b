//! Naming an actix-web request's route before actix routes it, without actix's per-request
//! cost.
//!
//! The middleware needs the route at the request's first poll (the blocking watchdog and the
//! heap and CPU labels name it), but actix routes the request inside the service the
//! middleware wraps. `ServiceRequest::match_pattern()` answers before routing by matching the
//! path against every resource again (a regex run per dynamic resource, ~7,000 instructions a
//! request on the example app, more than the rest of diag's work together) and allocating the
//! pattern's string.
//!
//! So each worker thread learns the patterns actix returns: a pattern whose segments are
//! literals or whole `{name}` parameters (actix's default `[^/]+`) is kept, and a later path
//! that fits a kept pattern is named by it with a few string compares. The answer is checked
//! once actix has routed the request: the parameters it captured must be the pattern's, by
//! name. When they are not (a resource the learned pattern shadows, e.g. `/users/me` registered
//! before `/users/{id}`), the request is recorded under the route actix matched and that
//! route's pattern is kept ahead of the one that claimed the path, so the next such path gets
//! it first. A last `{tail}*` or `{tail:.*}` is kept too (the rest of the path). Patterns with
//! another regex (`{id:\d+}`) or a parameter inside a segment (`{name}.{ext}`), and paths
//! that match no resource or match a prefix service (actix-files' `Files`, a scope's default
//! service: the pattern is the mount, which does not fit the path), are looked up by actix
//! each time, as before. At most [`MAX_ROUTES`] patterns are kept per thread and app.

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::dev::{ResourceMap, ServiceRequest};

use crate::metrics::MAX_ROUTES;
use crate::recorder::Route;

/// One segment of a kept pattern (the text between two `/`).
enum Segment {
    /// Matches itself only.
    Literal(Box<str>),
    /// `{name}`: any non-empty segment.
    Param(Box<str>),
    /// `{name}*` or `{name:.*}`, last: the rest of the path, empty or not.
    Tail(Box<str>),
}

/// A pattern actix returned, kept to name later paths.
pub(crate) struct Learned {
    /// The app's resource map it came from (its address: compared, never dereferenced).
    app: usize,
    segments: Box<[Segment]>,
    params: usize,
    route: Route,
}

impl Learned {
    /// `pattern` split at `/`, when each segment is a literal or a whole `{name}`, the last
    /// possibly a tail.
    fn parse(app: usize, pattern: &str, route: Route) -> Option<Self> {
        let mut params = 0;
        let count = pattern.split('/').count();
        let segments = pattern
            .split('/')
            .enumerate()
            .map(|(i, s)| {
                let last = i + 1 == count;
                let name_of = |inner: &str| {
                    let ok = !inner.is_empty() && !inner.contains(['{', '}', ':', '*']);
                    ok.then(|| Box::<str>::from(inner))
                };
                let seg = if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                {
                    match inner.strip_suffix(":.*") {
                        Some(tail) if last => Segment::Tail(name_of(tail)?),
                        _ => Segment::Param(name_of(inner)?),
                    }
                } else if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix("}*"))
                    && last
                {
                    Segment::Tail(name_of(inner)?)
                } else if s.contains(['{', '}', '*']) {
                    return None;
                } else {
                    return Some(Segment::Literal(s.into()));
                };
                params += 1;
                Some(seg)
            })
            .collect::<Option<Box<[Segment]>>>()?;
        Some(Self {
            app,
            segments,
            params,
            route,
        })
    }

    /// True when `path` fits: bytes compared in place (this runs on every request).
    fn fits(&self, app: usize, path: &str) -> bool {
        if self.app != app {
            return false;
        }
        let mut rest = path.as_bytes();
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                match rest.split_first() {
                    Some((b'/', r)) => rest = r,
                    _ => return false,
                }
            }
            let len = match seg {
                Segment::Literal(l) if rest.starts_with(l.as_bytes()) => l.len(),
                Segment::Literal(_) => return false,
                Segment::Param(_) => match rest.iter().position(|&b| b == b'/') {
                    Some(0) => return false,
                    Some(n) => n,
                    None if rest.is_empty() => return false,
                    None => rest.len(),
                },
                Segment::Tail(_) => rest.len(),
            };
            rest = &rest[len..];
            if rest.first().is_some_and(|&b| b != b'/') {
                return false;
            }
        }
        rest.is_empty()
    }

    /// True when actix captured exactly this pattern's parameters (by name, in order).
    fn agrees_with(&self, captured: &actix_web::dev::Path<actix_web::dev::Url>) -> bool {
        if captured.segment_count() != self.params {
            return false;
        }
        let mut names = self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Tail(n) => Some(&**n),
            Segment::Literal(_) => None,
        });
        captured.iter().all(|(name, _)| names.next() == Some(name))
    }
}

thread_local! {
    /// This worker's kept patterns, in the order they are tried.
    static KEPT: RefCell<Vec<Rc<Learned>>> = const { RefCell::new(Vec::new()) };
}

fn app_key(map: &ResourceMap) -> usize {
    std::ptr::from_ref(map) as usize
}

/// How a request's route was named.
pub(crate) enum Naming {
    /// By a kept pattern: to be checked once actix has routed the request.
    Learned(Rc<Learned>),
    /// By actix itself (or unmatched): nothing to check.
    Actix,
}

/// The route of `req` (not yet routed by actix) and how it was named.
pub(crate) fn name(req: &ServiceRequest) -> (Route, Naming) {
    let app = app_key(req.resource_map());
    let path = req.path();
    let found = KEPT.try_with(|k| {
        let k = k.try_borrow().ok()?;
        k.iter().find(|l| l.fits(app, path)).cloned()
    });
    if let Ok(Some(l)) = found {
        return (l.route, Naming::Learned(l));
    }
    name_by_actix(req, app)
}

#[cold]
fn name_by_actix(req: &ServiceRequest, app: usize) -> (Route, Naming) {
    let Some(pattern) = req.match_pattern() else {
        return (Route::unmatched(), Naming::Actix);
    };
    let route = route_of(&pattern);
    keep(app, &pattern, req.path(), route, None);
    (route, Naming::Actix)
}

/// The route named by actix's `pattern`. A prefix service mounted at the root (actix-files'
/// `Files::new("", dir)`, as a file server mounts it) has the empty pattern: it is named `/`,
/// as a prefix mounted at `/static` is named `/static`.
fn route_of(pattern: &str) -> Route {
    Route::named(if pattern.is_empty() { "/" } else { pattern })
}

/// Keeps `pattern`, which actix matched for `path`, before `ahead_of` when given, else last:
/// unless it cannot be matched without actix, or does not fit `path` itself (a prefix service
/// or a scope's default service: kept, it would never fit, and every request would keep
/// another copy), or the thread keeps enough.
fn keep(app: usize, pattern: &str, path: &str, route: Route, ahead_of: Option<&Rc<Learned>>) {
    let Some(l) = Learned::parse(app, pattern, route).filter(|l| l.fits(app, path)) else {
        return;
    };
    let _ = KEPT.try_with(|k| {
        let Ok(mut k) = k.try_borrow_mut() else {
            return;
        };
        if k.iter().filter(|o| o.app == app).count() >= MAX_ROUTES {
            return;
        }
        let at = ahead_of
            .and_then(|a| k.iter().position(|o| Rc::ptr_eq(o, a)))
            .unwrap_or(k.len());
        k.insert(at, Rc::new(l));
    });
}

/// The route to record a request under, now that actix has routed it (`req`, the response's
/// request): the named one when the check agrees, else the one actix matched (kept ahead).
pub(crate) fn confirm(named: Route, naming: &Naming, req: &actix_web::HttpRequest) -> Route {
    let Naming::Learned(l) = naming else {
        return named;
    };
    if l.agrees_with(req.match_info()) {
        return named;
    }
    let Some(pattern) = req.match_pattern() else {
        return Route::unmatched();
    };
    let route = route_of(&pattern);
    keep(l.app, &pattern, req.path(), route, Some(l));
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(pattern: &str) -> Option<Learned> {
        Learned::parse(1, pattern, Route::named(pattern))
    }

    #[test]
    fn whole_parameters_and_literals_are_kept_others_are_not() {
        for p in [
            "/users/{id}",
            "/b/users/{id}",
            "/",
            "",
            "/t/{tenant}/items/{item}",
            "/static/{tail}*",
            "/files/{rest:.*}",
        ] {
            assert!(learned(p).is_some(), "{p}");
        }
        for p in [
            r"/users/{id:\d+}",
            "/f/{name}.{ext}",
            "/x/{}",
            "/{tail}*/x",
            "/a*",
        ] {
            assert!(learned(p).is_none(), "{p}");
        }
    }

    #[test]
    fn a_kept_pattern_fits_paths_as_actix_default_parameters_do() {
        let l = learned("/users/{id}").unwrap();
        assert!(l.fits(1, "/users/1"));
        assert!(l.fits(1, "/users/a%20b"));
        for p in [
            "/users/",
            "/users",
            "/users/1/",
            "/users/1/x",
            "/user/1",
            "",
        ] {
            assert!(!l.fits(1, p), "{p}");
        }
        assert!(!l.fits(2, "/users/1"), "another app's pattern");
        let root = learned("/").unwrap();
        assert!(root.fits(1, "/") && !root.fits(1, "/x"));
        let tail = learned("/static/{tail}*").unwrap();
        for p in ["/static/", "/static/a", "/static/a/b/"] {
            assert!(tail.fits(1, p), "{p}");
        }
        assert!(!tail.fits(1, "/static") && !tail.fits(1, "/staticx/a"));
    }
}
