//! The leak alarm: at every heap history point, the trend test of `diag trend` over each
//! stack's in-use bytes across the history, by stack id, so the service itself says when a
//! site keeps growing (`/metrics`, a `tracing` warning, `GET /debug/leaks`).
//!
//! A stack is a suspect when its series is `growing` (the levels rise, Mann-Kendall, and the
//! steps rise, sign test, both at one-sided `p < alpha`; the later half still rising) and its
//! Theil-Sen slope is at least the minimum rate, its rise is beyond the sampler's noise at
//! `alpha` over the stacks classified ([`noise`]), and it did so at as many consecutive
//! checks as the ages of its live sampled blocks ask ([`by_age`]): [`AGED_CONFIRM_CHECKS`]
//! if they say it accumulates since its rise began, [`TURNOVER_CONFIRM_CHECKS`] if they say
//! it turned over, [`CONFIRM_CHECKS`] if they say neither; none before [`MIN_CHECK_POINTS`]
//! points. The series are the history's points recorded within the window (all of them by
//! default), thinned evenly to at most
//! [`MAX_TREND_SNAPSHOTS`](crate::profile::MAX_TREND_SNAPSHOTS) as `diag trend` is limited
//! to, and only stacks whose in-use bytes ended higher than they began are classified
//! ([`SeriesClassifier::growing`] skips the quadratic work for a series whose steps do not
//! lean up).
//!
//! Runs on the history's recorder thread (diag's own, never sampled), after the point is
//! recorded and with the history's lock released; nothing here touches the allocator path.
//! Stacks are named only for new suspects, and only when the service names its stacks
//! (`DIAG_SYMBOLIZE` on) and can name the site's frame (not in a stripped binary); otherwise a
//! suspect is `stack#<id>` with its addresses.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::history::Series;
use super::{labels, stacks};
use crate::defaults::{DEFAULT_LEAK_ALPHA, DEFAULT_LEAK_MIN_RATE, DEFAULT_LEAK_WINDOW};
use crate::profile::SeriesClassifier;
use crate::wire::{LeakSuspect, Leaks};
pub(crate) use by_age::{AgeSignal, MIN_AGED_SAMPLES, StackAges};

static ALPHA_BITS: AtomicU64 = AtomicU64::new(DEFAULT_LEAK_ALPHA.to_bits());
static MIN_RATE_BITS: AtomicU64 = AtomicU64::new(DEFAULT_LEAK_MIN_RATE.to_bits());
static WINDOW_MS: AtomicU64 = AtomicU64::new(DEFAULT_LEAK_WINDOW.as_millis() as u64);
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// The latest check and the suspects, by stack id.
struct State {
    checked_at_nanos: i64,
    points: usize,
    span_secs: f64,
    stacks_checked: usize,
    check_cpu_ns: u64,
    suspects: BTreeMap<u32, LeakSuspect>,
    /// Consecutive checks each stack has passed (see [`confirmed`]).
    streaks: BTreeMap<u32, Streak>,
}

static STATE: Mutex<State> = Mutex::new(State {
    checked_at_nanos: 0,
    points: 0,
    span_secs: 0.0,
    stacks_checked: 0,
    check_cpu_ns: 0,
    suspects: BTreeMap::new(),
    streaks: BTreeMap::new(),
});

fn lock() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the leak alarm: a suspect's rise must reach one-sided significance `alpha` (clamped
/// into (0, 1); default [`DEFAULT_LEAK_ALPHA`]) at `min_rate` bytes per second or more
/// (default [`DEFAULT_LEAK_MIN_RATE`], 1 MiB per hour), over the history recorded in the last
/// `window` (zero: the whole history, the default). Takes effect at the next history point.
pub fn set_leak_alarm(alpha: f64, min_rate: f64, window: Duration) {
    let alpha = if alpha > 0.0 && alpha < 1.0 {
        alpha
    } else {
        DEFAULT_LEAK_ALPHA
    };
    ALPHA_BITS.store(alpha.to_bits(), Relaxed);
    MIN_RATE_BITS.store(min_rate.max(0.0).to_bits(), Relaxed);
    WINDOW_MS.store(window.as_millis() as u64, Relaxed);
}

