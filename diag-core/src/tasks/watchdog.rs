//! The watchdog thread: every threshold/4 it scans the poll slots; a poll running past the
//! threshold becomes a blocking event, with the blocked thread's stack captured by signal while
//! it is still blocked. Ongoing events get their duration updated, and the final one when the
//! poll ends.

use std::collections::HashMap;
use std::sync::atomic::Ordering::*;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use super::slots::{self, DONE, IDLE, REQUESTED, SKIPPED, SLOTS, THRESHOLD_NS, WRITING};
use super::{events, health, signal};
use crate::padded::Padded;

/// How long the watchdog waits for a signalled thread to write its stack.
const CAPTURE_WAIT: Duration = Duration::from_millis(50);
/// Scans that retry a capture skipped because the thread was inside the unwinder.
const MAX_RETRIES: u32 = 8;

/// Captures that timed out or could not be signalled (events recorded without a stack).
pub(crate) static CAPTURE_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Read by every instrumented request, written once.
static STARTED: Padded<AtomicBool> = Padded(AtomicBool::new(false));

/// Sets the threshold (at least 1 ms).
pub(crate) fn set_threshold(d: Duration) {
    let ns = d.as_nanos().clamp(1_000_000, u64::MAX as u128) as u64;
    THRESHOLD_NS.store(ns, Relaxed);
}

/// Starts the watchdog thread once.
#[inline]
pub(crate) fn ensure_started() {
    // A plain load first: this runs on every instrumented request, and a read-modify-write
    // would bounce the cache line between workers.
    if STARTED.load(Acquire) || STARTED.swap(true, AcqRel) {
        return;
    }
    let r = std::thread::Builder::new()
        .name("diag-watchdog".into())
        .spawn(run);
    if r.is_err() {
        STARTED.store(false, Release);
    }
}

fn run() {
    crate::alloc_state::ignore_this_thread();
    let _ = signal::unavailable_reason(); // installs the handler
    let mut reported: HashMap<usize, u64> = HashMap::new();
    let mut retries: HashMap<(usize, u64), u32> = HashMap::new();
    loop {
        let threshold_ns = THRESHOLD_NS.load(Relaxed);
        std::thread::sleep(Duration::from_nanos((threshold_ns / 4).max(1_000_000)));
        scan(threshold_ns, &mut reported, &mut retries);
        refresh_ongoing();
    }
}

fn scan(
    threshold_ns: u64,
    reported: &mut HashMap<usize, u64>,
    retries: &mut HashMap<(usize, u64), u32>,
) {
    for (i, slot) in SLOTS.iter().enumerate() {
        if slot.used.load(Acquire) == 0 {
            continue;
        }
        let word = slot.word.load(Acquire);
        if word == 0 || reported.get(&i) == Some(&word) {
            continue;
        }
        let elapsed_ns = slots::elapsed_us(word, slots::now_us()).saturating_mul(1000);
        if elapsed_ns < threshold_ns {
            continue;
        }
        let name_id = slot.name_id.load(Relaxed);
        slot.flagged.store(word, Release);
        let frames = match capture(slot, word) {
            Capture::Stack(f) => f,
            Capture::Retry => {
                let n = retries.entry((i, word)).or_insert(0);
                *n += 1;
                if *n < MAX_RETRIES {
                    continue;
                }
                CAPTURE_FAILURES.fetch_add(1, Relaxed);
                Vec::new()
            }
            Capture::Ended => continue,
            Capture::Failed => {
                CAPTURE_FAILURES.fetch_add(1, Relaxed);
                Vec::new()
            }
        };
        retries.retain(|(s, _), _| *s != i);
        reported.insert(i, word);
        let elapsed_ns = slots::elapsed_us(word, slots::now_us()).saturating_mul(1000);
        let (name, thread) = (health::name_of(name_id), slots::thread_name(i));
        super::log::blocking_poll(&name, &thread, elapsed_ns, &frames);
        events::record(name, thread, i, word, elapsed_ns, frames);
        warm_symbolizer();
    }
}

enum Capture {
    Stack(Vec<usize>),
    /// The thread was inside the unwinder: try again on the next scan.
    Retry,
    /// The poll ended before the handler ran.
    Ended,
    Failed,
}

fn capture(slot: &slots::Slot, word: u64) -> Capture {
    if signal::unavailable_reason().is_some() {
        return Capture::Failed;
    }
    // A previous capture that finished after we stopped waiting: reclaim the slot.
    let _ = slot.capture.compare_exchange(DONE, IDLE, AcqRel, Relaxed);
    let _ = slot
        .capture
        .compare_exchange(SKIPPED, IDLE, AcqRel, Relaxed);
    slot.capture_word.store(word, Relaxed);
    if slot
        .capture
        .compare_exchange(IDLE, REQUESTED, AcqRel, Relaxed)
        .is_err()
    {
        return Capture::Failed; // a handler is still writing an old capture
    }
    // The handler cannot rescan the module list: do it here if a library came or went.
    crate::stack::refresh_modules();
    if !signal::request(slot.tid.load(Acquire)) {
        let _ = slot
            .capture
            .compare_exchange(REQUESTED, IDLE, AcqRel, Relaxed);
        return Capture::Failed;
    }
    let deadline = Instant::now() + CAPTURE_WAIT;
    loop {
        match slot.capture.load(Acquire) {
            DONE => {
                let n = slot.depth.load(Relaxed).min(slots::MAX_FRAMES);
                let frames = slot.frames[..n].iter().map(|f| f.load(Relaxed)).collect();
                slot.capture.store(IDLE, Release);
                return Capture::Stack(frames);
            }
            SKIPPED => {
                slot.capture.store(IDLE, Release);
                return if slot.word.load(Acquire) == word {
                    Capture::Retry
                } else {
                    Capture::Ended
                };
            }
            WRITING | REQUESTED if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => {
                // Not delivered in time (or still writing): withdraw the request if we can.
                let _ = slot
                    .capture
                    .compare_exchange(REQUESTED, IDLE, AcqRel, Relaxed);
                return Capture::Failed;
            }
        }
    }
}

/// Brings the durations of ongoing events up to date; closes those whose poll ended.
fn refresh_ongoing() {
    let now = slots::now_us();
    for (i, word) in events::ongoing() {
        let Some(slot) = SLOTS.get(i) else { continue };
        if slot.word.load(Acquire) == word {
            events::update(
                i,
                word,
                slots::elapsed_us(word, now).saturating_mul(1000),
                false,
            );
        } else if slot.last_word.load(Acquire) == word {
            events::update(i, word, slot.last_dur_ns.load(Relaxed), true);
        } else {
            events::update(i, word, 0, true);
        }
    }
}

/// After the first event, loads the symbolizer's debug info on a background thread (over a
/// second in debug builds), so the first `/debug/tasks` does not pay for it.
fn warm_symbolizer() {
    static WARMED: AtomicBool = AtomicBool::new(false);
    if WARMED.swap(true, AcqRel) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("diag-symbolize".into())
        .spawn(|| {
            crate::alloc_state::ignore_this_thread();
            let _ = events::view();
        });
}
