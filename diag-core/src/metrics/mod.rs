//! Monitoring essentials: the per-route request layer, named operation timings, process and
//! runtime gauges, readiness checks, and the registry they are exposed from (`GET /metrics`).
//!
//! Everything lives in one process-global [`prometheus_client`] registry, created on first
//! use. Label sets are bounded: routes are at most [`MAX_ROUTES`] names (route templates, gRPC
//! method paths, or what a `layer_with` closure returns; later ones fold into `(other)`),
//! methods outside the standard nine fold into `OTHER`, operation names beyond
//! [`MAX_OPERATIONS`] fold into `(other)`. Nothing here knows a web framework: routes and
//! methods arrive as `&str`s (through `crate::recorder`).

mod capture;
mod latency;
mod leaks;
mod process;
pub(crate) mod readiness;
mod requests;
pub(crate) mod timed;

pub use leaks::MAX_LEAK_SERIES;
pub use timed::MAX_OPERATIONS;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use crate::names::OVERFLOW;

/// Upper bounds (seconds) of the latency buckets: fine between 1 ms and 100 ms, where most
/// web requests fall, so `histogram_quantile` interpolates within a few milliseconds there.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// At most this many distinct route names get their own series; requests under later names
/// are recorded as `route="(other)"` and counted in `diag_route_names_folded_total`.
pub const MAX_ROUTES: usize = 256;

/// Requests recorded under `(other)` because the route cap was reached.
static ROUTES_FOLDED: AtomicU64 = AtomicU64::new(0);

/// Labels of the request duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: Arc<str>,
    pub(crate) method: &'static str,
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub(crate) route: Arc<str>,
    pub(crate) method: &'static str,
    pub(crate) status: u16,
}

/// The process-global metrics.
pub(crate) struct Metrics {
    registry: Registry,
    routes: RwLock<HashMap<Box<str>, &'static RouteEntry>>,
    pub(crate) started: Instant,
}

/// Cached handles for one route, so a request costs a map lookup by `&str`, not a label-set
/// allocation. Entries live as long as the process (there is one per route template of the
/// application's route table, plus `unmatched`), so requests borrow them without touching a
/// shared reference count.
pub(crate) struct RouteEntry {
    pub(crate) route: Arc<str>,
    /// The route's name in the blocking watchdog and its TaskMonitor.
    pub(crate) task: crate::tasks::TaskName,
    /// Counts and latencies per method (created on the method's first request).
    methods: [OnceLock<requests::RequestStats>; METHODS.len()],
    /// gRPC calls by status code (created on the route's first gRPC call); the codes are kept
    /// as `code + 1` (a status slot of 0 is an unclaimed one), see [`grpc_code_key`].
    grpc: OnceLock<requests::RequestStats>,
    /// Whether this is the entry of the names past [`MAX_ROUTES`].
    folded: bool,
}

/// The key a gRPC outcome is counted under: `code + 1` for the codes 0..=16, and two more for
/// a response that carried no `grpc-status` and one whose value was not a known code.
#[inline]
pub(crate) fn grpc_code_key(status: Option<&str>) -> u16 {
    match status.map(|s| s.trim().parse::<u16>()) {
        None => GRPC_MISSING,
        Some(Ok(c)) if c <= 16 => c + 1,
        Some(_) => GRPC_INVALID,
    }
}

const GRPC_MISSING: u16 = 100;
const GRPC_INVALID: u16 = 101;

/// The `code` label of a key from [`grpc_code_key`].
pub(crate) fn grpc_code_label(key: u16) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    match key {
        1..=17 => CODES[usize::from(key - 1)],
        GRPC_MISSING => "missing",
        _ => "invalid",
    }
}

/// Method label values; anything else is `OTHER`.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// The index of `m`'s label in the method table (`OTHER` for anything non-standard).
#[inline]
pub(crate) fn method_index(m: &str) -> usize {
    match m {
        "GET" => 0,
        "POST" => 1,
        "PUT" => 2,
        "DELETE" => 3,
        "PATCH" => 4,
        "HEAD" => 5,
        "OPTIONS" => 6,
        "CONNECT" => 7,
        "TRACE" => 8,
        _ => 9,
    }
}

impl RouteEntry {
    /// Records one finished request.
    #[cfg(test)]
    pub(crate) fn record(&self, method: &str, status: u16, seconds: f64) {
        self.record_at(
            method_index(method),
            status,
            std::time::Duration::from_secs_f64(seconds),
        );
    }

    /// Records one finished request whose method has index `i` ([`method_index`]).
    #[inline]
    pub(crate) fn record_at(&self, i: usize, status: u16, elapsed: std::time::Duration) {
        let i = i.min(METHODS.len() - 1);
        self.methods[i]
            .get_or_init(|| {
                let _ignore = crate::alloc_state::IgnoreAllocs::new();
                requests::RequestStats::new()
            })
            .record(status, elapsed);
        if self.folded {
            ROUTES_FOLDED.fetch_add(1, Relaxed);
        }
    }

