//! The human view of a service's `/debug/tasks`: event-loop lag, runtime busy ratio, the
//! worst routes by slow polls and the recent blocking events with their stacks (the user's
//! frames first, runtime and framework frames folded). `diag tasks` prints it; `diag report`
//! puts it in its page.

use std::io::{self, Write};

use diag_core::wire::{NamedRuntime, Tasks};

use crate::units;

/// Blocking events shown in the text view.
const MAX_EVENTS_SHOWN: usize = 5;
/// Routes shown in the text view.
const MAX_ROUTES_SHOWN: usize = 10;
/// Crates whose frames are folded as runtime in addition to `profile::sites`'s list.
const FRAMEWORK_CRATES: &[&str] = &[
    "tokio",
    "tokio_metrics",
    "axum",
    "axum_core",
    "hyper",
    "hyper_util",
    "tower",
    "tower_service",
    "futures_util",
    "futures_core",
    "pin_project_lite",
];

/// True for a frame of the runtime or of a framework crate (tokio, hyper, axum, ...).
pub(crate) fn is_framework(function: &str) -> bool {
    let root = diag_core::profile::sites::crate_root(function);
    diag_core::profile::sites::is_runtime(function)
        || FRAMEWORK_CRATES.contains(&root)
        || !function.contains("::")
}

/// Writes the human view of one `/debug/tasks` answer.
pub(crate) fn render(v: &Tasks, w: &mut impl Write) -> io::Result<()> {
    let lag = &v.lag;
    writeln!(
        w,
        "event-loop lag  current {}   p50 {}   p99 {}   max {}   (last {} s{})",
        units::millis(lag.current_ms),
        units::millis(lag.p50_ms),
        units::millis(lag.p99_ms),
        units::millis(lag.max_ms),
        lag.window_secs,
        if lag.running {
            ""
        } else {
            ", probe not running"
        }
    )?;
    if let Some(why) = &v.not_watching {
        writeln!(w, "runtime         not watched: {why}")?;
    }
    let rt = &v.runtime;
    if rt.watching {
        writeln!(
            w,
            "runtime         {} workers   busy {}   {} alive tasks   global queue {}{}",
            rt.workers,
            units::whole_percent(rt.busy_ratio * 100.0),
            rt.alive_tasks,
            rt.global_queue_depth,
            together(&v.runtimes)
        )?;
    }
    if v.runtimes.len() > 1 {
        for r in &v.runtimes {
            writeln!(
                w,
                "  {:<30} {} workers   busy {:>4}   lag p99 {}   max {}{}",
                r.name,
                r.runtime.workers,
                units::whole_percent(r.runtime.busy_ratio * 100.0),
                units::millis(r.lag.p99_ms),
                units::millis(r.lag.max_ms),
                if serving_apart(&v.runtimes) && !r.serves_requests {
                    "   (no requests: not in the sum)"
                } else {
                    ""
                }
            )?;
        }
    }
    let wd = &v.watchdog;
    writeln!(
        w,
        "watchdog        threshold {}   {} blocking events   stack capture: {}",
        units::millis(wd.threshold_ms as f64),
        wd.events_total,
        if wd.stack_capture.is_empty() {
            "?"
        } else {
            &wd.stack_capture
        }
    )?;
    if !v.tasks.is_empty() {
        writeln!(
            w,
            "\nroutes and tasks, most slow polls first (COUNTED: routes count a random 1 in N requests, DIAG_TASK_SAMPLE)"
        )?;
        let mut t = crate::table::Table::new(&[
            ("NAME", crate::table::Align::Left),
            ("POLLS", crate::table::Align::Right),
            ("SLOW", crate::table::Align::Right),
            ("SLOW %", crate::table::Align::Right),
            ("MEAN POLL", crate::table::Align::Right),
            ("MEAN SLOW", crate::table::Align::Right),
            ("COUNTED", crate::table::Align::Right),
        ]);
        for task in v.tasks.iter().take(MAX_ROUTES_SHOWN) {
            t.row(vec![
                task.name.clone(),
                task.polls.to_string(),
                task.slow_polls.to_string(),
                format!("{:.1}", task.slow_poll_ratio * 100.0),
                units::nanos((task.mean_poll_us * 1e3).round() as i64),
                units::nanos((task.mean_slow_poll_us * 1e3).round() as i64),
                if task.sampled_1_in > 1 {
                    format!("1 in {}", task.sampled_1_in)
                } else {
                    "all".to_owned()
                },
            ]);
        }
        t.write(w)?;
    }
    if v.blocking_events.is_empty() {
        writeln!(w, "\nno blocking events")?;
        return Ok(());
    }
    writeln!(w, "\nrecent blocking events, newest first")?;
    for e in v.blocking_events.iter().take(MAX_EVENTS_SHOWN) {
        writeln!(
            w,
            "  {}  blocked {} on {}{}",
            if e.name.is_empty() { "?" } else { &e.name },
            units::millis(e.duration_ms as f64),
            if e.thread.is_empty() { "?" } else { &e.thread },
            if e.ongoing { " (still blocked)" } else { "" }
        )?;
        let frames: Vec<&str> = e.stack.iter().map(String::as_str).collect();
        write_stack(&frames, w)?;
    }
    Ok(())
}

