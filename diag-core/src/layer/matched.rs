//! Routes named by axum: the template the router matched (`MatchedPath`), `unmatched` when
//! none did. The only file of the layer that knows axum.

use std::cell::{Cell, RefCell};

use axum::extract::MatchedPath;
use http::Request;

use super::RouteNamer;
use crate::recorder::Route;

/// The route namer of [`layer()`](super::layer): axum's matched route template.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchedRoutes {
    _private: (),
}

impl<B> RouteNamer<B> for MatchedRoutes {
    #[inline]
    fn route(&self, req: &Request<B>) -> Route {
        match req.extensions().get::<MatchedPath>() {
            Some(p) => matched_route(p),
            None => Route::unmatched(),
        }
    }
}

/// The route of the template axum matched: [`Route::named`] without the string compare. The
/// thread's cache keeps a clone of each `MatchedPath` it indexes (one per slot), so the
/// route string cannot be freed and its address reused while cached: equal address and
/// length then mean the same string (axum hands every request of a route the same
/// `Arc<str>`).
#[inline]
fn matched_route(path: &MatchedPath) -> Route {
    let s = path.as_str();
    let key = (s.as_ptr() as usize, s.len());
    let slot = ((key.0 >> 4) ^ key.1) % MATCHED_SLOTS;
    if MATCHED_KEYS.with(|k| k[slot].get()) == key
        && let Some(e) = MATCHED_ROUTES.with(|e| e[slot].get())
    {
        return e;
    }
    matched_route_miss(path, slot, key)
}

#[cold]
#[inline(never)]
fn matched_route_miss(path: &MatchedPath, slot: usize, key: (usize, usize)) -> Route {
    let e = Route::named(path.as_str());
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    // The key is set only once the keeper holds the string; if the thread's storage is going
    // away, nothing is cached.
    let kept = MATCHED_KEEP.try_with(|keep| {
        let Ok(mut keep) = keep.0.try_borrow_mut() else {
            return false;
        };
        if keep.len() < MATCHED_SLOTS {
            keep.resize(MATCHED_SLOTS, None);
        }
        keep[slot] = Some(path.clone());
        true
    });
    if kept == Ok(true) {
        MATCHED_ROUTES.with(|en| en[slot].set(Some(e)));
        MATCHED_KEYS.with(|k| k[slot].set(key));
    }
    e
}

/// Slots of each thread's [`matched_route`] cache.
const MATCHED_SLOTS: usize = 64;

thread_local! {
    /// (address, length) of the route string each slot holds; (0, 0) when empty.
    static MATCHED_KEYS: [Cell<(usize, usize)>; MATCHED_SLOTS] =
        const { [const { Cell::new((0, 0)) }; MATCHED_SLOTS] };
    static MATCHED_ROUTES: [Cell<Option<Route>>; MATCHED_SLOTS] =
        const { [const { Cell::new(None) }; MATCHED_SLOTS] };
    /// The `MatchedPath` behind each key, holding its string alive.
    static MATCHED_KEEP: Keepers = const { Keepers(RefCell::new(Vec::new())) };
}

/// The keepers of [`matched_route`]'s cache. When the thread's storage goes away, the keys go
/// with them: an address is only trusted while its string is held.
struct Keepers(RefCell<Vec<Option<MatchedPath>>>);

impl Drop for Keepers {
    fn drop(&mut self) {
        let _ = MATCHED_KEYS.try_with(|k| k.iter().for_each(|k| k.set((0, 0))));
    }
}
