use std::collections::VecDeque;

use super::*;
use crate::defaults::DEFAULT_HISTORY_POINTS;
use crate::heap::history::{Counters, History, thread_cpu_ns};
use crate::heap::history_ages::Stamp;
use crate::heap::live::TICK_MILLIS;
use crate::profile::MAX_TREND_SNAPSHOTS;

/// A stack `id` that passed the rank tests with a unit rate (its other figures zero), for
/// tests that judge it further.
pub(super) fn found(id: u32) -> Found {
    Found {
        id,
        rate: 1.0,
        recent: 1.0,
        p: 0.0,
        p_noise: 0.0,
        first: 0,
        last: 0,
    }
}

/// xorshift64*: a fixed seed gives a fixed run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The default sample rate: a block of `s` bytes is sampled with probability
/// `1 - e^(-s/rate)` and then weighs `s / p`, as `DiagAlloc` estimates.
const RATE: f64 = 512.0 * 1024.0;

/// One allocation site: its live blocks of one size, oldest first, each sampled (with its
/// allocation time in the live list's ticks) or not, and how many are sampled.
struct Site {
    size: f64,
    blocks: VecDeque<Option<u32>>,
    sampled: usize,
}

impl Site {
    fn new(size: usize) -> Self {
        Self {
            size: size as f64,
            blocks: VecDeque::new(),
            sampled: 0,
        }
    }
    fn p(&self) -> f64 {
        1.0 - (-self.size / RATE).exp()
    }
    /// Allocates `n` blocks in the interval before point `k` (recorded at second `k + 1`),
    /// each at a random tick of it.
    fn alloc(&mut self, rng: &mut Rng, n: usize, k: usize) {
        let p = self.p();
        let ticks = (1000 / TICK_MILLIS) as usize;
        for _ in 0..n {
            let s = rng.unit() < p;
            self.sampled += usize::from(s);
            let born = (k * ticks + 1 + rng.below(ticks)) as u32;
            self.blocks.push_back(s.then_some(born));
        }
    }
    fn free_oldest(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(s) = self.blocks.pop_front() {
                self.sampled -= usize::from(s.is_some());
            }
        }
    }
    fn free_random(&mut self, rng: &mut Rng, n: usize) {
        for _ in 0..n.min(self.blocks.len()) {
            let i = rng.below(self.blocks.len());
            if let Some(s) = self.blocks.swap_remove_back(i) {
                self.sampled -= usize::from(s.is_some());
            }
        }
    }
    /// Its live sampled blocks as a history point records them.
    fn stamps(&self, stack: u32, out: &mut Vec<Stamp>) {
        for born in &self.blocks {
            if let Some(time) = *born {
                out.push(Stamp {
                    addr: out.len(),
                    time,
                    stack,
                    objects_fp: 1,
                    bytes: self.size as u64,
                });
            }
        }
    }
    fn clear(&mut self) {
        self.blocks.clear();
        self.sampled = 0;
    }
    fn estimate(&self) -> u64 {
        (self.sampled as f64 * self.size / self.p()).round() as u64
    }
    fn bytes(&self) -> f64 {
        self.blocks.len() as f64 * self.size
    }
}

/// The stack id of the leak in [`simulate`].
const LEAK: u32 = 4;

/// What one simulated service run gave.
#[derive(Debug, Default, Clone)]
struct Run {
    /// Checks in which a stack other than the leak was a suspect.
    false_checks: usize,
    /// Checks run.
    checks: usize,
    /// Checks in which each stack (0-3, not the leak) was a suspect.
    false_by_site: [usize; 4],
    /// The longest run of consecutive checks in which one stack other than the leak stayed
    /// a suspect (what an alert's `for:` waits out).
    longest_false_streak: usize,
    /// Points from the leak's start to the first check that named it.
    leak_found_after: Option<usize>,
    /// The current run of checks in which each stack (0-3) was a suspect.
    streaks: [usize; 4],
    /// Checks passed (rank and noise tests, after the first points) by a stack other than
    /// the leak (`[0]`) and by the leak (`[1]`), by what their ages said (accumulating,
    /// turned over, nothing).
    signals: [[usize; 3]; 2],
    /// Checks of at least [`MIN_CHECK_POINTS`] points at which each site (by stack id, the
    /// leak last) was in the grown series, by what its ages said (accumulating, turned
    /// over, nothing), whether or not it passed the rank tests.
    site_signals: [[usize; 3]; 5],
}

