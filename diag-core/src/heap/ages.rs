//! The live sampled blocks of each stack, by age: what splits a live heap profile's in-use
//! values by the `age` label ([`AGE_BUCKETS`]) and lists each block's age in `age_secs`.
//!
//! Read from the list of live sampled blocks ([`live`](super::live)) in one pass under its
//! lock, into a vector reserved beforehand; grouped and labelled after the lock is released.
//! The number of samples a stack adds is bounded by the buckets (8), the labels by its live
//! sampled blocks (one a sample-rate of live bytes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::alloc::TRACKED;
use super::history_ages::Stamp;
use super::live::{self, Block};
use crate::names::{AGE_LABEL, AGE_SECS_LABEL};
use crate::profile::{AGE_BUCKETS, age_bucket};

/// Blocks past the tracked count that the pass has room for (samples taken since the count
/// was read); any more are counted in [`LiveAges::missed`].
const SLACK: usize = 4096;

static ON: AtomicBool = AtomicBool::new(true);

/// Sets whether live heap profiles split each stack's in-use values by age (the `age` and
/// `age_secs` labels; on by default). Off, a stack is one sample as before ages, and a
/// snapshot does not read the list of live blocks. Blocks are stamped either way.
pub fn set_profile_ages(on: bool) {
    ON.store(on, Relaxed);
}

/// Whether live heap profiles carry ages (see [`set_profile_ages`]).
pub fn profile_ages() -> bool {
    ON.load(Relaxed)
}

/// The live sampled blocks of one stack in one age bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// The index in [`AGE_BUCKETS`].
    pub(crate) index: usize,
    /// Summed weight in objects (fixed point).
    pub(crate) objects_fp: u64,
    /// Summed weight in bytes.
    pub(crate) bytes: u64,
    /// Each block's age, whole seconds (rounded), youngest first.
    pub(crate) ages_secs: Vec<u64>,
}

impl Bucket {
    /// The sample labels of this bucket: its `age` and each block's `age_secs`.
    pub(crate) fn labels(&self) -> impl Iterator<Item = (String, String)> + '_ {
        std::iter::once((AGE_LABEL.to_owned(), AGE_BUCKETS[self.index].0.to_owned())).chain(
            self.ages_secs
                .iter()
                .map(|a| (AGE_SECS_LABEL.to_owned(), a.to_string())),
        )
    }
}

/// Every stack's live sampled blocks by age, at one moment.
#[derive(Debug, Default)]
pub(crate) struct LiveAges {
    by_stack: HashMap<u32, Vec<Bucket>>,
    /// Live blocks the pass had no room for (left out of the split).
    pub(crate) missed: usize,
}

impl LiveAges {
    /// Reads the live sampled blocks now.
    pub(crate) fn read() -> Self {
        let mut blocks = Vec::with_capacity(TRACKED.load(Relaxed) + SLACK);
        let missed = live::collect(&mut blocks);
        Self {
            by_stack: group(blocks),
            missed,
        }
    }

    /// The blocks a heap history point kept, with their ages at that point's clock `tick`.
    pub(crate) fn at_point(stamps: &[Stamp], tick: u32, missed: usize) -> Self {
        let blocks = stamps
            .iter()
            .map(|s| Block {
                stack: s.stack,
                age_millis: live::age_millis(tick, s.time),
                objects_fp: s.objects_fp,
                bytes: s.bytes,
            })
            .collect();
        Self {
            by_stack: group(blocks),
            missed,
        }
    }

    /// The buckets of stack `id`, youngest first; `None` if it has no live sampled block.
    pub(crate) fn of(&self, id: u32) -> Option<&[Bucket]> {
        self.by_stack.get(&id).map(Vec::as_slice)
    }
}

/// The process's uptime in seconds: the system's (`/proc/uptime`) less the process's start
/// (`/proc/self/stat`, clock ticks since boot); 0 where `/proc` cannot say. Both clocks count
/// from boot, as the monotonic clock of the blocks' times does (but for time suspended).
pub(crate) fn process_uptime_secs() -> f64 {
    fn read() -> Option<f64> {
        let system: f64 = std::fs::read_to_string("/proc/uptime")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces and parentheses): the start
        // time is field 22 of the line, the 20th after it.
        let rest = &stat[stat.rfind(')')? + 1..];
        let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let tick = if tick > 0 { tick as f64 } else { 100.0 };
        Some((system - start_ticks / tick).max(0.0))
    }
    read().unwrap_or(0.0)
}

fn group(mut blocks: Vec<Block>) -> HashMap<u32, Vec<Bucket>> {
    blocks.sort_unstable_by_key(|b| (b.stack, b.age_millis));
    let mut by_stack: HashMap<u32, Vec<Bucket>> = HashMap::new();
    for b in blocks {
        let index = age_bucket(b.age_millis);
        let buckets = by_stack.entry(b.stack).or_default();
        if buckets.last().is_none_or(|l| l.index != index) {
            buckets.push(Bucket {
                index,
                ..Bucket::default()
            });
        }
        if let Some(last) = buckets.last_mut() {
            last.objects_fp += b.objects_fp;
            last.bytes += b.bytes;
            last.ages_secs.push((b.age_millis + 500) / 1000);
        }
    }
    by_stack
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_group_by_stack_and_bucket() {
        let block = |stack, age_millis| Block {
            stack,
            age_millis,
            objects_fp: 1024,
            bytes: 100,
        };
        let g = group(vec![
            block(2, 30_000),
            block(1, 400),
            block(2, 2_600),
            block(2, 45_000),
            block(1, 700),
        ]);
        assert_eq!(g[&1].len(), 1);
        assert_eq!((g[&1][0].index, g[&1][0].bytes), (0, 200));
        assert_eq!(g[&1][0].ages_secs, [0, 1]);
        let two: Vec<(usize, Vec<u64>)> = g[&2]
            .iter()
            .map(|b| (b.index, b.ages_secs.clone()))
            .collect();
        assert_eq!(two, [(1, vec![3]), (2, vec![30, 45])]);
        let labels: Vec<_> = g[&2][1].labels().collect();
        assert_eq!(labels[0], ("age".to_owned(), "10s-1m".to_owned()));
        assert_eq!(labels[1..].len(), 2);
    }

    #[test]
    fn the_uptime_is_this_processs() {
        let u = process_uptime_secs();
        let machine: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Counted in clock ticks, so a process younger than one tick reads 0; never more than
        // the machine's uptime, and well short of it (a test runs long after boot: building it
        // alone takes longer than a second).
        assert!(
            u >= 0.0 && u <= machine,
            "{u} against the machine's {machine}"
        );
        assert!(
            machine - u > 1.0,
            "{u}: the machine's uptime, not this process's"
        );
        // And it is read, not the fallback 0: within a tick or two it is above zero.
        let start = std::time::Instant::now();
        while process_uptime_secs() == 0.0 {
            assert!(start.elapsed().as_secs() < 5, "the uptime stays 0");
            // Ticks are 10 ms on Linux: poll at that pace.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
