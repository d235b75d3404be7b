//! What one check costs, with the ages: a measurement for BENCHMARKS.md.

use super::*;

/// One check's cost with 10k stacks and 60 points, for BENCHMARKS.md:
/// `cargo test --release -p diag-core --lib leak_check_cost -- --ignored --nocapture`.
/// - the classification: 10k series of 60 points a minute apart, every one ending higher
///   than it began (so all are classified), a third leaning up enough to take the full
///   classification, the rest dismissed by the sign test;
/// - the copy under the history's lock: a history of 10k stacks and 60 points in which 40 %
///   of the stacks change at every point (all 10k changing would pass the history's cap of
///   256 Ki entries: it would hold 27 points).
#[test]
#[ignore = "a measurement; prints its time and memory"]
fn leak_check_cost() {
    let (stacks, points) = (10_000usize, 60usize);
    let mut rng = Rng::new(7);
    let mut values = vec![0u64; stacks * points];
    for i in 0..stacks {
        let up = if i % 3 == 0 { 0.85 } else { 0.5 };
        let mut v = 1u64 << 20;
        for j in 0..points {
            v = if rng.unit() < up {
                v + 4096 + rng.below(4096) as u64
            } else {
                v.saturating_sub(4096)
            };
            values[i * points + j] = v;
        }
        // Ends higher than it began, as every series the check classifies.
        values[i * points + points - 1] = values[i * points + points - 1].max((1 << 20) + 1);
    }
    let series = Series {
        times: (0..points as i64)
            .map(|j| (j + 1) * 60_000_000_000)
            .collect(),
        ids: (0..stacks as u32).collect(),
        values,
    };
    let mut times = Vec::new();
    let mut found = Vec::new();
    // Another level than the other tests': the first call builds the null distribution.
    let alpha = 0.0099;
    // Wall time and this thread's CPU time (what the check takes from a shared machine).
    let mut cpu = Vec::new();
    for _ in 0..5 {
        let (t0, c0) = (std::time::Instant::now(), thread_cpu_ns());
        found = suspects(&series, alpha, DEFAULT_LEAK_MIN_RATE, RATE);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        cpu.push((thread_cpu_ns() - c0) as f64 / 1e6);
    }
    let mut h = History::default();
    let mut level: Vec<u64> = vec![1 << 20; stacks];
    for k in 0..points {
        for v in level.iter_mut() {
            if rng.unit() < 0.4 {
                *v = if rng.unit() < 0.55 {
                    *v + 4096
                } else {
                    v.saturating_sub(4096)
                };
            }
        }
        let now: Vec<Counters> = level.iter().map(|&v| [0, 0, 0, v]).collect();
        h.record((k as i64 + 1) * 60_000_000_000, (0, 0, 0), &now, 1440);
    }
    let mut copy = f64::MAX;
    let mut kept = (0, 0, 0);
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        let s = h.grown_series(0, MAX_TREND_SNAPSHOTS).unwrap();
        copy = copy.min(t0.elapsed().as_secs_f64() * 1e3);
        kept = (
            s.times.len(),
            s.ids.len(),
            s.values.capacity() * 8 + s.ids.capacity() * 4 + stacks * 32,
        );
    }
    let warm = times[1..].iter().copied().fold(f64::MAX, f64::min);
    let warm_cpu = cpu[1..].iter().copied().fold(f64::MAX, f64::min);
    let classified_bytes = series.values.len() * 8 + series.ids.len() * 4 + points * 8;
    println!(
        "leak check, {stacks} stacks x {points} points, all classified: {warm:.1} ms \
         ({warm_cpu:.1} ms of CPU; first check, building the rank test's null distribution: \
         {:.1} ms, {:.1} ms of CPU), {} suspects, \
         series {:.1} MiB; copy under the history's lock ({} points held, {} of {stacks} \
         stacks grew): {copy:.2} ms, {:.1} MiB (series + one copy of the counters)",
        times[0],
        cpu[0],
        found.len(),
        classified_bytes as f64 / (1 << 20) as f64,
        kept.0,
        kept.1,
        kept.2 as f64 / (1 << 20) as f64,
    );
    // The ages: 10 live sampled blocks a stack (100k blocks: some 50 GiB live at the default
    // rate), read into `StackAges` at every point; then every stack judged by its ages, as
    // if all 10k had passed the rank tests (at most a few do).
    let tick = (points as u64 * 60_000 / TICK_MILLIS) as u32;
    let stamps: Vec<Stamp> = (0..stacks * 10)
        .map(|i| Stamp {
            addr: i,
            time: rng.below(tick as usize) as u32,
            stack: (i % stacks) as u32,
            objects_fp: 1,
            bytes: 4096,
        })
        .collect();
    let all: Vec<Found> = series
        .ids
        .iter()
        .map(|&id| Found {
            last: 1,
            ..super::found(id)
        })
        .collect();
    let (mut read, mut judged, mut held, mut yes) = (f64::MAX, f64::MAX, 0, 0);
    for _ in 0..5 {
        let c0 = thread_cpu_ns();
        let ages = StackAges::from_stamps(&stamps, tick, 0).unwrap();
        let c1 = thread_cpu_ns();
        let out = aged(all.clone(), &series, Some(&ages), MIN_AGED_SAMPLES);
        let c2 = thread_cpu_ns();
        read = read.min((c1 - c0) as f64 / 1e6);
        judged = judged.min((c2 - c1) as f64 / 1e6);
        held = ages.memory_bytes();
        yes = out
            .iter()
            .filter(|(_, s)| *s == AgeSignal::Accumulating)
            .count();
    }
    println!(
        "leak check's ages, {} live sampled blocks over {stacks} stacks: read and sorted \
         {read:.2} ms of CPU, {:.1} MiB; all {stacks} stacks judged by their ages {judged:.2} \
         ms of CPU ({yes} confirmed)",
        stamps.len(),
        held as f64 / (1 << 20) as f64,
    );
}