/// A way to decide, for [`simulate`] to compare: the rank tests always; the sampling-noise
/// test at `alpha` over the stacks classified, or not at all; no check before the series
/// hold `min_points` (or all the history holds); a stack confirmed after passing `confirm`
/// consecutive checks, or with ages (`aged`) as many as they say.
#[derive(Debug, Clone, Copy)]
struct Variant {
    noise: Noise,
    confirm: usize,
    min_points: usize,
    aged: Option<Aged>,
}

/// The consecutive checks a stack needs when its live sampled blocks' ages (at least
/// `min_samples` of them) say it accumulates, or that it turned over.
#[derive(Debug, Clone, Copy)]
struct Aged {
    accumulating: usize,
    turned_over: usize,
    min_samples: usize,
}

/// Whether [`Variant`] runs the sampling-noise test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Noise {
    Off,
    Corrected,
}

/// The alarm as shipped.
const SHIPPED: Variant = Variant {
    noise: Noise::Corrected,
    confirm: CONFIRM_CHECKS,
    min_points: MIN_CHECK_POINTS,
    aged: Some(Aged {
        accumulating: AGED_CONFIRM_CHECKS,
        turned_over: TURNOVER_CONFIRM_CHECKS,
        min_samples: MIN_AGED_SAMPLES,
    }),
};

/// The alarm before the ages: four consecutive checks for every stack.
const WITHOUT_AGES: Variant = Variant {
    aged: None,
    ..SHIPPED
};

