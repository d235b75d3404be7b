//! The leak alarm's second signal: the ages of a stack's live sampled blocks, which say how
//! many consecutive checks a rise that the rank tests and the noise test found must pass:
//! [`AGED_CONFIRM_CHECKS`](super::AGED_CONFIRM_CHECKS) (1) when they say the stack
//! accumulates, [`TURNOVER_CONFIRM_CHECKS`](super::TURNOVER_CONFIRM_CHECKS) (10) when they
//! say it turned over, [`CONFIRM_CHECKS`](super::CONFIRM_CHECKS) (4) when they say neither.
//!
//! The consecutive checks are there for a cache under fast turnover whose estimate makes a
//! rare excursion: its two ends at opposite extremes, a rise for a few checks. Its blocks
//! say what it is. Take the stack's oldest live sampled block, born at `b`, and any point of
//! the series at or before `b`: every sampled block the stack held at that point was born no
//! later than `b` and is not alive now (it would be older than the oldest), so the stack's
//! estimate at that point counts bytes that have all been freed since. A stack that
//! accumulates since its rise began freed little of what it held before; a cache whose
//! blocks all live less than its window held, a window ago, about what it holds now, and
//! freed all of it. The rule, on the stack's live sampled blocks at the check (ages
//! `a_1 <= ... <= a_n`, seconds):
//!
//! 1. at least [`MIN_AGED_SAMPLES`] (8) of them, else nothing is said;
//! 2. the oldest was born after the series' first point (the rise began within what the
//!    check sees, so a point before it exists), else nothing is said;
//! 3. at the last point at or before its birth, the stack's estimate (all of it freed since)
//!    was more than [`MAX_FREED_SHARE`] (1/2) of its estimate now: **turned over**;
//! 4. otherwise, if the ages are spread evenly from now back to the onset, the `leak-like`
//!    test of `diag ages` ([`spread_evenly`] over `[0, a_n (n + 1) / n]`, Kolmogorov-Smirnov
//!    at 1 %, or a distance up to 0.2 past 66 blocks): **accumulating**; if not (a step,
//!    bursts), nothing is said.
//!
//! `diag ages`'s own verdict cannot serve as it is: it tells a leak from a cache by the
//! process's uptime (`bounded` while the span of the ages is under a quarter of it), so a
//! leak that began 30 points ago in a process up for 130 points is `bounded`; the alarm has
//! the series, which say what the stack held before its oldest block, and uses that instead.
//! Condition 3 has no sampling noise in "freed" (those sampled blocks are gone), and a cache
//! at a steady level is past it by a factor of two, not by a tail probability. In the
//! simulation (`leaks/tests.rs`, 200 seeds x 2 runs x 2 history sizes) every check in which
//! a stack other than the leak passed the rank and noise tests found it turned over (26 of
//! 26), none accumulating. What the ages cannot tell from a leak is a real rise that ends
//! later (a burst still growing is accumulating): the rank tests and the noise test keep
//! those out, as they did before. A stack that turned over and still rises (a time-bounded
//! cache under growing traffic, a leak sharing its stack with a larger cache) is a suspect
//! after ten checks.
//!
//! When the ages are not recorded (`heap::set_profile_ages(false)`) or the pass over the live
//! blocks missed some, nothing is said of any stack: four consecutive checks, as without ages.

use super::Found;
use crate::heap::history::Series;
use crate::heap::history_ages::Stamp;
use crate::heap::live;
use crate::profile::ages::rule::{span_estimate, spread_evenly};

/// The fewest live sampled blocks whose ages can confirm a stack.
pub(crate) const MIN_AGED_SAMPLES: usize = 8;

/// The most a stack may have freed, as a share of what it holds now, since just before its
/// oldest live sampled block was born, for its ages to confirm it.
pub(crate) const MAX_FREED_SHARE: f64 = 0.5;

/// The ages of every stack's live sampled blocks at one point: (stack, age in seconds),
/// sorted by stack and then age.
#[derive(Debug, Clone, Default)]
pub(crate) struct StackAges {
    blocks: Vec<(u32, f64)>,
}

impl StackAges {
    /// The ages at clock `tick` of the blocks `stamps` (as a history point records them);
    /// `None` if the pass that read them missed some (`missed > 0`): an incomplete set could
    /// lack a stack's oldest block.
    pub(crate) fn from_stamps(stamps: &[Stamp], tick: u32, missed: usize) -> Option<Self> {
        if missed > 0 {
            return None;
        }
        let mut blocks: Vec<(u32, f64)> = stamps
            .iter()
            .map(|s| (s.stack, live::age_millis(tick, s.time) as f64 / 1e3))
            .collect();
        blocks.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        Some(Self { blocks })
    }

