//! `/debug/pprof/heap`, `/debug/pprof/allocs` and the heap-sampler controls.

use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::HttpError;
use super::limits;
use super::query::Params;
use super::run_blocking;
use crate::heap;
use crate::profile::{go_text, pprof_codec};

/// Serves a heap profile with `default_type` as its default column.
async fn serve_profile(
    raw: Option<String>,
    default_type: &'static str,
) -> Result<Response, HttpError> {
    let params = Params::parse(raw.as_deref(), &["debug", "gc"])?;
    let debug = params.u64_in("debug", 0, 1, 0)?;
    // Go clients send gc=1; there is no collector to run, accept and ignore it.
    params.u64_in("gc", 0, 1, 0)?;
    if !heap::is_installed() {
        return Err(HttpError::new(
            StatusCode::NOT_IMPLEMENTED,
            "heap profiling needs DiagAlloc as the global allocator: \
             #[global_allocator] static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();",
        ));
    }
    let pass = limits::SNAPSHOTS.enter()?;
    run_blocking(move || {
        let _pass = pass;
        let profile = heap::profile(default_type);
        if debug == 1 {
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                go_text::heap_text(&profile),
            )
                .into_response()
        } else {
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"heap.pb.gz\"",
                    ),
                ],
                pprof_codec::encode_gzip(&profile),
            )
                .into_response()
        }
    })
    .await
}

/// `GET /debug/pprof/heap[?debug=1]`: in-use space by default.
pub(crate) async fn heap_profile(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    serve_profile(raw, heap::INUSE_SPACE).await
}

/// `GET /debug/pprof/allocs[?debug=1]`: the same profile, allocated space by default.
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