/// A service at the default sample rate, one history point a second, keeping `held`
/// points, checked at every point as the recorder does (whole history, thinned to 200
/// points), judged by each of `variants`:
/// - an LRU cache of 1024 entries of 64 KiB that fills in four points, then evicts its
///   oldest 100 entries for 100 new ones every point;
/// - a burst of 4000 buffers of 16 KiB over ten points every hundred, freed five points
///   later;
/// - churn: 20000 blocks of 2 KiB, a quarter of them freed and replaced every point;
/// - a slow steady state: 200 blocks of 256 KiB, two replaced every point (its estimate a
///   random walk);
/// - from `leak_start`, a leak of 4 KiB objects at 1 % of the heap per 10 points.
///
/// Every block is born at a random tick of the interval before its point, and each point's
/// live sampled blocks are read into [`StackAges`] as the recorder reads them.
fn simulate(
    seed: u64,
    points: usize,
    leak_start: Option<usize>,
    held: usize,
    variants: &[Variant],
) -> Vec<Run> {
    let mut rng = Rng::new(seed);
    let mut sites = [
        Site::new(64 << 10),
        Site::new(16 << 10),
        Site::new(2 << 10),
        Site::new(256 << 10),
        Site::new(4 << 10),
    ];
    sites[2].alloc(&mut rng, 20_000, 0);
    sites[3].alloc(&mut rng, 200, 0);
    let mut h = History::default();
    let mut runs = vec![Run::default(); variants.len()];
    let mut confirming: Vec<BTreeMap<u32, Streak>> = vec![BTreeMap::new(); variants.len()];
    for k in 0..points {
        let [lru, burst, churn, steady, leak] = &mut sites;
        if k < 4 {
            lru.alloc(&mut rng, 256, k);
        } else {
            lru.alloc(&mut rng, 100, k);
            lru.free_oldest(100);
        }
        match k % 100 {
            60..70 => burst.alloc(&mut rng, 400, k),
            75 => burst.clear(),
            _ => {}
        }
        churn.free_random(&mut rng, 5000);
        churn.alloc(&mut rng, 5000, k);
        steady.free_random(&mut rng, 2);
        steady.alloc(&mut rng, 2, k);
        if leak_start.is_some_and(|s| k >= s) {
            let heap: f64 = [&*lru, &*burst, &*churn, &*steady, &*leak]
                .iter()
                .map(|s| s.bytes())
                .sum();
            let n = (heap * 0.001 / leak.size).round() as usize;
            leak.alloc(&mut rng, n, k);
        }
        let now: Vec<Counters> = sites.iter().map(|s| [0, 0, 0, s.estimate()]).collect();
        let t = (k as i64 + 1) * 1_000_000_000;
        h.record(t, (0, 0, 0), &now, held);
        let Some(series) = h.grown_series(0, MAX_TREND_SNAPSHOTS) else {
            continue;
        };
        let mut stamps = Vec::new();
        for (id, s) in sites.iter().enumerate() {
            s.stamps(id as u32, &mut stamps);
        }
        let tick = ((k + 1) as u64 * 1000 / TICK_MILLIS) as u32;
        let ages = StackAges::from_stamps(&stamps, tick, 0);
        let all = candidates(&series, DEFAULT_LEAK_ALPHA, DEFAULT_LEAK_MIN_RATE, RATE);
        let mut site_signals = [[0usize; 3]; 5];
        if let Some(ages) = ages.as_ref()
            && series.times.len() >= MIN_CHECK_POINTS
        {
            for &id in &series.ids {
                let f = Found {
                    id,
                    rate: 0.0,
                    recent: 0.0,
                    p: 0.0,
                    p_noise: 0.0,
                    first: 0,
                    last: 0,
                };
                let said = by_age::signal(&f, &ages.of(id), &series, MIN_AGED_SAMPLES);
                site_signals[id as usize][said as usize] += 1;
            }
        }
        for ((v, run), streak) in variants.iter().zip(&mut runs).zip(&mut confirming) {
            for (a, b) in run
                .site_signals
                .iter_mut()
                .flatten()
                .zip(site_signals.iter().flatten())
            {
                *a += b;
            }
            let level = match v.noise {
                Noise::Off => f64::INFINITY,
                Noise::Corrected => noise_level(DEFAULT_LEAK_ALPHA, series.ids.len()),
            };
            let passed: Vec<Found> = if series.times.len() >= v.min_points.min(held) {
                all.iter().filter(|f| f.p_noise < level).copied().collect()
            } else {
                Vec::new()
            };
            let min_samples = v.aged.map_or(usize::MAX, |a| a.min_samples);
            let passed = aged(passed, &series, ages.as_ref(), min_samples);
            for (f, said) in &passed {
                let i = usize::from(f.id == LEAK);
                run.signals[i][*said as usize] += 1;
            }
            let passed = passed
                .into_iter()
                .map(|(f, said)| {
                    let need = match (said, v.aged) {
                        (AgeSignal::Accumulating, Some(a)) => a.accumulating,
                        (AgeSignal::TurnedOver, Some(a)) => a.turned_over,
                        _ => v.confirm,
                    };
                    (f, need)
                })
                .collect();
            let found: Vec<u32> = confirmed(streak, passed).iter().map(|f| f.id).collect();
            tally(run, &found, k, leak_start);
        }
    }
    runs
}

/// Counts one check's `found` stacks at point `k` into `run`.
fn tally(run: &mut Run, found: &[u32], k: usize, leak_start: Option<usize>) {
    run.checks += 1;
    if found.iter().any(|&id| id != LEAK) {
        run.false_checks += 1;
    }
    for (id, streak) in run.streaks.iter_mut().enumerate() {
        if found.contains(&(id as u32)) {
            run.false_by_site[id] += 1;
            *streak += 1;
            run.longest_false_streak = run.longest_false_streak.max(*streak);
        } else {
            *streak = 0;
        }
    }
    if let Some(s) = leak_start
        && run.leak_found_after.is_none()
        && found.contains(&LEAK)
    {
        run.leak_found_after = Some(k - s);
    }
}