/// The stack innermost first, runs of runtime/framework frames folded into one line.
fn write_stack(frames: &[&str], w: &mut impl Write) -> io::Result<()> {
    let mut folded = 0usize;
    let mut user_shown = 0usize;
    for f in frames {
        let function = f.split(" (").next().unwrap_or(f);
        if is_framework(function) {
            folded += 1;
            continue;
        }
        if folded > 0 {
            writeln!(w, "      … {folded} runtime frames")?;
            folded = 0;
        }
        writeln!(w, "      {f}")?;
        user_shown += 1;
    }
    if folded > 0 {
        writeln!(w, "      … {folded} runtime frames")?;
    }
    if user_shown == 0 && frames.is_empty() {
        writeln!(w, "      (no stack captured)")?;
    }
    Ok(())
}

/// Whether some watched runtimes served requests and others did not (then only the former are
/// summed by the service).
fn serving_apart(runtimes: &[NamedRuntime]) -> bool {
    runtimes.iter().any(|r| r.serves_requests) && runtimes.iter().any(|r| !r.serves_requests)
}

/// What the summed runtime line covers, when it is more than one runtime.
fn together(runtimes: &[NamedRuntime]) -> String {
    if serving_apart(runtimes) {
        let n = runtimes.iter().filter(|r| r.serves_requests).count();
        let other = runtimes.len() - n;
        let what = if n == 1 { "runtime" } else { "runtimes" };
        return format!("   ({n} {what} serving requests; {other} more watched, not summed)");
    }
    match runtimes.len() {
        0 | 1 => String::new(),
        n => format!("   ({n} runtimes together)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_why_no_runtime_is_watched_and_lists_several() {
        let v: Tasks = serde_json::from_value(serde_json::json!({
            "not_watching": "no tokio runtime is watched yet: add diag_core::watch_runtime(..)",
        }))
        .unwrap();
        let mut out = Vec::new();
        render(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("runtime         not watched: no tokio runtime"),
            "{text}"
        );
        assert!(text.contains("watch_runtime"), "{text}");
        let v: Tasks = serde_json::from_value(serde_json::json!({
            "runtime": {"watching": true, "workers": 2},
            "runtimes": [
                {"name": "actix-rt|arbiter:0", "runtime": {"watching": true, "workers": 1},
                 "lag": {"p99_ms": 1.5, "max_ms": 2.0}},
                {"name": "actix-rt|arbiter:1", "runtime": {"watching": true, "workers": 1},
                 "lag": {"p99_ms": 300.0, "max_ms": 301.0}}
            ]
        }))
        .unwrap();
        let mut out = Vec::new();
        render(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("2 workers") && text.contains("(2 runtimes together)"),
            "{text}"
        );
        assert!(
            text.contains("actix-rt|arbiter:1") && text.contains("lag p99 300.0ms"),
            "{text}"
        );
        assert!(!text.contains("not watched"), "{text}");

        // actix's System runtime beside two workers that served requests: listed, not summed.
        let v: Tasks = serde_json::from_value(serde_json::json!({
            "runtime": {"watching": true, "workers": 2},
            "runtimes": [
                {"name": "runtime", "runtime": {"watching": true, "workers": 1}},
                {"name": "actix-rt|system:0|arbiter:0", "serves_requests": true,
                 "runtime": {"watching": true, "workers": 1}},
                {"name": "actix-rt|system:0|arbiter:1", "serves_requests": true,
                 "runtime": {"watching": true, "workers": 1}}
            ]
        }))
        .unwrap();
        let mut out = Vec::new();
        render(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("2 workers")
                && text.contains("(2 runtimes serving requests; 1 more watched, not summed)"),
            "{text}"
        );
        let system = text.lines().find(|l| l.contains("  runtime ")).unwrap();
        assert!(system.contains("no requests: not in the sum"), "{text}");
        assert_eq!(text.matches("not in the sum").count(), 1, "{text}");
    }

    #[test]
    fn folds_runtime_frames_and_keeps_user_frames() {
        let v: Tasks = serde_json::from_value(serde_json::json!({
            "lag": {"current_ms": 1.0, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0, "window_secs": 10, "running": true},
            "runtime": {"watching": false},
            "watchdog": {"threshold_ms": 100, "events_total": 1, "stack_capture": "signal"},
            "tasks": [],
            "blocking_events": [{
                "name": "/sleep", "duration_ms": 300, "thread": "w", "ongoing": false,
                "stack": ["clock_nanosleep", "std::thread::sleep (x.rs:1)",
                          "app::slow_io (app.rs:3)", "tokio::runtime::a", "tokio::runtime::b"]
            }]
        }))
        .unwrap();
        let mut out = Vec::new();
        render(&v, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("/sleep  blocked 300.0ms"), "{s}");
        assert!(s.contains("app::slow_io (app.rs:3)"), "{s}");
        assert!(s.contains("… 2 runtime frames"), "{s}");
        assert!(!s.contains("tokio::runtime::a"), "{s}");
    }
}