/// The span of history the alarm checks (zero: all of it).
pub(super) fn window() -> Duration {
    Duration::from_millis(WINDOW_MS.load(Relaxed))
}

/// The alarm's settings, latest check and suspects, fastest-growing first.
pub fn leaks() -> Leaks {
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    let st = lock();
    let mut suspects: Vec<LeakSuspect> = st.suspects.values().cloned().collect();
    suspects.sort_by(|a, b| {
        b.rate_bytes_per_sec
            .total_cmp(&a.rate_bytes_per_sec)
            .then(a.stack_id.cmp(&b.stack_id))
    });
    Leaks {
        alpha: f64::from_bits(ALPHA_BITS.load(Relaxed)),
        min_rate_bytes_per_sec: f64::from_bits(MIN_RATE_BITS.load(Relaxed)),
        window_secs: window().as_secs_f64(),
        checks: CHECKS.load(Relaxed),
        checked_at_nanos: st.checked_at_nanos,
        points: st.points,
        span_secs: st.span_secs,
        stacks_checked: st.stacks_checked,
        check_cpu_ns: st.check_cpu_ns,
        suspects,
    }
}

/// Checks done since the start.
pub fn leak_checks() -> u64 {
    CHECKS.load(Relaxed)
}

/// One stack that passed the rank tests and the rate in [`candidates`]: its slope, recent
/// slope, the rank tests' p, the sampling-noise test's p, first and last bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub(crate) id: u32,
    pub(crate) rate: f64,
    pub(crate) recent: f64,
    /// The trend classifier's one-sided p of a rise.
    pub(crate) p: f64,
    /// [`noise::p_beyond_sampling`] of the first and last bytes.
    pub(crate) p_noise: f64,
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// The stacks of `series` that are suspects at `alpha` and `min_rate` (bytes per second),
/// sampled one block in `sample_bytes` (1: exact counts): `growing` by the trend classifier
/// at `alpha`, at `min_rate` or faster, and a rise beyond sampling noise at `alpha` over the
/// number of stacks classified (see [`noise`]). Pure: what a check computes before it names
/// anything.
pub(crate) fn suspects(
    series: &Series,
    alpha: f64,
    min_rate: f64,
    sample_bytes: f64,
) -> Vec<Found> {
    let level = noise_level(alpha, series.ids.len());
    let mut found = candidates(series, alpha, min_rate, sample_bytes);
    found.retain(|f| f.p_noise < level);
    found
}

/// The fewest points a check looks at (or the history's capacity, if smaller): with fewer, a
/// cache that filled in the first points is a real rise that the later half's few points
/// cannot yet tell from a leak (measured in `leaks/tests.rs`: the false suspects left after
/// the noise test came at checks of 7 to 22 points).
pub(crate) const MIN_CHECK_POINTS: usize = 30;

/// Consecutive checks a stack must pass to become a suspect. Checks every point are not
/// independent trials, and over hundreds of them a fast-turnover cache's estimate makes a
/// rare excursion that passes one check or two (its two ends at opposite extremes); that
/// excursion ends, a leak's rise does not. Measured in `leaks/tests.rs` (200 seeds x 2 runs
/// of 240 points): runs with a false suspect 3 of 400 after one check, 1 after three, 0 after
/// four; the price is three points of delay (leak found within 40 points: 190, 184, 180 of
/// 200). Now the count for a stack whose ages say neither accumulation nor turnover
/// ([`AgeSignal::Unknown`]).
pub(crate) const CONFIRM_CHECKS: usize = 4;