fn one(seed: u64, points: usize, leak_start: Option<usize>, held: usize) -> Run {
    simulate(seed, points, leak_start, held, &[SHIPPED]).remove(0)
}

#[test]
fn no_false_alarm_from_caches_bursts_and_churn_and_a_leak_is_found() {
    // The default history (60 points), over 240 points.
    let quiet = one(1, 240, None, DEFAULT_HISTORY_POINTS);
    assert_eq!(quiet.checks, 238);
    assert_eq!(quiet.false_checks, 0, "{quiet:?}");
    let leaking = one(1, 240, Some(100), DEFAULT_HISTORY_POINTS);
    assert_eq!(leaking.false_checks, 0, "{leaking:?}");
    let after = leaking.leak_found_after.expect("the leak is found");
    assert!(after <= 40, "{leaking:?}");
    // All 240 points held: still quiet.
    let long = one(2, 240, None, 240);
    assert_eq!(long.false_checks, 0, "{long:?}");
}

/// The rates of [`leak_alarm_rates`] on a few seeds, as counts: no false suspect in 20 runs
/// of 240 points, and the leak found within 40 points in most of 10 (192 of 200 over the
/// full simulation; 8 of 10 allows for a draw of slow seeds).
#[test]
fn over_several_seeds_no_false_alarm_and_the_leak_mostly_found_within_40_points() {
    let (mut false_runs, mut found) = (0, 0);
    for seed in 0..10 {
        let q = one(100 + seed, 240, None, DEFAULT_HISTORY_POINTS);
        let l = one(500 + seed, 240, Some(100), DEFAULT_HISTORY_POINTS);
        false_runs += usize::from(q.false_checks > 0) + usize::from(l.false_checks > 0);
        found += usize::from(l.leak_found_after.is_some_and(|d| d <= 40));
    }
    assert_eq!(false_runs, 0);
    assert!(found >= 8, "{found} of 10");
}

/// What the ages say of each site at every check, on a few seeds: the LRU cache and the
/// churn turned over whenever their ages say anything (never accumulating), the slow steady
/// state's oldest blocks predate the history (nothing to say), and the leak accumulates at
/// most checks once it has its first sampled blocks within the history.
#[test]
fn the_ages_tell_the_leak_from_the_cache_and_the_churn() {
    let (mut sites, mut leak_found) = ([[0usize; 3]; 5], 0);
    for seed in 0..3 {
        let run = one(700 + seed, 200, Some(100), 240);
        for (a, b) in sites
            .iter_mut()
            .flatten()
            .zip(run.site_signals.iter().flatten())
        {
            *a += b;
        }
        leak_found += usize::from(run.leak_found_after.is_some());
    }
    let [lru, _burst, churn, steady, leak] = sites;
    let said = |s: [usize; 3]| s.iter().sum::<usize>();
    assert_eq!(lru[0], 0, "{sites:?}");
    assert!(said(lru) > 0 && lru[1] * 10 >= said(lru) * 9, "{sites:?}");
    assert_eq!(churn[0], 0, "{sites:?}");
    assert_eq!(steady[0] + steady[1], 0, "{sites:?}");
    assert!(leak[0] * 2 > said(leak) && leak[1] == 0, "{sites:?}");
    assert_eq!(leak_found, 3);
}

/// The rates of [`simulate`] over many seeds, for BENCHMARKS.md:
/// `cargo test --release -p diag-core --lib leak_alarm_rates -- --ignored --nocapture`.
#[test]
#[ignore = "a simulation over many seeds; prints its rates"]
fn leak_alarm_rates() {
    let mut variants = vec![SHIPPED, WITHOUT_AGES];
    for (accumulating, turned_over, min_samples) in [(1, 4, 8), (1, 8, 8), (1, 15, 8), (1, 10, 6)] {
        variants.push(Variant {
            aged: Some(Aged {
                accumulating,
                turned_over,
                min_samples,
            }),
            ..SHIPPED
        });
    }
    variants.push(Variant {
        confirm: 1,
        aged: None,
        ..SHIPPED
    });
    variants.push(Variant {
        noise: Noise::Off,
        confirm: 1,
        min_points: 3,
        aged: None,
    });
    let seeds: u64 = std::env::var("LEAK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let held: Vec<usize> = match std::env::var("LEAK_HELD") {
        Ok(h) => h.split(',').filter_map(|x| x.parse().ok()).collect(),
        Err(_) => vec![DEFAULT_HISTORY_POINTS, 240],
    };
    for held in held {
        rates(held, seeds, &variants);
    }
}

