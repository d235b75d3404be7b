//! What the sampler gathered (raw addresses per thread and stack) -> the [`Profile`] model:
//! addresses resolved here, after the sampler stopped, with inlined frames expanded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::THREAD_LABEL;
use super::sampler::Gathered;
use crate::profile::{Frame, Profile, Sample, ValueType};

/// The outermost frame of a sample whose stack could not be unwound to its root.
pub const TRUNCATED_FRAME: &str = "[truncated]";

/// Builds the CPU profile of `gathered`, sampled at `frequency` Hz from `started` for
/// `duration`.
pub(crate) fn to_profile(
    gathered: &Gathered,
    frequency: u32,
    started: SystemTime,
    duration: Duration,
) -> Profile {
    let period = 1_000_000_000i64 / i64::from(frequency.max(1));
    let mut samples = Vec::with_capacity(gathered.stacks.len());
    let (mut kept, mut periods) = (0u64, 0u64);
    // The interrupted instruction is passed one past itself: the symbolizer takes return
    // addresses and looks each up at the byte before.
    let as_return: Vec<Vec<usize>> = gathered
        .stacks
        .keys()
        .map(|(_, _, addrs, _)| leaf_as_return(addrs))
        .collect();
    let refs: Vec<&[usize]> = as_return.iter().map(Vec::as_slice).collect();
    let mut resolved = crate::stack::symbolize_stacks_whole(&refs).into_iter();
    for ((thread, poll, _, complete), &(count, weight)) in &gathered.stacks {
        let mut stack = resolved.next().unwrap_or_default();
        if !complete {
            stack.push(Frame::named(TRUNCATED_FRAME));
        }
        kept += count;
        periods += weight;
        let weight = i64::try_from(weight).unwrap_or(i64::MAX);
        let mut labels = vec![(THREAD_LABEL.to_owned(), thread.clone())];
        labels.extend(poll.and_then(poll_label));
        samples.push(Sample {
            stack,
            values: vec![weight, weight.saturating_mul(period)],
            labels,
        });
    }
    // Deterministic order: heaviest first, then by thread and stack.
    samples.sort_by(|a, b| {
        b.values[0]
            .cmp(&a.values[0])
            .then_with(|| a.labels.cmp(&b.labels))
            .then_with(|| a.stack.cmp(&b.stack))
    });
    let profiled = periods.saturating_mul(period as u64);
    let cpu = gathered.process_cpu_nanos;
    let mut comments = vec![
        format!("frequency_hz={frequency}"),
        format!(
            "samples: {kept} kept ({} periods), {} truncated (stack unwound in part, ending in \
             {TRUNCATED_FRAME}), {} with the interrupted instruction only, {} periods lost \
             (sample buffer full or distinct-stack cap)",
            periods, gathered.truncated, gathered.leaf_only, gathered.lost
        ),
        format!(
            "threads sampled: {} (per-thread CPU-time timers), {} timers not armed; the \
             sampler's own thread used {} ms of CPU",
            gathered.threads,
            gathered.timer_errors,
            gathered.sampler_cpu_nanos / 1_000_000
        ),
    ];
    // The application's crates, so the CLI attributes CPU sites as it does heap ones.
    comments.extend(crate::stack::process::app_crates_comment());
    comments.extend(crate::stack::resolve::raw_comment(false));
    comments.extend(crate::heap::labels::folded_names_comment());
    if cpu > 0 {
        comments.push(format!(
            "process CPU in the window (utime+stime): {}; the profile holds {} ({})",
            crate::units::nanos(cpu as i64),
            crate::units::nanos(profiled as i64),
            crate::units::whole_percent(profiled as f64 * 100.0 / cpu as f64)
        ));
    }
    Profile {
        // "samples" counts sampling periods (a late timer's sample weighs its overruns too),
        // so samples x period = CPU time, as pprof expects.
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        samples,
        period_type: Some(ValueType::new("cpu", "nanoseconds")),
        mappings: crate::stack::process::mappings(),
        period,
        time_nanos: started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0),
        duration_nanos: duration.as_nanos().min(i64::MAX as u128) as i64,
        default_sample_type: Some("cpu".to_owned()),
        comments,
    }
}

/// The `route` or `task` label of a poll id.
fn poll_label(id: u32) -> Option<(String, String)> {
    #[cfg(feature = "server")]
    {
        crate::tasks::poll_label(id).map(|(k, v)| (k.to_owned(), v.to_string()))
    }
    #[cfg(not(feature = "server"))]
    {
        let _ = id;
        None
    }
}

/// A sampled stack with its interrupted instruction (`addrs[0]`) moved one byte on, so that
/// every address reads as a return address.
fn leaf_as_return(addrs: &[usize]) -> Vec<usize> {
    let mut v = addrs.to_vec();
    if let Some(leaf) = v.first_mut() {
        *leaf = leaf.wrapping_add(1);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_is_looked_up_at_itself() {
        assert_eq!(leaf_as_return(&[0x10, 0x20, 0x30]), [0x11, 0x20, 0x30]);
        assert_eq!(leaf_as_return(&[]), Vec::<usize>::new());
    }

    #[test]
    fn values_are_periods_and_cpu_time() {
        let mut g = Gathered {
            process_cpu_nanos: 40_000_000,
            ..Gathered::default()
        };
        g.stacks
            .insert(("worker".into(), None, vec![], false), (2, 3));
        let p = to_profile(&g, 100, SystemTime::now(), Duration::from_secs(1));
        assert_eq!(p.samples[0].values, [3, 30_000_000]);
        assert_eq!(p.samples[0].stack, [Frame::named(TRUNCATED_FRAME)]);
        assert_eq!(
            p.samples[0].labels[0],
            (THREAD_LABEL.into(), "worker".into())
        );
        assert!(
            p.comments.iter().any(|c| c.contains("holds 30.0ms (75%)")),
            "{:?}",
            p.comments
        );
    }
}
