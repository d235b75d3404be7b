//! `GET /debug/pprof/profile?seconds=N&frequency=HZ&format=pprof|svg|folded&all_frames=0|1&symbolize=0|1`:
//! a CPU profile of the whole process, Go's path and defaults. The SVG collapses runtime and
//! dependency frames unless `all_frames=1`; `symbolize=0` serves addresses and mappings only.

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
    let params = Params::parse(
        raw.as_deref(),
        &["seconds", "frequency", "format", "all_frames", "symbolize"],
    )?;
    let naming = params.naming()?;
    let max = max_seconds.unwrap_or_else(cpu::max_seconds).max(1);
    let seconds = params.u64_in("seconds", 1, max, cpu::DEFAULT_SECONDS.min(max))?;
    let frequency = params.u64_in(
        "frequency",
        1,
        u64::from(cpu::MAX_FREQUENCY),
        u64::from(cpu::DEFAULT_FREQUENCY),
    )? as u32;
    let format = params.one_of("format", &["pprof", "svg", "folded"], "pprof")?;
    let all_frames = params.one_of("all_frames", &["0", "1"], "0")? == "1";

    let session = blocking("CPU profiler task", move || Session::start(frequency)).await??;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    run_blocking(
        move || match crate::stack::resolve::with_naming(naming, || session.finish()) {
            Ok(p) => respond(&p, format, seconds, frequency, all_frames),
            Err(e) => HttpError::from(e).into_response(),
        },
    )
    .await
}

fn respond(p: &Profile, format: &str, seconds: u64, frequency: u32, all_frames: bool) -> Response {
    match format {
        "svg" => {
            let opts = FlameOptions {
                title: Some(format!("CPU flame graph ({seconds} s at {frequency} Hz)")),
                sample_type: Some(DRAW_COLUMN.to_owned()),
                collapse: !all_frames,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Frame, Sample, ValueType};

    async fn svg(all_frames: bool) -> String {
        let p = Profile {
            sample_types: vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            samples: vec![Sample {
                // The application's frame has its source file: the evidence that makes
                // `myapp` the application and tokio a dependency.
                stack: vec![
                    Frame {
                        file: Some("src/hot.rs".into()),
                        line: 3,
                        ..Frame::named("myapp::hot")
                    },
                    Frame::named("tokio::runtime::task::raw::poll"),
                    Frame::named("std::rt::lang_start"),
                ],
                values: vec![10, 10_000_000],
                labels: vec![("thread".into(), "worker".into())],
            }],
            ..Profile::default()
        };
        let r = respond(&p, "svg", 1, 99, all_frames);
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn svg_collapses_plumbing_unless_all_frames() {
        let collapsed = svg(false).await;
        assert!(collapsed.contains("myapp::hot"));
        assert!(!collapsed.contains("tokio::runtime::task::raw::poll"));
        let all = svg(true).await;
        assert!(all.contains("myapp::hot"));
        assert!(all.contains("tokio::runtime::task::raw::poll"));
    }
}
