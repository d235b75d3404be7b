//! The heap history: the stack table's counters recorded every interval on a thread of diag's
//! own, so that when memory is found growing, the trend over the past hour is already there
//! (`GET /debug/heap/history`, `GET /debug/pprof/heap?at=T`, `diag trend URL --history`).
//!
//! Each point stores only the stacks whose counters changed since the point before it, over a
//! full copy of the oldest point, so a service whose allocation sites are mostly quiet costs
//! little per point. The whole history is bounded: at most the configured number of points and
//! [`MAX_HISTORY_ENTRIES`] changed-stack entries; past either, the oldest point is folded into
//! the base and dropped, so a service whose sites all change at every point keeps a shorter
//! span rather than more memory. Each point also keeps its live sampled blocks (their ages),
//! as [`history_ages`](super::history_ages) says, with a bound of their own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::history_ages::{AgeClock, AgeHistory, Stamp, read_blocks};
use super::stacks;
use crate::defaults::DEFAULT_HISTORY_POINTS;
use crate::wire::{HistoryPoint, HistoryStats};

/// Most points that can be kept.
pub const MAX_HISTORY_POINTS: usize = 1440;
/// Shortest interval accepted.
pub const MIN_HISTORY_INTERVAL: Duration = Duration::from_millis(100);
/// Cap on changed-stack entries held across all points (40 bytes each: 10 MiB).
pub const MAX_HISTORY_ENTRIES: usize = 256 * 1024;

/// A stack's four counters: alloc objects (fixed point), alloc bytes, in-use objects (fixed
/// point), in-use bytes.
pub(crate) type Counters = [u64; 4];

/// One recorded point after the oldest.
struct Delta {
    time_nanos: i64,
    exact: Exact,
    /// Stacks whose counters differ from the point before, with their new counters.
    changes: Vec<(u32, Counters)>,
}

/// The in-use bytes of some stacks at some points: [`History::grown_series`].
pub(crate) struct Series {
    /// The points' times, nanoseconds since the Unix epoch, increasing.
    pub(crate) times: Vec<i64>,
    /// The stacks, by id.
    pub(crate) ids: Vec<u32>,
    /// `values[i * times.len() + j]`: in-use bytes of stack `ids[i]` at point `j`.
    pub(crate) values: Vec<u64>,
}

/// What else a point records: the exact live bytes and objects, and the sample rate.
pub(crate) type Exact = (u64, u64, u64);

/// The recorded points: the oldest in full, the rest as changes.
#[derive(Default)]
pub(crate) struct History {
    /// Time of the oldest point (0: nothing recorded).
    base_time: i64,
    base_exact: Exact,
    /// Counters at the oldest point, by stack id.
    base: Vec<Counters>,
    deltas: VecDeque<Delta>,
    /// Counters at the newest point, by stack id.
    last: Vec<Counters>,
    /// Entries held in `deltas`.
    entries: usize,
    /// The live sampled blocks at the points that have them.
    ages: AgeHistory,
}

fn inuse(c: &[Counters]) -> (u64, u64) {
    c.iter().fold((0u64, 0u64), |(b, o), v| {
        (
            b.saturating_add(v[3]),
            o.saturating_add((v[2] as f64 / stacks::FP).round() as u64),
        )
    })
}

impl History {
    /// Adds a point at `time_nanos` with the counters of every stack (`now[id]`), then drops
    /// the oldest points until at most `max_points` and [`MAX_HISTORY_ENTRIES`] remain.
    pub(crate) fn record(
        &mut self,
        time_nanos: i64,
        exact: Exact,
        now: &[Counters],
        max_points: usize,
    ) {
        if self.base_time == 0 {
            self.base_time = time_nanos;
            self.base_exact = exact;
            self.base = now.to_vec();
            self.last = now.to_vec();
        } else {
            let changes: Vec<(u32, Counters)> = now
                .iter()
                .enumerate()
                .filter(|&(id, c)| self.last.get(id) != Some(c))
                .map(|(id, c)| (id as u32, *c))
                .collect();
            self.entries += changes.len();
            self.last.clear();
            self.last.extend_from_slice(now);
            self.deltas.push_back(Delta {
                time_nanos,
                exact,
                changes,
            });
        }
        while self.deltas.len() + 1 > max_points.max(1)
            || (self.entries > MAX_HISTORY_ENTRIES && !self.deltas.is_empty())
        {
            self.fold_oldest();
        }
    }

