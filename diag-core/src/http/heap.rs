//! `/debug/pprof/heap`, `/debug/pprof/allocs` and the heap-sampler controls.

use std::time::{Duration, Instant};

use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::HttpError;
use super::limits;
use super::query::Params;
use super::{blocking, pprof_response, run_blocking};
use crate::heap;
use crate::profile::{self, Profile, go_text};
use crate::stack::resolve::{Naming, with_naming};

/// Serves a heap profile with `default_type` as its default column.
async fn serve_profile(
    raw: Option<String>,
    default_type: &'static str,
) -> Result<Response, HttpError> {
    let params = Params::parse(
        raw.as_deref(),
        &["debug", "gc", "at", "seconds", "symbolize"],
    )?;
    let naming = params.naming()?;
    let debug = params.u64_in("debug", 0, 1, 0)?;
    // Go clients send gc=1; there is no collector to run, accept and ignore it.
    params.u64_in("gc", 0, 1, 0)?;
    let at = params.u64_in("at", 1, i64::MAX as u64, 0)? as i64;
    let seconds = params.u64_in("seconds", 1, crate::cpu::max_seconds().max(1), 0)?;
    if seconds > 0 && (debug != 0 || at != 0) {
        return Err(HttpError::bad_request(
            "seconds= (a delta profile) cannot be combined with debug= or at=",
        ));
    }
    if !heap::is_installed() {
        return Err(HttpError::new(
            StatusCode::NOT_IMPLEMENTED,
            "heap profiling needs DiagAlloc as the global allocator: \
             #[global_allocator] static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();",
        ));
    }
    if seconds > 0 {
        return serve_delta(default_type, seconds, naming).await;
    }
    let pass = if at == 0 {
        limits::SNAPSHOTS.enter()?
    } else {
        limits::HISTORY_PROFILES.enter()?
    };
    run_blocking(move || {
        let _pass = pass;
        let profile = if at == 0 {
            with_naming(naming, || heap::profile(default_type))
        } else {
            match with_naming(naming, || heap::profile_at(at, default_type)) {
                Some(p) => p,
                None => return HttpError::new(StatusCode::GONE, no_point(at)).into_response(),
            }
        };
        if debug == 1 {
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                go_text::heap_text(&profile),
            )
                .into_response()
        } else {
            pprof_response(&profile, "heap.pb.gz")
        }
    })
    .await
}

/// `?seconds=N`, as Go serves it: a snapshot now, another `N` seconds later, and their
/// difference stack by stack (`alloc_*`: what was allocated in between; `inuse_*`: what of it
/// is still held, negative where memory was given back), as pprof.
async fn serve_delta(
    default_type: &'static str,
    seconds: u64,
    naming: Option<Naming>,
) -> Result<Response, HttpError> {
    let _one = limits::HEAP_DELTAS.enter()?;
    let (before, read_at) = gated_profile(default_type, naming).await?;
    // The window runs from when the first profile's counters were read, not from when its
    // stacks were named (seconds, cold, in a big binary).
    tokio::time::sleep_until(read_at + Duration::from_secs(seconds)).await;
    let (after, _) = gated_profile(default_type, naming).await?;
    run_blocking(move || match profile::delta(&before, &after) {
        Ok(d) => pprof_response(&d, "heap-delta.pb.gz"),
        // The sample types changed in between (they never do within one process).
        Err(e) => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    })
    .await
}

