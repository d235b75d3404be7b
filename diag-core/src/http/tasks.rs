//! `/debug/tasks` (blocking events, event-loop lag, runtime and per-route task health) and
//! `/debug/pprof/block` (where time was blocked, as a pprof profile).

use std::fmt::Write as _;

use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::HttpError;
use super::query::Params;
use super::{pprof_response, run_blocking};
use crate::tasks;

/// `GET /debug/tasks[?debug=1][&symbolize=0]`: JSON by default, text with `debug=1`;
/// `symbolize=0` leaves the blocking stacks as addresses, with the mappings that name them
/// (`raw` in the JSON).
pub(crate) async fn tasks(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    let params = Params::parse(raw.as_deref(), &["debug", "symbolize"])?;
    let debug = params.u64_in("debug", 0, 1, 0)?;
    let naming = params.naming()?;
    run_blocking(move || {
        let view = crate::stack::resolve::with_naming(naming, tasks::view);
        if debug == 1 {
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                text(&view),
            )
                .into_response()
        } else {
            axum::Json(view).into_response()
        }
    })
    .await
}

/// `GET /debug/pprof/block[?symbolize=0]`: blocking events aggregated by stack, gzip'd pprof
/// with `contentions/count` and `delay/nanoseconds`.
pub(crate) async fn block_profile(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    let params = Params::parse(raw.as_deref(), &["symbolize"])?;
    let naming = params.naming()?;
    run_blocking(move || {
        let p = crate::stack::resolve::with_naming(naming, tasks::block_profile);
        pprof_response(&p, "block.pb.gz")
    })
    .await
}

/// `GET /debug/pprof/goroutine[?seconds=N&format=text|json]`: where every task of the
/// application's runtime awaits (tokio task dump, `taskdump` feature), waiting at most
/// `seconds` (default 5, at most 30). 501 with the reason when the build cannot dump, 409 while
/// another dump runs, 503 when the dump times out (a worker is blocked).
pub(crate) async fn goroutine(RawQuery(raw): RawQuery) -> Result<Response, HttpError> {
    use crate::tasks::dump;
    let params = Params::parse(raw.as_deref(), &["seconds", "format", "debug"])?;
    let secs = params.u64_in(
        "seconds",
        1,
        dump::MAX_TIMEOUT_SECS,
        dump::DEFAULT_TIMEOUT_SECS,
    )?;
    let format = params.one_of("format", &["text", "json"], "text")?;
    // Go's ?debug=1|2 ask for text; ours is always text unless format=json.
    params.u64_in("debug", 0, 2, 0)?;
    let tasks = dump::dump(std::time::Duration::from_secs(secs)).await?;
    if format == "json" {
        return Ok(axum::Json(serde_json::json!({ "tasks": tasks })).into_response());
    }
    let mut s = format!("tokio task dump: {} tasks\n", tasks.len());
    for t in &tasks {
        let _ = write!(s, "\ntask {}:\n{}\n", t.id, t.trace.trim_end());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], s).into_response())
}

/// The `?debug=1` rendering, from the same view the default answer carries.
fn text(v: &crate::wire::Tasks) -> String {
    let mut s = String::new();
    let lag = &v.lag;
    let _ = writeln!(
        s,
        // `{:?}`: floats as the JSON writes them (`0.0`, not `0`), as this text always showed.
        "lag: current {:?} ms, p50 {:?} ms, p99 {:?} ms, max {:?} ms over {} s",
        lag.current_ms, lag.p50_ms, lag.p99_ms, lag.max_ms, lag.window_secs
    );
    let rt = &v.runtime;
    let _ = writeln!(
        s,
        "runtime: {} workers, busy ratio {:.2}, {} alive tasks, global queue {}",
        rt.workers, rt.busy_ratio, rt.alive_tasks, rt.global_queue_depth
    );
    let wd = &v.watchdog;
    let _ = writeln!(
        s,
        "watchdog: threshold {} ms, {} events, stack capture: {:?}",
        wd.threshold_ms, wd.events_total, wd.stack_capture
    );
    s.push_str("\ntasks (worst first):\n");
    for t in &v.tasks {
        let _ = writeln!(
            s,
            "  {:<40} polls {:>8}  slow {:>6}  mean {:.1} us",
            t.name, t.polls, t.slow_polls, t.mean_poll_us
        );
    }
    s.push_str("\nblocking events (newest first):\n");
    for e in &v.blocking_events {
        let _ = writeln!(
            s,
            "  {} on {}: {} ms{}",
            e.name,
            e.thread,
            e.duration_ms,
            if e.ongoing { " (still blocked)" } else { "" }
        );
        for f in &e.stack {
            let _ = writeln!(s, "      {f}");
        }
    }
    s
}