    /// Folds the second-oldest point into the base, dropping the oldest.
    fn fold_oldest(&mut self) {
        let Some(d) = self.deltas.pop_front() else {
            return;
        };
        self.entries -= d.changes.len();
        apply(&mut self.base, &d.changes);
        self.base_time = d.time_nanos;
        self.base_exact = d.exact;
        self.ages.drop_before(self.base_time);
    }

    /// The points held, oldest first.
    pub(crate) fn points(&self) -> Vec<HistoryPoint> {
        if self.base_time == 0 {
            return Vec::new();
        }
        let mut state = self.base.clone();
        let point = |t: i64, exact: Exact, s: &[Counters]| {
            let (inuse_bytes, inuse_objects) = inuse(s);
            HistoryPoint {
                time_nanos: t,
                inuse_bytes,
                inuse_objects,
                live_bytes: exact.0,
                live_objects: exact.1,
                sample_rate: exact.2,
            }
        };
        let mut out = vec![point(self.base_time, self.base_exact, &state)];
        for d in &self.deltas {
            apply(&mut state, &d.changes);
            out.push(point(d.time_nanos, d.exact, &state));
        }
        out
    }

    /// The counters of every stack at the point recorded at `time_nanos`, with what else that
    /// point recorded, if it is held.
    pub(crate) fn at(&self, time_nanos: i64) -> Option<(Vec<Counters>, Exact)> {
        if self.base_time == 0 {
            return None;
        }
        let mut state = self.base.clone();
        if time_nanos == self.base_time {
            return Some((state, self.base_exact));
        }
        for d in &self.deltas {
            apply(&mut state, &d.changes);
            if d.time_nanos == time_nanos {
                return Some((state, d.exact));
            }
        }
        None
    }

    /// The in-use bytes of every stack that grew over the points recorded at or after
    /// `since_nanos` (all of them if 0), at no more than `max_points` of those points spread
    /// evenly (the first and last included); `None` if fewer than three points are held
    /// there. Only the stacks whose in-use bytes are higher at the last point than at the
    /// first are kept: a series that ends where it began, or lower, is no leak whatever its
    /// path. Memory: one copy of the counters (32 bytes a stack) and 8 bytes a point for
    /// each kept stack.
    pub(crate) fn grown_series(&self, since_nanos: i64, max_points: usize) -> Option<Series> {
        if self.base_time == 0 {
            return None;
        }
        let time_at = |k: usize| {
            if k == 0 {
                self.base_time
            } else {
                self.deltas[k - 1].time_nanos
            }
        };
        let n = self.deltas.len() + 1;
        let start = (0..n).find(|&k| time_at(k) >= since_nanos)?;
        if n - start < 3 {
            return None;
        }
        let picks: Vec<usize> = crate::profile::thin(n - start, max_points)
            .into_iter()
            .map(|k| k + start)
            .collect();
        let mut state = self.base.clone();
        for d in self.deltas.iter().take(start) {
            apply(&mut state, &d.changes);
        }
        let grew = |id: usize, c: &Counters| state.get(id).map_or(0, |s| s[3]) < c[3];
        let ids: Vec<u32> = self
            .last
            .iter()
            .enumerate()
            .filter(|&(id, c)| grew(id, c))
            .map(|(id, _)| id as u32)
            .collect();
        let m = picks.len();
        let mut values = vec![0u64; ids.len() * m];
        let mut times = Vec::with_capacity(m);
        let mut picks = picks.into_iter().peekable();
        for k in start..n {
            if k > start {
                apply(&mut state, &self.deltas[k - 1].changes);
            }
            if picks.next_if_eq(&k).is_some() {
                let j = times.len();
                times.push(time_at(k));
                for (i, &id) in ids.iter().enumerate() {
                    values[i * m + j] = state.get(id as usize).map_or(0, |c| c[3]);
                }
            }
        }
        Some(Series { times, ids, values })
    }

    /// Bytes the history holds (its vectors' capacities).
    pub(crate) fn memory_bytes(&self) -> usize {
        let c = std::mem::size_of::<Counters>();
        let e = std::mem::size_of::<(u32, Counters)>();
        (self.base.capacity() + self.last.capacity()) * c
            + self.deltas.capacity() * std::mem::size_of::<Delta>()
            + self
                .deltas
                .iter()
                .map(|d| d.changes.capacity() * e)
                .sum::<usize>()
            + self.ages.memory_bytes()
    }
}