fn rates(held: usize, seeds: u64, variants: &[Variant]) {
    let mut all: Vec<(Vec<Run>, Vec<Run>)> = Vec::new();
    for seed in 0..seeds {
        let q = simulate(1000 + seed, 240, None, held, variants);
        let l = simulate(5000 + seed, 240, Some(100), held, variants);
        all.push((q, l));
    }
    for (i, v) in variants.iter().enumerate() {
        let (mut runs_with_false, mut false_checks, mut checks) = (0, 0, 0);
        let (mut by_site, mut runs_streak_15) = ([0usize; 4], 0);
        let mut signals = [[0usize; 3]; 2];
        let mut delays = Vec::new();
        for (q, l) in &all {
            for r in [&q[i], &l[i]] {
                runs_with_false += usize::from(r.false_checks > 0);
                runs_streak_15 += usize::from(r.longest_false_streak >= 15);
                false_checks += r.false_checks;
                checks += r.checks;
                for (a, b) in signals.iter_mut().flatten().zip(r.signals.iter().flatten()) {
                    *a += b;
                }
                for (a, b) in by_site.iter_mut().zip(r.false_by_site) {
                    *a += b;
                }
            }
            delays.push(l[i].leak_found_after.unwrap_or(usize::MAX));
        }
        delays.sort_unstable();
        let within = |n: usize| delays.iter().filter(|&&d| d <= n).count();
        let show = |d: usize| {
            if d == usize::MAX {
                "never".to_owned()
            } else {
                d.to_string()
            }
        };
        println!(
            "leak alarm {v:?}, {held} points held, over {seeds} seeds x 2 runs of 240 points: \
             runs with a false suspect {runs_with_false}/{}, with one lasting 15 checks or \
             more {runs_streak_15}/{}; false checks {false_checks}/{checks} (by site: lru, \
             burst, churn, steady {by_site:?}); leak (1 % of the heap per 10 points from point \
             100) found within 20 points {}/{seeds}, 30 {}/{seeds}, 40 {}/{seeds}, by 140 \
             {}/{seeds}; median delay {} points, worst {}; checks passed by other stacks, by \
             what their ages said (accumulating, turned over, nothing) {:?}, by the leak {:?}",
            2 * seeds,
            2 * seeds,
            within(20),
            within(30),
            within(40),
            within(140),
            show(delays[delays.len() / 2]),
            show(delays[delays.len() - 1]),
            signals[0],
            signals[1],
        );
    }
}

mod cost;

#[test]
fn a_site_the_service_cannot_name_is_its_stack_id() {
    use crate::profile::Frame;
    use crate::profile::sites::SiteRules;
    // A stripped binary: every frame an address (the innermost one shared by every stack that
    // allocates through one function), so the site is the stack's id, which the CLI names.
    let raw = [Frame::raw(0x55e0_1000), Frame::raw(0x55e0_2000)];
    let rules = SiteRules::for_stacks([raw.as_slice()]);
    assert_eq!(site_name(7, &rules, &raw), "stack#7");
    // Named: the application's function.
    let named = [
        Frame::named("alloc::raw_vec::finish_grow"),
        Frame::named("myapp::remember"),
        Frame::raw(0x55e0_3000),
    ];
    let rules = SiteRules::for_stacks([named.as_slice()]).with_app_crates(["myapp"]);
    assert_eq!(site_name(7, &rules, &named), "myapp::remember");
}