    /// The ages of stack `id`'s live sampled blocks, youngest first.
    pub(crate) fn of(&self, id: u32) -> Vec<f64> {
        let start = self.blocks.partition_point(|b| b.0 < id);
        let end = self.blocks.partition_point(|b| b.0 <= id);
        self.blocks[start..end].iter().map(|b| b.1).collect()
    }

    /// Bytes held (measured by the cost test).
    #[cfg(test)]
    pub(crate) fn memory_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<(u32, f64)>()
    }
}

/// What the ages of a stack's live sampled blocks say of its rise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgeSignal {
    /// It accumulates since its rise began: conditions 1 to 4 of the module docs hold.
    Accumulating,
    /// It turned over: conditions 1 and 2 hold, and since just before its oldest live
    /// sampled block was born it freed more than [`MAX_FREED_SHARE`] of what it holds now.
    TurnedOver,
    /// Nothing either way: too few blocks, the oldest older than the series, ages spread
    /// unevenly, or no ages recorded.
    Unknown,
}

/// What the ages of `f`'s stack (`ages`, seconds at the series' last point, sorted) say of
/// its rise, by the rule in the module docs, with at least `min_samples` blocks.
pub(crate) fn signal(f: &Found, ages: &[f64], series: &Series, min_samples: usize) -> AgeSignal {
    let (Some(&oldest), Some(&now)) = (ages.last(), series.times.last()) else {
        return AgeSignal::Unknown;
    };
    let Ok(row) = series.ids.binary_search(&f.id) else {
        return AgeSignal::Unknown;
    };
    let m = series.times.len();
    let values = &series.values[row * m..(row + 1) * m];
    let born = now - (oldest * 1e9) as i64;
    // The last point at or before the oldest block's birth (condition 2: there is one).
    let before = series.times.partition_point(|&t| t <= born);
    if ages.len() < min_samples || before == 0 {
        return AgeSignal::Unknown;
    }
    let freed = values[before - 1] as f64;
    if freed > MAX_FREED_SHARE * values[m - 1] as f64 {
        AgeSignal::TurnedOver
    } else if spread_evenly(ages, span_estimate(ages)) {
        AgeSignal::Accumulating
    } else {
        AgeSignal::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::leaks::tests::found;

    /// One stack over points a second apart, from second 1.
    fn series(values: &[u64]) -> Series {
        Series {
            times: (1..=values.len() as i64)
                .map(|k| k * 1_000_000_000)
                .collect(),
            ids: vec![7],
            values: values.to_vec(),
        }
    }

    #[test]
    fn a_rise_that_freed_nothing_accumulates_and_a_cache_turned_over() {
        // 12 blocks born one every 2 s over the last 24 s of 40; the stack held nothing
        // before: a leak.
        let ages: Vec<f64> = (0..12).map(|k| 1.0 + 2.0 * k as f64).collect();
        let mut rising = vec![0u64; 40];
        for (k, v) in rising.iter_mut().enumerate().skip(16) {
            *v = (k as u64 - 15) * 100;
        }
        let s = series(&rising);
        let judge = |id, ages: &[f64], s: &Series| signal(&found(id), ages, s, 8);
        assert_eq!(judge(7, &ages, &s), AgeSignal::Accumulating);
        // Too few of them.
        assert_eq!(judge(7, &ages[..5], &s), AgeSignal::Unknown);
        // The same ages on a stack that held as much before the oldest was born: a cache
        // turning over (everything it held then is gone).
        let level: Vec<u64> = (0..40).map(|k| 2000 + (k % 3) * 10).collect();
        assert_eq!(judge(7, &ages, &series(&level)), AgeSignal::TurnedOver);
        // Older than the series: nothing says what was freed.
        let old: Vec<f64> = ages.iter().map(|a| a * 2.0).collect();
        assert_eq!(judge(7, &old, &s), AgeSignal::Unknown);
        // Born all at once (a step), not steadily.
        let step = vec![20.0; 12];
        assert_eq!(judge(7, &step, &s), AgeSignal::Unknown);
        // Another stack's ages do not count.
        assert_eq!(judge(8, &ages, &s), AgeSignal::Unknown);
    }

    #[test]
    fn ages_are_grouped_by_stack_from_the_points_stamps() {
        let stamp = |addr, stack, time| Stamp {
            addr,
            time,
            stack,
            objects_fp: 1,
            bytes: 4096,
        };
        // Ticks of 100 ms: the clock at tick 500.
        let stamps = [stamp(1, 3, 400), stamp(2, 2, 490), stamp(3, 3, 480)];
        let a = StackAges::from_stamps(&stamps, 500, 0).unwrap();
        assert_eq!(a.of(3), [2.0, 10.0]);
        assert_eq!(a.of(2), [1.0]);
        assert!(a.of(4).is_empty());
        assert!(StackAges::from_stamps(&stamps, 500, 1).is_none());
    }
}