    /// Records the gRPC outcome of one finished call (its HTTP side is [`record_at`]'s):
    /// `key` from [`grpc_code_key`].
    #[inline]
    pub(crate) fn record_grpc(&self, key: u16) {
        self.grpc
            .get_or_init(|| {
                let _ignore = crate::alloc_state::IgnoreAllocs::new();
                requests::RequestStats::new()
            })
            .count(key);
    }
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(requests::RequestCollector));
        registry.register_collector(Box::new(timed::OperationCollector));
        registry.register_collector(Box::new(process::ProcessCollector));
        registry.register_collector(Box::new(leaks::LeakCollector));
        registry.register_collector(Box::new(capture::CaptureCollector));
        Self {
            registry,
            routes: RwLock::new(HashMap::new()),
            started: Instant::now(),
        }
    }

    /// The cached entry of `route` (a matched template or [`UNMATCHED_ROUTE`]).
    ///
    /// Each thread keeps its own copy of the route map, so the per-request lookup touches no
    /// shared lock (a read lock's counter would bounce between the runtime's workers). The
    /// copies are bounded by the application's route table.
    ///
    /// In front of that map, a small direct-mapped cache indexed by the address of the route
    /// string: axum hands every request of a route the same `Arc<str>`, so the usual lookup is
    /// one index and one string compare against the entry's own name (the compare makes a
    /// reused address harmless), no hashing.
    ///
    /// Behind it, a second one indexed by the string's length and last bytes, for names made
    /// anew for each request (a gRPC method path read from the URI, a `layer_with` closure's
    /// `String`): their address differs every time, and without it each call would hash the
    /// name into the map (about 200 instructions a gRPC call on openraft's tonic service).
    #[inline]
    pub(crate) fn route(&self, route: &str) -> &'static RouteEntry {
        thread_local! {
            static FRONT: FrontCache<RouteEntry, 64> = const { [const { Cell::new(None) }; 64] };
            static BY_CONTENT: FrontCache<RouteEntry, 64> =
                const { [const { Cell::new(None) }; 64] };
        }
        front_cached(
            &FRONT,
            route,
            |e| &e.route,
            || {
                cached_at(
                    &BY_CONTENT,
                    content_slot(route),
                    route,
                    |e| &e.route,
                    || self.route_cached(route),
                )
            },
        )
    }

    #[cold]
    fn route_cached(&self, route: &str) -> &'static RouteEntry {
        thread_local! {
            static CACHE: std::cell::RefCell<HashMap<Box<str>, &'static RouteEntry>> =
                std::cell::RefCell::new(HashMap::new());
        }
        let cached = CACHE.try_with(|c| c.try_borrow().ok()?.get(route).copied());
        if let Ok(Some(e)) = cached {
            return e;
        }
        let e = self.route_shared(route);
        // A name folded past the cap is not remembered (the names could be unbounded): it
        // takes this slow path each time, and still lands in `(other)`.
        if e.folded && &*e.route != route {
            return e;
        }
        let _ = CACHE.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.insert(route.into(), e);
            }
        });
        e
    }

    /// Every route seen so far.
    pub(crate) fn route_entries(&self) -> Vec<&'static RouteEntry> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .collect()
    }

    fn route_shared(&self, route: &str) -> &'static RouteEntry {
        {
            let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = map.get(route) {
                return e;
            }
            if map.len() >= MAX_ROUTES
                && let Some(e) = map.get(OVERFLOW)
            {
                return e;
            }
        }
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        let mut map = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(route) {
            return e;
        }
        let (key, folded) = if map.len() >= MAX_ROUTES {
            (OVERFLOW, true)
        } else {
            (route, route == OVERFLOW)
        };
        map.entry(key.into()).or_insert_with(|| {
            let route: Arc<str> = Arc::from(key);
            Box::leak(Box::new(RouteEntry {
                task: crate::tasks::TaskName::new(&route, true),
                route,
                methods: Default::default(),
                grpc: OnceLock::new(),
                folded,
            }))
        })
    }
}

/// A thread's direct-mapped cache of process-lifetime entries named by strings.
pub(crate) type FrontCache<T, const N: usize> = [Cell<Option<&'static T>>; N];

/// `key`'s entry through `front`: one slot picked by the key's address and length, confirmed
/// by comparing the entry's own name with `key` (so a reused address is harmless); `slow`
/// on a miss, whose answer then takes the slot.
#[inline]
pub(crate) fn front_cached<T, const N: usize>(
    front: &'static std::thread::LocalKey<FrontCache<T, N>>,
    key: &str,
    name_of: impl Fn(&T) -> &str,
    slow: impl FnOnce() -> &'static T,
) -> &'static T {
    cached_at(
        front,
        (key.as_ptr() as usize >> 4) ^ key.len(),
        key,
        name_of,
        slow,
    )
}