/// A heap snapshot through the snapshot gate, waiting up to [`GATE_WAIT`] for a snapshot
/// another client is taking (or the gate's minimum interval) rather than failing.
/// Also returns when its counters were read.
async fn gated_profile(
    default_type: &'static str,
    naming: Option<Naming>,
) -> Result<(Profile, tokio::time::Instant), HttpError> {
    let deadline = Instant::now() + GATE_WAIT;
    let pass = loop {
        match limits::SNAPSHOTS.enter() {
            Ok(pass) => break pass,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    };
    blocking("heap snapshot task", move || {
        let _pass = pass;
        let read_at = tokio::time::Instant::now();
        (with_naming(naming, || heap::profile(default_type)), read_at)
    })
    .await
}

/// How long a delta profile waits for the snapshot gate at each end.
const GATE_WAIT: Duration = Duration::from_secs(5);

/// Why `?at=T` found nothing, with what the history does hold.
fn no_point(at: i64) -> String {
    let points = heap::history_points();
    match (points.first(), points.last()) {
        (Some(first), Some(last)) => format!(
            "no heap history point at {at}: the history holds {} points, from {} to {} \
             (GET /debug/heap/history lists their times)",
            points.len(),
            first.time_nanos,
            last.time_nanos
        ),
        _ => format!(
            "no heap history point at {at}: the history is empty (off, or nothing recorded yet)"
        ),
    }
}

/// `GET /debug/heap/history`: the history's settings, size and own cost, and its points
/// (time, estimated in-use and exact live bytes and objects), JSON.
pub(crate) async fn history(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    Params::parse(raw.as_deref(), &[])?;
    run_blocking(|| {
        axum::Json(crate::wire::HeapHistory::new(
            heap::history_stats(),
            heap::history_points(),
        ))
        .into_response()
    })
    .await
}

/// `GET /debug/leaks`: the leak alarm's settings, latest check and suspects, JSON
/// ([`crate::wire::Leaks`]).
pub(crate) async fn leaks(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    Params::parse(raw.as_deref(), &[])?;
    run_blocking(|| axum::Json(heap::leaks()).into_response()).await
}

/// `POST /debug/heap/history?interval_ms=N[&points=M]`: changes the heap history's settings
/// at run time (`interval_ms=0` turns it off and clears it); a point is recorded at once.
pub(crate) async fn set_history(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    let params = Params::parse(raw.as_deref(), &["interval_ms", "points"])?;
    let ms = params.u64_in("interval_ms", 0, 86_400_000, u64::MAX)?;
    if ms == u64::MAX {
        return Err(HttpError::bad_request(
            "query parameter interval_ms=N is required (0 turns the history off)",
        ));
    }
    let min = heap::MIN_HISTORY_INTERVAL.as_millis() as u64;
    if ms != 0 && ms < min {
        return Err(HttpError::bad_request(format!(
            "query parameter interval_ms={ms} must be 0 (off) or at least {min}"
        )));
    }
    let points = params.u64_in(
        "points",
        2,
        heap::MAX_HISTORY_POINTS as u64,
        heap::history_max_points() as u64,
    )? as usize;
    heap::set_history(std::time::Duration::from_millis(ms), points);
    Ok(if ms == 0 {
        "heap history off and cleared\n".to_owned()
    } else {
        format!("heap history: a point every {ms} ms, the last {points} kept\n")
    }
    .into_response())
}

/// `GET /debug/pprof/heap[?debug=1][&at=T][?seconds=N]`: in-use space by default; with `at`,
/// as the heap history recorded it at time `T` (nanoseconds, as `/debug/heap/history` lists);
/// with `seconds`, the change over the next `N` seconds (Go's delta profile).
pub(crate) async fn heap_profile(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    serve_profile(raw, heap::INUSE_SPACE).await
}

/// `GET /debug/pprof/allocs[?debug=1][?seconds=N]`: the same profile, allocated space by
/// default; with `seconds`, what was allocated over the next `N` seconds.
pub(crate) async fn allocs_profile(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    serve_profile(raw, heap::ALLOC_SPACE).await
}

/// `GET /debug/heap/stats`: exact counters and sampler state as JSON.
pub(crate) async fn stats(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    Params::parse(raw.as_deref(), &[])?;
    Ok(axum::Json(heap::stats()).into_response())
}

/// `POST /debug/heap/rate?bytes=N`: changes the sample rate at run time (0 off, 1 exact).
pub(crate) async fn set_rate(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    let params = Params::parse(raw.as_deref(), &["bytes"])?;
    let bytes = params.u64_in("bytes", 0, 1 << 40, u64::MAX)?;
    if bytes == u64::MAX {
        return Err(HttpError::bad_request(
            "query parameter bytes=N is required",
        ));
    }
    heap::set_sample_rate(bytes);
    Ok(format!("sample rate set to {bytes} bytes\n").into_response())
}