/// Consecutive checks a stack must pass to become a suspect when the ages of its live
/// sampled blocks say it accumulates since its rise began ([`AgeSignal::Accumulating`]): a
/// cache's excursion never shows that (its blocks turn over), so the wait for the excursion
/// to end is not needed. Measured in `leaks/tests.rs` (BENCHMARKS.md): the leak found within
/// 40 points in 192 of 200 runs against 183 with four checks for every stack, as many as one
/// check for every stack finds (193) without its false suspects (5 runs of 400).
pub(crate) const AGED_CONFIRM_CHECKS: usize = 1;

/// Consecutive checks a stack must pass to become a suspect when its ages say it turned over
/// ([`AgeSignal::TurnedOver`]): it freed more than it kept since its oldest live block, the
/// shape of a cache whose estimate makes an excursion (in the simulation of
/// `leaks/tests.rs`, one LRU excursion passed four consecutive checks, in 1 run of 400 at
/// each history size; none passed eight). A rise that is real there (a time-bounded cache
/// under growing traffic, a leak sharing a stack with a larger cache) is found, later.
pub(crate) const TURNOVER_CONFIRM_CHECKS: usize = 10;

/// The consecutive checks a stack needs by what its ages say.
pub(crate) fn checks_needed(signal: AgeSignal) -> usize {
    match signal {
        AgeSignal::Accumulating => AGED_CONFIRM_CHECKS,
        AgeSignal::TurnedOver => TURNOVER_CONFIRM_CHECKS,
        AgeSignal::Unknown => CONFIRM_CHECKS,
    }
}

/// Each stack of `passed` with what its ages (`ages`, if the point has them) say, by
/// [`by_age::signal`] with at least `min_samples` blocks.
pub(crate) fn aged(
    passed: Vec<Found>,
    series: &Series,
    ages: Option<&StackAges>,
    min_samples: usize,
) -> Vec<(Found, AgeSignal)> {
    passed
        .into_iter()
        .map(|f| {
            let said = ages.map_or(AgeSignal::Unknown, |a| {
                by_age::signal(&f, &a.of(f.id), series, min_samples)
            });
            (f, said)
        })
        .collect()
}

/// A stack's run of consecutive checks passed, and whether it became a suspect in it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Streak {
    run: usize,
    confirmed: bool,
}

/// The stacks of `passed` (this check's, each with the consecutive checks it needs now) that
/// have now passed that many; a stack once confirmed stays so while it keeps passing (what
/// its ages say may change from check to check). `streaks` holds each stack's run and
/// forgets the ones that did not pass.
pub(crate) fn confirmed(
    streaks: &mut BTreeMap<u32, Streak>,
    passed: Vec<(Found, usize)>,
) -> Vec<Found> {
    streaks.retain(|id, _| passed.iter().any(|(f, _)| f.id == *id));
    passed
        .into_iter()
        .filter(|(f, need)| {
            let s = streaks.entry(f.id).or_default();
            s.run += 1;
            s.confirmed |= s.run >= *need;
            s.confirmed
        })
        .map(|(f, _)| f)
        .collect()
}

/// The sampling-noise test's level in a check of `stacks` stacks: `alpha / stacks`.
pub(crate) fn noise_level(alpha: f64, stacks: usize) -> f64 {
    alpha / stacks.max(1) as f64
}

