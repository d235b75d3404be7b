//! Builds a heap [`Profile`] from the live stack table: Go's four sample types, symbolized.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ages::LiveAges;
use super::alloc::{MAX_TRACKED, TRACKED};
use super::stacks::{self, FP};
use super::{config, history, labels, region};
use crate::alloc_state::{self, DROPPED_BYTES, DROPPED_SAMPLES, DROPPED_STACKS, IgnoreAllocs};
use crate::profile::{Frame, Profile, Sample, UPTIME_COMMENT, ValueType};
use crate::wire::HeapStats;

/// Current exact counters and sampler state.
pub fn stats() -> HeapStats {
    let t = alloc_state::totals();
    let own = alloc_state::own_totals();
    HeapStats {
        allocated_bytes: t.alloc_bytes,
        allocated_objects: t.alloc_objects,
        freed_bytes: t.free_bytes,
        freed_objects: t.free_objects,
        live_bytes: t.alloc_bytes.saturating_sub(t.free_bytes),
        live_objects: t.alloc_objects.saturating_sub(t.free_objects),
        self_live_bytes: own.alloc_bytes.saturating_sub(own.free_bytes),
        symbolizer_cache_bytes: crate::stack::resolve::usage().0 as u64,
        sample_rate: config::sample_rate(),
        tracked_blocks: TRACKED.load(Relaxed) as u64,
        max_tracked_blocks: MAX_TRACKED.load(Relaxed) as u64,
        stacks: stacks::len() as u64,
        dropped_samples: DROPPED_SAMPLES.load(Relaxed),
        dropped_bytes: DROPPED_BYTES.load(Relaxed),
        dropped_stacks: DROPPED_STACKS.load(Relaxed),
        region_used_bytes: region::USED_BYTES.load(Relaxed) as u64,
        region_reserved_bytes: region::reserved() as u64,
        unwind: crate::stack::unwind::stats(),
    }
}

/// True once any allocation went through `DiagAlloc` (i.e. it is the global allocator).
pub fn is_installed() -> bool {
    alloc_state::totals().alloc_objects > 0 || alloc_state::own_totals().alloc_objects > 0
}

/// The column `/debug/pprof/heap` shows by default.
pub const INUSE_SPACE: &str = "inuse_space";
/// The column `/debug/pprof/allocs` shows by default.
pub const ALLOC_SPACE: &str = "alloc_space";

/// A heap profile of everything sampled so far: `alloc_objects`, `alloc_space`,
/// `inuse_objects`, `inuse_space`, scaled to estimates of the true totals, symbolized.
/// `default_type` picks the column tools show first (`inuse_space` or `alloc_space`).
pub fn profile(default_type: &str) -> Profile {
    let _ignore = IgnoreAllocs::new();
    let st = stats();
    let counters = stacks::entries().map(|(id, e)| (id, e.counters()));
    let ages = super::ages::profile_ages().then(LiveAges::read);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    build(
        counters,
        ages.as_ref(),
        now,
        default_type,
        st.sample_rate,
        vec![
            format!("pid={}", std::process::id()),
            format!("sample_rate={}", st.sample_rate),
            format!("live_bytes={}", st.live_bytes),
            format!("live_objects={}", st.live_objects),
            format!("allocated_bytes={}", st.allocated_bytes),
            format!("allocated_objects={}", st.allocated_objects),
            format!("tracked_blocks={}", st.tracked_blocks),
            format!("dropped_samples={}", st.dropped_samples),
            format!("dropped_bytes={}", st.dropped_bytes),
            format!("dropped_stacks={}", st.dropped_stacks),
            format!("dropped_labels={}", labels::DROPPED_LABELS.load(Relaxed)),
            format!("{UPTIME_COMMENT}={:.1}", super::ages::process_uptime_secs()),
        ]
        .into_iter()
        .chain(
            ages.as_ref()
                .map(|a| format!("ages_missed_blocks={}", a.missed)),
        )
        .chain(labels::folded_names_comment())
        .collect(),
    )
}

