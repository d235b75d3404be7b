//! pprof-rs's unresolved report (raw return addresses per thread) -> the [`Profile`] model:
//! addresses resolved here, off the signal handler, with inlined frames expanded and the
//! profiler's own frames removed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pprof::UnresolvedReport;

use super::{BLOCKLIST, THREAD_LABEL};
use crate::profile::{Frame, Profile, Sample, ValueType};

/// The signal handler's symbol (`#[no_mangle]` in pprof-rs).
const HANDLER: &str = "perf_signal_handler";

/// Builds the CPU profile of `report`, sampled at `frequency` Hz from `started` for `duration`.
pub(crate) fn to_profile(
    report: &UnresolvedReport,
    frequency: u32,
    started: SystemTime,
    duration: Duration,
) -> Profile {
    let period = 1_000_000_000i64 / i64::from(frequency.max(1));
    let mut resolver = Resolver::default();
    let mut samples = Vec::with_capacity(report.data.len());
    for (frames, &count) in &report.data {
        if count <= 0 {
            continue;
        }
        let mut stack = Vec::with_capacity(frames.frames.len() * 2);
        for f in &frames.frames {
            // The unwinder reports the end of the stack as a zero address.
            if !f.ip().is_null() {
                stack.extend(resolver.frames(f).iter().cloned());
            }
        }
        strip_machinery(&mut stack);
        let len = frames.thread_name_length.min(frames.thread_name.len());
        let name = String::from_utf8_lossy(&frames.thread_name[..len]).into_owned();
        let thread = if name.is_empty() {
            format!("thread-{}", frames.thread_id)
        } else {
            name
        };
        let count = count as i64;
        samples.push(Sample {
            stack,
            values: vec![count, count.saturating_mul(period)],
            labels: vec![(THREAD_LABEL.to_owned(), thread)],
        });
    }
    // Deterministic order: heaviest first, then by thread and stack.
    samples.sort_by(|a, b| {
        b.values[0]
            .cmp(&a.values[0])
            .then_with(|| a.labels.cmp(&b.labels))
            .then_with(|| a.stack.cmp(&b.stack))
    });
    Profile {
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        samples,
        period_type: Some(ValueType::new("cpu", "nanoseconds")),
        mappings: crate::stack::symbols::mappings(),
        period,
        time_nanos: started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0),
        duration_nanos: duration.as_nanos().min(i64::MAX as u128) as i64,
        default_sample_type: Some("cpu".to_owned()),
        comments: vec![
            format!("frequency_hz={frequency}"),
            format!(
                "dropped: samples whose interrupted code was in {}",
                BLOCKLIST.join(", ")
            ),
        ],
    }
}

/// Removes the profiler's own frames from the top of a stack: the unwinder, the signal
/// handler and the kernel's signal trampoline, leaving the interrupted function innermost.
fn strip_machinery(stack: &mut Vec<Frame>) {
    if let Some(i) = stack.iter().rposition(|f| is_handler(&f.function)) {
        // The frame after the handler is the kernel's signal trampoline (`__restore_rt`,
        // often unnamed since libc does not export it): always drop it, as pprof-rs does.
        let cut = (i + 2).min(stack.len());
        stack.drain(..cut);
        return;
    }
    // Unsymbolized handler (stripped binary): drop what is recognisably the unwinder.
    let keep = stack
        .iter()
        .position(|f| !is_machinery(&f.function))
        .unwrap_or(stack.len());
    stack.drain(..keep);
}

/// pprof-rs's signal handler, named with its path (`pprof::profiler::perf_signal_handler`, full
/// debug info) or without (`perf_signal_handler`, line tables only).
fn is_handler(function: &str) -> bool {
    function == HANDLER
        || function
            .strip_suffix(HANDLER)
            .is_some_and(|path| path.ends_with("::"))
}

fn is_trampoline(function: &str) -> bool {
    function.contains("restore_rt") || function.contains("sigreturn")
}

fn is_machinery(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("backtrace::")
        || f.starts_with("pprof::")
        || f.starts_with("_Unwind_")
        || f.starts_with("smallvec::")
        || is_trampoline(f)
}

/// Resolves frames, caching by instruction address (hot loops repeat the same few).
#[derive(Default)]
struct Resolver {
    cache: HashMap<usize, Vec<Frame>>,
}

impl Resolver {
    fn frames(&mut self, frame: &backtrace::Frame) -> &[Frame] {
        let ip = frame.ip() as usize;
        self.cache.entry(ip).or_insert_with(|| {
            crate::stack::symbols::resolve_with(ip, |cb| backtrace::resolve_frame(frame, cb))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(functions: &[&str]) -> Vec<Frame> {
        functions.iter().copied().map(Frame::named).collect()
    }

    fn names(stack: &[Frame]) -> Vec<&str> {
        stack.iter().map(|f| f.function.as_str()).collect()
    }

    #[test]
    fn machinery_is_stripped() {
        let mut s = stack(&[
            "backtrace::backtrace::trace_unsynchronized",
            "pprof::profiler::perf_signal_handler::{{closure}}",
            HANDLER,
            "0x7f9c42777050",
            "myapp::spin",
            "myapp::main",
        ]);
        strip_machinery(&mut s);
        assert_eq!(names(&s), ["myapp::spin", "myapp::main"]);

        let mut s = stack(&["backtrace::trace", "_Unwind_Backtrace", "myapp::spin"]);
        strip_machinery(&mut s);
        assert_eq!(names(&s), ["myapp::spin"]);

        let mut s = vec![Frame::named("myapp::spin")];
        strip_machinery(&mut s);
        assert_eq!(names(&s), ["myapp::spin"]);

        // The handler with its path (release builds with linkage names): the unnamed
        // trampoline after it goes too.
        let mut s = stack(&[
            "backtrace::backtrace::trace_unsynchronized",
            "pprof::profiler::perf_signal_handler",
            "0x7f99e5843050",
            "core::iter::range::spec_next",
            "myapp::burn",
        ]);
        strip_machinery(&mut s);
        assert_eq!(names(&s), ["core::iter::range::spec_next", "myapp::burn"]);
        assert!(!is_handler("myapp::not_perf_signal_handler"));
    }
}