/// The stacks of `series` that the trend classifier calls `growing` at `alpha`, at `min_rate`
/// or faster, with their sampling-noise p-values (not yet compared with a level).
pub(crate) fn candidates(
    series: &Series,
    alpha: f64,
    min_rate: f64,
    sample_bytes: f64,
) -> Vec<Found> {
    let m = series.times.len();
    let t0 = series.times.first().copied().unwrap_or(0);
    let times: Vec<f64> = series
        .times
        .iter()
        .map(|&t| (t - t0) as f64 / 1e9)
        .collect();
    // The rank test's null distribution is built once per length and level (`O(n^3)`), and
    // kept for the next checks: the history's length is stable.
    static CLASSIFIER: Mutex<Option<SeriesClassifier>> = Mutex::new(None);
    let mut cached = CLASSIFIER.lock().unwrap_or_else(|e| e.into_inner());
    let reuse = cached
        .as_ref()
        .is_some_and(|c| c.len() == times.len() && c.alpha() == alpha);
    let classifier = match cached.as_mut() {
        Some(c) if reuse => match c.retime(times) {
            Ok(()) => c,
            Err(_) => return Vec::new(),
        },
        _ => match SeriesClassifier::new(times, alpha) {
            Ok(c) => cached.insert(c),
            Err(_) => return Vec::new(),
        },
    };
    let mut values = vec![0f64; m];
    let mut out = Vec::new();
    for (i, &id) in series.ids.iter().enumerate() {
        let row = &series.values[i * m..(i + 1) * m];
        for (v, &b) in values.iter_mut().zip(row) {
            *v = b as f64;
        }
        if let Some(c) = classifier.growing(&values)
            && c.slope >= min_rate
        {
            out.push(Found {
                id,
                rate: c.slope,
                recent: c.recent_slope,
                p: c.p_growing,
                p_noise: noise::p_beyond_sampling(row[0] as f64, row[m - 1] as f64, sample_bytes),
                first: row[0],
                last: row[m - 1],
            });
        }
    }
    out
}

