//! Event-loop lag: a probe task on the application's runtime asks for a 10 ms timer again and
//! again and records how late it actually runs (Node's `monitorEventLoopDelay`). Kept in
//! per-second log-bucket histograms over a 10 s window, so memory is fixed: one probe per
//! watched runtime (`runtimes.rs`).

use std::sync::atomic::Ordering::*;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::slots::now_us;
use crate::wire::Lag;

/// The probe's timer interval.
const INTERVAL: Duration = Duration::from_millis(10);
/// One-second histograms kept (the window).
const WINDOW_SECS: usize = 10;
/// Exact buckets below this many µs, then 4 buckets per power of two.
const LINEAR: u64 = 16;
const BUCKETS: usize = 128;

#[derive(Clone, Copy)]
struct Hist {
    second: u64,
    counts: [u32; BUCKETS],
    max_us: u64,
}

impl Hist {
    const EMPTY: Hist = Hist {
        second: u64::MAX,
        counts: [0; BUCKETS],
        max_us: 0,
    };
}

fn bucket(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as u64; // >= 4
    let sub = (us >> (e - 2)) & 3;
    ((LINEAR + (e - 4) * 4 + sub) as usize).min(BUCKETS - 1)
}

/// The midpoint of a bucket, in µs.
fn bucket_value(b: usize) -> u64 {
    let b = b as u64;
    if b < LINEAR {
        return b;
    }
    let e = (b - LINEAR) / 4 + 4;
    let sub = (b - LINEAR) % 4;
    let lo = (1u64 << e) + sub * (1u64 << (e - 2));
    lo + (1u64 << (e - 2)) / 2
}

/// One runtime's probe: its window of per-second histograms and the timer it waits on.
pub(crate) struct Probe {
    hists: Mutex<[Hist; WINDOW_SECS]>,
    last_us: AtomicU64,
    /// When the probe's current timer is due (µs since diag's epoch); 0 before the first.
    due_us: AtomicU64,
    /// False once the probe's task was dropped (its runtime shut down).
    running: AtomicBool,
}

impl Probe {
    /// A probe not yet started.
    pub(crate) fn new() -> Self {
        Self {
            hists: Mutex::new([Hist::EMPTY; WINDOW_SECS]),
            last_us: AtomicU64::new(0),
            due_us: AtomicU64::new(0),
            running: AtomicBool::new(true),
        }
    }

    fn record(&self, lag_us: u64, now: u64) {
        self.last_us.store(lag_us, Relaxed);
        let second = now / 1_000_000;
        let mut h = self.hists.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut h[(second % WINDOW_SECS as u64) as usize];
        if slot.second != second {
            *slot = Hist::EMPTY;
            slot.second = second;
        }
        slot.counts[bucket(lag_us)] += 1;
        slot.max_us = slot.max_us.max(lag_us);
    }

    /// True while its task runs.
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Relaxed)
    }

    /// Spawns the probe's task on `handle`'s runtime; `on_stop` runs when the task is
    /// dropped (the runtime shut down).
    pub(crate) fn start(
        self: &Arc<Self>,
        handle: &tokio::runtime::Handle,
        on_stop: impl FnOnce() + Send + 'static,
    ) {
        struct Running<S: FnOnce()>(Arc<Probe>, Option<S>);
        impl<S: FnOnce()> Drop for Running<S> {
            fn drop(&mut self) {
                self.0.running.store(false, Release);
                self.0.due_us.store(0, Release);
                if let Some(f) = self.1.take() {
                    f();
                }
            }
        }
        let running = Running(self.clone(), Some(on_stop));
        handle.spawn(async move {
            let probe = &running.0;
            loop {
                let due = now_us() + INTERVAL.as_micros() as u64;
                probe.due_us.store(due, Release);
                tokio::time::sleep(INTERVAL).await;
                let now = now_us();
                probe.record(now.saturating_sub(due), now);
            }
        });
    }

    /// This probe's figures.
    pub(crate) fn view(&self) -> Lag {
        view(std::slice::from_ref(&self))
    }
}

/// The figures of `probes` together: their samples in one histogram, the most overdue timer.
pub(crate) fn view(probes: &[&Probe]) -> Lag {
    let now = now_us();
    let second = now / 1_000_000;
    let mut counts = [0u64; BUCKETS];
    let mut max_us = 0;
    let (mut last, mut overdue) = (0, 0);
    for p in probes {
        let h = p.hists.lock().unwrap_or_else(|e| e.into_inner());
        for s in h.iter() {
            if s.second != u64::MAX && second.saturating_sub(s.second) < WINDOW_SECS as u64 {
                for (c, n) in counts.iter_mut().zip(s.counts.iter()) {
                    *c += u64::from(*n);
                }
                max_us = max_us.max(s.max_us);
            }
        }
        drop(h);
        let due = p.due_us.load(Acquire);
        if due != 0 {
            overdue = overdue.max(now.saturating_sub(due));
        }
        last = last.max(p.last_us.load(Relaxed));
    }
    let current = last.max(overdue);
    let total: u64 = counts.iter().sum();
    let pct = |p: f64| -> u64 {
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(b).min(max_us);
            }
        }
        max_us
    };
    let ms = |us: u64| us as f64 / 1000.0;
    Lag {
        running: probes.iter().any(|p| p.is_running()),
        current_ms: ms(current),
        p50_ms: ms(pct(0.50)),
        p99_ms: ms(pct(0.99)),
        max_ms: ms(max_us.max(overdue)),
        window_secs: WINDOW_SECS as u64,
        samples_in_window: total,
        interval_ms: INTERVAL.as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_midpoints_fall_inside() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1_000,
            10_000,
            1_000_000,
            1 << 40,
        ] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            if (LINEAR..1 << 30).contains(&us) {
                assert_eq!(bucket(bucket_value(b)), b, "{us}");
                let v = bucket_value(b) as f64;
                assert!((v - us as f64).abs() / (us as f64) < 0.25, "{us} -> {v}");
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }
}
