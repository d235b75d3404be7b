//! `GET /debug/pprof/profile?seconds=N&frequency=HZ&format=pprof|svg|folded`: a CPU profile
//! of the whole process, Go's path and defaults.

use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::HttpError;
use super::query::Params;
use super::{blocking, pprof_response, run_blocking};
use crate::cpu::{self, Session};
use crate::profile::{self, FlameOptions, Profile};

/// The column folded stacks and flamegraphs are drawn from.
const DRAW_COLUMN: &str = "samples";

/// Serves one CPU profile. `max_seconds` caps `seconds=`; the session is dropped (and the
/// profiler freed) if the client goes away, since hyper then drops this future.
pub(crate) async fn profile(
    max_seconds: Option<u64>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let params = Params::parse(raw.as_deref(), &["seconds", "frequency", "format"])?;
    let max = max_seconds.unwrap_or_else(cpu::max_seconds).max(1);
    let seconds = params.u64_in("seconds", 1, max, cpu::DEFAULT_SECONDS.min(max))?;
    let frequency = params.u64_in(
        "frequency",
        1,
        u64::from(cpu::MAX_FREQUENCY),
        u64::from(cpu::DEFAULT_FREQUENCY),
    )? as u32;
    let format = params.one_of("format", &["pprof", "svg", "folded"], "pprof")?;

    let session = blocking("CPU profiler task", move || Session::start(frequency)).await??;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    run_blocking(move || match session.finish() {
        Ok(p) => respond(&p, format, seconds, frequency),
        Err(e) => HttpError::from(e).into_response(),
    })
    .await
}

fn respond(p: &Profile, format: &str, seconds: u64, frequency: u32) -> Response {
    match format {
        "svg" => {
            let opts = FlameOptions {
                title: Some(format!("CPU flame graph ({seconds} s at {frequency} Hz)")),
                sample_type: Some(DRAW_COLUMN.to_owned()),
                ..FlameOptions::default()
            };
            let mut svg = Vec::new();
            if p.total(0) == 0 {
                svg = empty_svg(seconds).into_bytes();
            } else if let Err(e) = profile::flamegraph(&cpu::thread_rooted(p), &opts, &mut svg) {
                return HttpError::from(e).into_response();
            }
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        "folded" => {
            let mut out = Vec::new();
            if let Err(e) =
                profile::write_folded(&cpu::thread_rooted(p), Some(DRAW_COLUMN), &mut out)
            {
                return HttpError::from(e).into_response();
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
        }
        _ => pprof_response(p, "profile.pb.gz"),
    }
}

/// A valid SVG saying there was nothing on CPU (a flamegraph of nothing cannot be drawn).
fn empty_svg(seconds: u64) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"600\" height=\"60\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"10\" y=\"35\">No CPU samples in {seconds} s: the process was idle.</text></svg>\n"
    )
}