/// Runs one check over `series` (the history's points now), taken at `now_nanos`; updates
/// the suspects and says which became or stopped being one. `cpu_ns` reads the thread's CPU
/// clock.
///
/// A stack becomes a suspect once it passed [`suspects`] at as many consecutive checks as
/// its live sampled blocks' ages at this point (`ages`, if recorded) ask ([`checks_needed`],
/// [`by_age`]), and no check speaks before the series hold
/// [`MIN_CHECK_POINTS`] points (or `capacity`, the history's points, if fewer).
pub(super) fn check(
    series: &Series,
    ages: Option<&StackAges>,
    now_nanos: i64,
    capacity: usize,
    cpu_ns: fn() -> u64,
) {
    let before = cpu_ns();
    let alpha = f64::from_bits(ALPHA_BITS.load(Relaxed));
    let min_rate = f64::from_bits(MIN_RATE_BITS.load(Relaxed));
    let passed = if series.times.len() >= MIN_CHECK_POINTS.min(capacity) {
        suspects(series, alpha, min_rate, super::config::sample_rate() as f64)
    } else {
        Vec::new()
    };
    let passed = aged(passed, series, ages, MIN_AGED_SAMPLES)
        .into_iter()
        .map(|(f, said)| (f, checks_needed(said)))
        .collect();
    let found = confirmed(&mut lock().streaks, passed);
    let m = series.times.len();
    let span_secs = match (series.times.first(), series.times.last()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    // New suspects are named before the lock is taken (symbolizing can take a while; only
    // this thread writes the suspects, so the set cannot change meanwhile).
    let known: Vec<bool> = {
        let st = lock();
        found
            .iter()
            .map(|f| st.suspects.contains_key(&f.id))
            .collect()
    };
    let mut fresh: BTreeMap<u32, LeakSuspect> = found
        .iter()
        .zip(known)
        .filter(|(_, known)| !known)
        .map(|(f, _)| (f.id, named(f.id, now_nanos)))
        .collect();
    let mut st = lock();
    let mut next = BTreeMap::new();
    for f in found {
        let Some(mut s) = st.suspects.remove(&f.id).or_else(|| fresh.remove(&f.id)) else {
            continue;
        };
        s.rate_bytes_per_sec = f.rate;
        s.recent_rate_bytes_per_sec = f.recent;
        s.p = f.p;
        s.first_bytes = f.first;
        s.last_bytes = f.last;
        s.points = m;
        if s.since_nanos == now_nanos {
            became(&s, span_secs);
            super::capture::suspect(&s.site);
        }
        next.insert(f.id, s);
    }
    for s in std::mem::replace(&mut st.suspects, next).into_values() {
        stopped(&s, now_nanos);
    }
    st.checked_at_nanos = now_nanos;
    st.points = m;
    st.span_secs = span_secs;
    st.stacks_checked = series.ids.len();
    st.check_cpu_ns = cpu_ns().saturating_sub(before);
    CHECKS.fetch_add(1, Relaxed);
}

/// A new suspect for stack `id`: named if the service names its stacks, else `stack#<id>`
/// with its addresses; its labels.
fn named(id: u32, now_nanos: i64) -> LeakSuspect {
    let e = stacks::entry(id);
    let addrs = &e.frames[..e.depth];
    let (site, stack) = if id == 0 {
        ("[diag: stack table full]".to_owned(), Vec::new())
    } else if crate::stack::resolve::naming() == crate::stack::resolve::Naming::Symbolized {
        let frames = crate::stack::symbolize_stack(addrs);
        let rules = crate::profile::sites::SiteRules::for_stacks([frames.as_slice()])
            .with_app_crates(crate::stack::process::app_crates());
        (
            site_name(id, &rules, &frames),
            frames.into_iter().map(|f| f.function).collect(),
        )
    } else {
        (
            format!("stack#{id}"),
            addrs.iter().map(|a| format!("{a:#x}")).collect(),
        )
    };
    LeakSuspect {
        stack_id: id,
        short: crate::profile::sites::short_name(&site),
        site,
        labels: labels::pprof_labels(e.labels).into_iter().collect(),
        stack,
        since_nanos: now_nanos,
        ..LeakSuspect::default()
    }
}

/// A suspect's site: its stack's site under `rules`, or `stack#<id>` when the service could not
/// name the site's frame (a stripped binary: every frame an address, the same one for every
/// stack that allocates through one function) nor any frame at all. Its stack then carries
/// the addresses, which `diag leaks --binary` names as it names `DIAG_SYMBOLIZE=off`'s.
fn site_name(
    id: u32,
    rules: &crate::profile::sites::SiteRules,
    frames: &[crate::profile::Frame],
) -> String {
    match rules.site(frames) {
        Some(site) if !frames[site.index].is_raw() => site.name,
        _ => format!("stack#{id}"),
    }
}

/// The route or task label of a suspect, if it has one.
pub fn poll_label(s: &LeakSuspect) -> Option<&str> {
    s.labels
        .get(crate::names::ROUTE_LABEL)
        .or_else(|| s.labels.get(crate::names::TASK_LABEL))
        .map(String::as_str)
}

#[cfg(feature = "server")]
fn became(s: &LeakSuspect, span_secs: f64) {
    tracing::warn!(
        target: "diag",
        site = %s.site,
        label = poll_label(s).unwrap_or(""),
        rate_bytes_per_sec = s.rate_bytes_per_sec,
        p = s.p,
        since_nanos = s.since_nanos,
        "leak suspect: {} grows at {:.0} B/s (p = {:.2e}) over {:.0} s of heap history, {} -> {} \
         bytes; see it with `diag diff URL --since 1h`",
        s.short,
        s.rate_bytes_per_sec,
        s.p,
        span_secs,
        s.first_bytes,
        s.last_bytes,
    );
}

#[cfg(not(feature = "server"))]
fn became(_: &LeakSuspect, _: f64) {}

#[cfg(feature = "server")]
fn stopped(s: &LeakSuspect, now_nanos: i64) {
    tracing::warn!(
        target: "diag",
        site = %s.site,
        label = poll_label(s).unwrap_or(""),
        rate_bytes_per_sec = s.rate_bytes_per_sec,
        p = s.p,
        since_nanos = s.since_nanos,
        "leak suspect cleared: {} no longer grows significantly (it was a suspect for {:.0} s, \
         last at {:.0} B/s); `diag diff URL --since 1h` shows what changed",
        s.short,
        (now_nanos - s.since_nanos) as f64 / 1e9,
        s.rate_bytes_per_sec,
    );
}

#[cfg(not(feature = "server"))]
fn stopped(_: &LeakSuspect, _: i64) {}

mod by_age;
mod noise;

#[cfg(test)]
mod tests;
