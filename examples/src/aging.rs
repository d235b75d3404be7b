//! A workload whose live bytes have three known ages, for `diag ages`: a leak that starts
//! [`LEAK_AFTER`] after [`start`] and keeps [`LEAK_BYTES`] each tick, a cache whose entries
//! are evicted [`CACHE_WINDOW`] after insertion (the least recently inserted first), and churn:
//! buffers that live half a second. One thread, a tick every [`TICK`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One step of the workload.
pub const TICK: Duration = Duration::from_millis(100);
/// When the leak starts, after [`start`].
pub const LEAK_AFTER: Duration = Duration::from_secs(30);
/// Bytes the leak keeps each tick.
pub const LEAK_BYTES: usize = 40 * 1024;
/// How long a cache entry lives.
pub const CACHE_WINDOW: Duration = Duration::from_secs(10);
/// Bytes put in the cache each tick.
pub const CACHE_BYTES: usize = 64 * 1024;
/// Bytes of short-lived buffers allocated each tick (in 16 KiB pieces).
pub const CHURN_BYTES: usize = 1 << 20;
/// Ticks a churn buffer lives.
const CHURN_TICKS: usize = 5;

static LEAKED: AtomicU64 = AtomicU64::new(0);
/// When the leak kept its first bytes, microseconds since the Unix epoch (0: not yet).
static ONSET_MICROS: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static LEAK: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Bytes the leak has kept so far.
pub fn leaked_bytes() -> u64 {
    LEAKED.load(Relaxed)
}

/// When the leak began, seconds since the Unix epoch; `None` before it has.
pub fn onset_unix_secs() -> Option<f64> {
    match ONSET_MICROS.load(Relaxed) {
        0 => None,
        us => Some(us as f64 / 1e6),
    }
}

/// Starts the workload on its own thread; it runs until [`stop`].
pub fn start() -> std::thread::JoinHandle<()> {
    STOP.store(false, Relaxed);
    std::thread::Builder::new()
        .name("aging-workload".into())
        .spawn(run)
        .expect("spawning the workload thread")
}

/// Stops the workload after its current tick.
pub fn stop() {
    STOP.store(true, Relaxed);
}

fn run() {
    let started = Instant::now();
    // Room for every tick's entry up front, so the containers' own buffers (allocated here,
    // once) do not age with the leak or the cache.
    LEAK.lock().unwrap().reserve(1 << 15);
    let mut cache: VecDeque<(Instant, Vec<u8>)> = VecDeque::with_capacity(1024);
    let mut churn: VecDeque<Vec<Vec<u8>>> = VecDeque::with_capacity(CHURN_TICKS + 1);
    let mut next = started;
    while !STOP.load(Relaxed) {
        let now = Instant::now();
        if now >= started + LEAK_AFTER {
            leak_tick();
        }
        cache_tick(&mut cache, now);
        churn_tick(&mut churn);
        next += TICK;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // the workload's pace
        }
    }
}

#[inline(never)]
fn leak_tick() {
    let block = std::hint::black_box(vec![7u8; LEAK_BYTES]);
    LEAK.lock().unwrap().push(block);
    if LEAKED.fetch_add(LEAK_BYTES as u64, Relaxed) == 0 {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        ONSET_MICROS.store(micros, Relaxed);
    }
}

#[inline(never)]
fn cache_tick(cache: &mut VecDeque<(Instant, Vec<u8>)>, now: Instant) {
    while cache
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) >= CACHE_WINDOW)
    {
        cache.pop_front();
    }
    cache.push_back((now, std::hint::black_box(vec![1u8; CACHE_BYTES])));
}

#[inline(never)]
fn churn_tick(churn: &mut VecDeque<Vec<Vec<u8>>>) {
    if churn.len() >= CHURN_TICKS {
        churn.pop_front();
    }
    let pieces = (0..CHURN_BYTES / (16 << 10))
        .map(|i| std::hint::black_box(vec![i as u8; 16 << 10]))
        .collect();
    churn.push_back(pieces);
}