/// The heap profile as the [history](super::set_history) recorded it at `time_nanos` (one of
/// [`history_points`](super::history_points)' times), with that time; `None` if no point
/// recorded then is held (never recorded, or dropped as the oldest since). If the point kept
/// its live sampled blocks (see `history_ages`), each stack's in-use values are split by the
/// age those blocks had then, as [`profile`] splits them now, with the uptime of that moment.
pub fn profile_at(time_nanos: i64, default_type: &str) -> Option<Profile> {
    let _ignore = IgnoreAllocs::new();
    let (counters, (live_bytes, live_objects, rate)) = history::counters_at(time_nanos)?;
    // The point's live sampled blocks, aged at its own clock, if it kept them.
    let blocks = history::blocks_at(time_nanos);
    let ages = blocks
        .as_ref()
        .map(|(b, clock)| LiveAges::at_point(b, clock.tick, clock.missed));
    let mut comments = vec![
        format!("pid={}", std::process::id()),
        format!("sample_rate={rate}"),
        format!("history_point={time_nanos}"),
        format!("live_bytes={live_bytes}"),
        format!("live_objects={live_objects}"),
    ];
    if let Some((_, clock)) = &blocks {
        comments.push(format!("{UPTIME_COMMENT}={:.1}", clock.uptime_secs));
        comments.push(format!("ages_missed_blocks={}", clock.missed));
    }
    drop(blocks);
    Some(build(
        counters
            .into_iter()
            .enumerate()
            .map(|(id, c)| (id as u32, c)),
        ages.as_ref(),
        time_nanos,
        default_type,
        rate,
        comments,
    ))
}

/// A symbolized heap profile from each stack's counters; with `ages`, each stack's in-use
/// values come from its live sampled blocks, one sample per age bucket (labelled `age` and
/// `age_secs`), and its `alloc_*` values from a sample of their own without them.
fn build(
    counters: impl Iterator<Item = (u32, history::Counters)>,
    ages: Option<&LiveAges>,
    time_nanos: i64,
    default_type: &str,
    rate: u64,
    comments: Vec<String>,
) -> Profile {
    let mut comments = comments;
    comments.extend(crate::stack::process::app_crates_comment());
    comments.extend(crate::stack::resolve::raw_comment(true));
    let counters: Vec<_> = counters.filter(|(_, c)| c[0] != 0).collect();
    // Every stack's addresses symbolized in one pass (in address order, see
    // `stack::resolve`).
    let addrs: Vec<&[usize]> = counters
        .iter()
        .map(|&(id, _)| {
            if id == 0 {
                &[][..]
            } else {
                let e = stacks::entry(id);
                &e.frames[..e.depth]
            }
        })
        .collect();
    let stacks = crate::stack::symbolize_stacks(&addrs);
    let labels: Vec<_> = counters
        .iter()
        .map(|&(id, _)| labels::pprof_labels(stacks::entry(id).labels))
        .collect();
    let mut samples = Vec::with_capacity(counters.len());
    for (((id, [alloc_objects_fp, alloc_bytes, inuse_objects_fp, inuse_bytes]), stack), labels) in
        counters.into_iter().zip(stacks).zip(labels)
    {
        let mut stack = if id == 0 {
            vec![Frame::named("[diag: stack table full]")]
        } else {
            stack
        };
        let fp = |v: u64| (v as f64 / FP).round() as i64;
        if let Some(buckets) = ages.and_then(|a| a.of(id)) {
            if alloc_objects_fp != 0 || alloc_bytes != 0 {
                samples.push(Sample {
                    stack: stack.clone(),
                    values: vec![fp(alloc_objects_fp), alloc_bytes as i64, 0, 0],
                    labels: labels.clone(),
                });
            }
            for (i, b) in buckets.iter().enumerate() {
                samples.push(Sample {
                    // The last sample of the stack takes it; the others copy it.
                    stack: if i + 1 == buckets.len() {
                        std::mem::take(&mut stack)
                    } else {
                        stack.clone()
                    },
                    values: vec![0, 0, fp(b.objects_fp), b.bytes as i64],
                    labels: labels.iter().cloned().chain(b.labels()).collect(),
                });
            }
            continue;
        }
        if ages.is_some() {
            // No live sampled block (the counters may lag the list by a free): nothing in use.
            samples.push(Sample {
                stack,
                values: vec![fp(alloc_objects_fp), alloc_bytes as i64, 0, 0],
                labels,
            });
            continue;
        }
        samples.push(Sample {
            stack,
            values: vec![
                fp(alloc_objects_fp),
                alloc_bytes as i64,
                fp(inuse_objects_fp),
                inuse_bytes as i64,
            ],
            labels,
        });
    }
    Profile {
        sample_types: crate::profile::heap_sample_types(),
        samples,
        period_type: Some(ValueType::new("space", "bytes")),
        mappings: crate::stack::process::mappings(),
        period: rate as i64,
        time_nanos,
        duration_nanos: 0,
        default_sample_type: Some(default_type.to_owned()),
        comments,
    }
}