fn apply(state: &mut Vec<Counters>, changes: &[(u32, Counters)]) {
    for &(id, c) in changes {
        let id = id as usize;
        if state.len() <= id {
            state.resize(id + 1, [0; 4]);
        }
        state[id] = c;
    }
}

static HISTORY: Mutex<History> = Mutex::new(History {
    base_time: 0,
    base_exact: (0, 0, 0),
    base: Vec::new(),
    deltas: VecDeque::new(),
    last: Vec::new(),
    entries: 0,
    ages: AgeHistory::new(),
});
static INTERVAL_MS: AtomicU64 = AtomicU64::new(0);
/// Points recorded since the start (counted under the history's lock, with the point), and
/// the CPU time the recorder spent on them.
static RECORDS: AtomicU64 = AtomicU64::new(0);
/// The [`GENERATION`] of the latest point recorded (written under the history's lock).
static RECORDED_GENERATION: AtomicU64 = AtomicU64::new(0);
static RECORD_CPU_NS: AtomicU64 = AtomicU64::new(0);
static LAST_RECORD_CPU_NS: AtomicU64 = AtomicU64::new(0);
static MAX_POINTS: AtomicUsize = AtomicUsize::new(DEFAULT_HISTORY_POINTS);
static STARTED: AtomicBool = AtomicBool::new(false);
/// Bumped by every [`set_history`], so the recorder starts over with the new settings.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The recorder thread, once it runs.
static RECORDER: OnceLock<std::thread::Thread> = OnceLock::new();

fn lock() -> std::sync::MutexGuard<'static, History> {
    HISTORY.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(1)
        .max(1)
}

/// Records one point now from the live stack table, begun under settings `generation`; false
/// if recording was turned off or the settings changed meanwhile (the point would belong to
/// the old settings: the recorder starts over with the new ones).
fn record_now(generation: u64) -> bool {
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    let now: Vec<Counters> = stacks::entries().map(|(_, e)| e.counters()).collect();
    let totals = crate::alloc_state::totals();
    let exact = (
        totals.alloc_bytes.saturating_sub(totals.free_bytes),
        totals.alloc_objects.saturating_sub(totals.free_objects),
        super::config::sample_rate(),
    );
    let blocks = super::ages::profile_ages().then(read_blocks);
    // The alarm's second signal, sorted before the lock is taken: each stack's live sampled
    // blocks' ages (16 bytes a block, freed when the check ends).
    let ages = blocks
        .as_ref()
        .and_then(|(b, c)| super::leaks::StackAges::from_stamps(b, c.tick, c.missed));
    let t = now_nanos();
    let mut h = lock();
    // Settings change under this lock too: a point begun before a change never lands after it.
    if INTERVAL_MS.load(Relaxed) == 0 || GENERATION.load(Relaxed) != generation {
        return false;
    }
    h.record(t, exact, &now, MAX_POINTS.load(Relaxed));
    match blocks {
        Some((blocks, clock)) => h.ages.record(t, clock, blocks),
        None => h.ages = AgeHistory::default(),
    }
    RECORDS.fetch_add(1, Relaxed);
    RECORDED_GENERATION.store(generation, Relaxed);
    drop(now);
    // The leak alarm's series, copied out under the lock, classified after it.
    let window = super::leaks::window();
    let since = if window.is_zero() {
        0
    } else {
        t.saturating_sub(window.as_nanos() as i64)
    };
    let series = h.grown_series(since, crate::profile::MAX_TREND_SNAPSHOTS);
    drop(h);
    if let Some(series) = series {
        super::leaks::check(
            &series,
            ages.as_ref(),
            t,
            MAX_POINTS.load(Relaxed),
            thread_cpu_ns,
        );
    }
    true
}