/// The slot of `key` by its content, for [`cached_at`]: its length and its last 8 bytes
/// (gRPC method paths differ at their end), mixed.
#[inline]
fn content_slot(key: &str) -> usize {
    let b = key.as_bytes();
    let tail = &b[b.len().saturating_sub(8)..];
    let mut word = [0u8; 8];
    word[..tail.len()].copy_from_slice(tail);
    (u64::from_le_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize ^ b.len()
}

/// [`front_cached`] at slot `slot % N`.
#[inline]
fn cached_at<T, const N: usize>(
    front: &'static std::thread::LocalKey<FrontCache<T, N>>,
    slot: usize,
    key: &str,
    name_of: impl Fn(&T) -> &str,
    slow: impl FnOnce() -> &'static T,
) -> &'static T {
    let slot = slot % N;
    if let Ok(Some(e)) = front.try_with(|f| f[slot].get())
        && name_of(e) == key
    {
        return e;
    }
    let e = slow();
    let _ = front.try_with(|f| f[slot].set(Some(e)));
    e
}

/// The process-global metrics, created on first use.
#[inline]
pub(crate) fn global() -> &'static Metrics {
    // Read on every request: kept off the cache lines of statics written often.
    static M: crate::padded::Padded<OnceLock<Metrics>> = crate::padded::Padded(OnceLock::new());
    M.get_or_init(|| {
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        Metrics::new()
    })
}

/// Seconds since diag's metrics were first touched (at the latest, the first request or
/// scrape); [`process_uptime_seconds`] is the process's own uptime.
pub(crate) fn diag_uptime_seconds() -> f64 {
    global().started.elapsed().as_secs_f64()
}

/// Seconds since the process started (from `/proc`), or diag's own uptime where `/proc` is
/// not available.
pub fn process_uptime_seconds() -> f64 {
    process::read()
        .and_then(|p| p.uptime_seconds)
        .unwrap_or_else(diag_uptime_seconds)
}

/// Renders every metric in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail; an encoder error would be a bug in a collector.
    if let Err(e) =
        prometheus_client::encoding::prometheus_text::encode(&mut out, &global().registry)
    {
        out.push_str(&format!("# diag: encoding failed: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_indexes_follow_the_label_table() {
        for (i, name) in METHODS.iter().enumerate().take(9) {
            assert_eq!(method_index(name), i, "{name}");
        }
        assert_eq!(METHODS[method_index("BREW")], "OTHER");
        assert_eq!(METHODS[method_index("get")], "OTHER");
    }

    #[test]
    fn route_lookup_matches_by_content_not_address() {
        let a = global().route("/front/a");
        // Same content, another allocation: the same entry.
        let owned = String::from("/front/a");
        assert!(std::ptr::eq(global().route(&owned), a));
        drop(owned);
        // Another route, possibly at the address just freed: its own entry.
        let other = String::from("/front/b");
        let b = global().route(&other);
        assert!(!std::ptr::eq(a, b));
        assert_eq!(&*b.route, "/front/b");
        // Many routes through the 64 slots: each lookup still names its own route (fewer
        // than MAX_ROUTES: the unit tests share the process's routes).
        let names: Vec<String> = (0..100).map(|i| format!("/front/{i}")).collect();
        for _ in 0..2 {
            for n in &names {
                assert_eq!(&*global().route(n).route, n.as_str());
            }
        }
    }

    #[test]
    fn grpc_codes_are_keyed_and_labelled() {
        assert_eq!(grpc_code_label(grpc_code_key(Some("0"))), "0");
        assert_eq!(grpc_code_label(grpc_code_key(Some(" 16"))), "16");
        assert_eq!(grpc_code_label(grpc_code_key(Some("17"))), "invalid");
        assert_eq!(grpc_code_label(grpc_code_key(Some("x"))), "invalid");
        assert_eq!(grpc_code_label(grpc_code_key(None)), "missing");
    }

    #[test]
    fn route_records_show_up_in_the_exposition() {
        let e = global().route("/unit/{id}");
        e.record("GET", 200, 0.012);
        e.record("GET", 200, 0.003);
        e.record("GET", 500, 0.040);
        e.record("BREW", 418, 0.001);
        let text = render();
        assert!(
            text.contains(r#"http_requests_total{route="/unit/{id}",method="GET",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_requests_total{route="/unit/{id}",method="GET",status="500"} 1"#)
        );
        assert!(text.contains(r#"method="OTHER",status="418"} 1"#));
        assert!(text.contains(
            r#"http_request_duration_seconds_bucket{le="0.015",route="/unit/{id}",method="GET"} 2"#
        ) || text.contains(
            r#"http_request_duration_seconds_bucket{route="/unit/{id}",method="GET",le="0.015"} 2"#
        ), "{text}");
        assert!(
            text.contains(
                r#"http_request_duration_seconds_count{route="/unit/{id}",method="GET"} 3"#
            )
        );
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
    }
}