/// Starts recording a point every `interval` (at least [`MIN_HISTORY_INTERVAL`]), keeping the
/// last `points` (2 to [`MAX_HISTORY_POINTS`]); a zero interval stops recording and clears the
/// history. The recorder is one thread of diag's own (`diag-heap-history`), started on first
/// use; its allocations are never sampled. It records a point at once, and again at once
/// whenever the settings change.
pub fn set_history(interval: Duration, points: usize) {
    MAX_POINTS.store(points.clamp(2, MAX_HISTORY_POINTS), Relaxed);
    let ms = if interval.is_zero() {
        0
    } else {
        interval.max(MIN_HISTORY_INTERVAL).as_millis() as u64
    };
    {
        // Under the history's lock, so no point is recorded after it was cleared.
        let mut h = lock();
        INTERVAL_MS.store(ms, Relaxed);
        GENERATION.fetch_add(1, Relaxed);
        if ms == 0 {
            *h = History::default();
        }
    }
    if let Some(t) = RECORDER.get() {
        t.unpark();
        return;
    }
    if ms == 0 || STARTED.swap(true, Relaxed) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("diag-heap-history".into())
        .spawn(|| {
            std::mem::forget(crate::alloc_state::IgnoreAllocs::new());
            // Registered before the first look at the settings: a change made from here on
            // unparks this thread.
            let _ = RECORDER.set(std::thread::current());
            loop {
                let generation = GENERATION.load(Relaxed);
                let ms = INTERVAL_MS.load(Relaxed);
                if ms == 0 {
                    std::thread::park();
                    continue;
                }
                let before = thread_cpu_ns();
                if record_now(generation) {
                    let spent = thread_cpu_ns().saturating_sub(before);
                    RECORD_CPU_NS.fetch_add(spent, Relaxed);
                    LAST_RECORD_CPU_NS.store(spent, Relaxed);
                }
                let deadline = Instant::now() + Duration::from_millis(ms);
                while GENERATION.load(Relaxed) == generation {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::park_timeout(left);
                }
            }
        });
    if spawned.is_err() {
        STARTED.store(false, Relaxed);
    }
}

/// CPU time this thread has run, in nanoseconds (0 if the clock cannot be read).
pub(super) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The history's settings, size and cost so far.
pub fn history_stats() -> HistoryStats {
    // The counters are read under the lock they are written under: one consistent view.
    let (points_held, entries, (memory_bytes, age_memory_bytes), records, generations) = {
        let h = lock();
        let points = if h.base_time == 0 {
            0
        } else {
            h.deltas.len() + 1
        };
        (
            points,
            h.entries,
            (h.memory_bytes(), h.ages.memory_bytes()),
            RECORDS.load(Relaxed),
            (GENERATION.load(Relaxed), RECORDED_GENERATION.load(Relaxed)),
        )
    };
    HistoryStats {
        interval_ms: INTERVAL_MS.load(Relaxed),
        max_points: MAX_POINTS.load(Relaxed),
        points_held,
        entries,
        memory_bytes,
        age_memory_bytes,
        records,
        settings_generation: generations.0,
        recorded_generation: generations.1,
        record_cpu_ns: RECORD_CPU_NS.load(Relaxed),
        last_record_cpu_ns: LAST_RECORD_CPU_NS.load(Relaxed),
    }
}

/// The recording interval (zero: not recording).
pub fn history_interval() -> Duration {
    Duration::from_millis(INTERVAL_MS.load(Relaxed))
}

/// The most points kept.
pub fn history_max_points() -> usize {
    MAX_POINTS.load(Relaxed)
}

/// The points held, oldest first.
pub fn history_points() -> Vec<HistoryPoint> {
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    lock().points()
}

/// The live sampled blocks at the point recorded at `time_nanos`, with its clock; `None` if
/// that point has no ages.
pub(crate) fn blocks_at(time_nanos: i64) -> Option<(Vec<Stamp>, AgeClock)> {
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    lock().ages.at(time_nanos)
}

/// The counters of every stack at the point recorded at `time_nanos`, and its live bytes,
/// live objects and sample rate.
pub(crate) fn counters_at(time_nanos: i64) -> Option<(Vec<Counters>, Exact)> {
    let _ignore = crate::alloc_state::IgnoreAllocs::new();
    lock().at(time_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(inuse: u64) -> Counters {
        [
            0,
            inuse * 2,
            (stacks::FP as u64) * (inuse / 100).max(1),
            inuse,
        ]
    }

    #[test]
    fn points_rebuild_from_base_and_changes() {
        let mut h = History::default();
        assert!(h.points().is_empty());
        assert!(h.at(5).is_none());
        h.record(10, (1, 1, 512), &[c(100), c(200)], 10);
        h.record(20, (2, 2, 512), &[c(100), c(300), c(50)], 10);
        h.record(30, (3, 3, 1), &[c(100), c(300), c(80)], 10);
        let p = h.points();
        let times: Vec<i64> = p.iter().map(|p| p.time_nanos).collect();
        assert_eq!(times, [10, 20, 30]);
        let bytes: Vec<u64> = p.iter().map(|p| p.inuse_bytes).collect();
        assert_eq!(bytes, [300, 450, 480]);
        let live: Vec<u64> = p.iter().map(|p| p.live_bytes).collect();
        assert_eq!(live, [1, 2, 3]);
        let rates: Vec<u64> = p.iter().map(|p| p.sample_rate).collect();
        assert_eq!(rates, [512, 512, 1]);
        assert_eq!(h.at(10).unwrap(), (vec![c(100), c(200)], (1, 1, 512)));
        assert_eq!(h.at(20).unwrap().0, vec![c(100), c(300), c(50)]);
        assert_eq!(h.at(30).unwrap(), (vec![c(100), c(300), c(80)], (3, 3, 1)));
        assert!(h.at(25).is_none());
        // Only changed stacks are stored: stack 0 never is after the base.
        assert_eq!(h.entries, 2 + 1);
    }

    #[test]
    fn oldest_points_fold_into_the_base() {
        let mut h = History::default();
        for t in 1..=10 {
            h.record(t, (t as u64, 0, 0), &[c(t as u64 * 100), c(7)], 4);
        }
        let p = h.points();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].time_nanos, 7);
        assert_eq!(p[0].live_bytes, 7);
        assert_eq!(h.at(7).unwrap().0, vec![c(700), c(7)]);
        assert_eq!(h.at(10).unwrap().0, vec![c(1000), c(7)]);
        assert!(h.at(6).is_none());
        assert_eq!(h.entries, 3);
    }

    #[test]
    fn grown_series_follow_the_stacks_that_grew() {
        let mut h = History::default();
        assert!(h.grown_series(0, 200).is_none());
        // Stack 0 grows, 1 is flat, 2 shrinks, 3 appears at the third point and grows.
        for t in 1..=10u64 {
            let mut now = vec![c(100 * t), c(500), c(1000 - 10 * t)];
            if t >= 3 {
                now.push(c(7 * t));
            }
            h.record(t as i64, (0, 0, 0), &now, 100);
        }
        let s = h.grown_series(0, 200).unwrap();
        assert_eq!(s.times, (1..=10).collect::<Vec<i64>>());
        assert_eq!(s.ids, [0, 3]);
        let m = s.times.len();
        assert_eq!(
            &s.values[..m],
            (1..=10).map(|t| 100 * t).collect::<Vec<u64>>()
        );
        assert_eq!(&s.values[m..m + 2], [0, 0]);
        assert_eq!(s.values[2 * m - 1], 70);
        // A window from t = 6, thinned to three points: 6, 8, 10.
        let s = h.grown_series(6, 3).unwrap();
        assert_eq!(s.times, [6, 8, 10]);
        assert_eq!(&s.values[..3], [600, 800, 1000]);
        assert_eq!(&s.values[3..], [42, 56, 70]);
        // Fewer than three points in the window: nothing to classify.
        assert!(h.grown_series(9, 200).is_none());
    }

    #[test]
    fn memory_is_bounded_by_entries() {
        let mut h = History::default();
        let wide = 100_000usize;
        for t in 1..=20i64 {
            let now: Vec<Counters> = (0..wide).map(|i| c(i as u64 + t as u64)).collect();
            h.record(t, (0, 0, 0), &now, MAX_HISTORY_POINTS);
            assert!(h.entries <= MAX_HISTORY_ENTRIES, "{}", h.entries);
        }
        // Every stack changes at every point: 100k entries a point, so two deltas fit.
        let p = h.points();
        assert_eq!(p.len(), 3);
        assert_eq!(p.last().unwrap().time_nanos, 20);
        let bound = 2 * wide * std::mem::size_of::<Counters>()
            + MAX_HISTORY_ENTRIES * std::mem::size_of::<(u32, Counters)>()
            + 4096;
        assert!(h.memory_bytes() <= bound, "{} > {bound}", h.memory_bytes());
    }
}
