//! Leak assertions in tests: run a closure under exact counting and assert how much memory it
//! left behind, with the sites that hold it when it left too much.
//!
//! ```no_run
//! #[global_allocator]
//! static A: diag_core::DiagAlloc = diag_core::DiagAlloc::system();
//!
//! # fn work() {}
//! let m = diag_core::testing::measure(|| work());
//! m.assert_live_growth_at_most(64 * 1024);
//! ```
//!
//! **Parallel test threads.** The verdict is *thread-scoped*: it reads this thread's own exact
//! counters (every allocation and free the thread makes is counted, whatever the sample rate),
//! so tests running on other threads cannot move it. It counts what this thread allocates and
//! frees while the closure runs: a block the closure hands to another thread that frees it
//! still counts as growth, and work the closure sends to other threads (a thread pool, a
//! runtime's workers) is not counted; run such work on the calling thread to measure it.
//!
//! The *sites* printed on failure come from the heap profile, which is process-wide: while
//! the closure runs the sample rate is 1 (every allocation recorded with its stack), and only
//! samples labelled with this thread's name are shown. The sample rate is one setting for the
//! process, so measurements take a **process lock**: two tests that measure at once take turns
//! (the rate is restored after each). Tests that do not measure are not held up, but their
//! allocations are recorded too while a measurement runs (slower, not counted). A thread name
//! is 15 bytes in the kernel's view, so two test threads whose names share their first 15
//! bytes can see each other's sites (never each other's counts).

use std::sync::Mutex;

use crate::alloc_state::{IgnoreAllocs, app_thread_totals};
use crate::heap;
use crate::profile::{DiffOptions, Profile, SiteDelta, diff, sites};

/// Sites [`Measured::assert_live_growth_at_most`] prints on failure.
pub const SITES_SHOWN: usize = 5;

/// Frames of each site's stack printed on failure.
const FRAMES_SHOWN: usize = 6;

static LOCK: Mutex<()> = Mutex::new(());

/// What [`measure`] saw: the closure's value, this thread's exact counts while it ran, and the
/// sites whose in-use bytes grew, largest first.
#[derive(Debug)]
#[non_exhaustive]
pub struct Measured<T> {
    /// What the closure returned.
    pub value: T,
    /// Bytes this thread allocated while the closure ran.
    pub alloc_bytes: u64,
    /// Allocations this thread made.
    pub alloc_objects: u64,
    /// Bytes this thread freed.
    pub free_bytes: u64,
    /// Frees this thread made.
    pub free_objects: u64,
    /// Sites whose in-use bytes on this thread grew, largest growth first.
    pub sites: Vec<SiteDelta>,
}

impl<T> Measured<T> {
    /// Bytes allocated minus bytes freed on this thread while the closure ran: what it left
    /// live (negative if it freed more than it allocated).
    pub fn live_growth(&self) -> i64 {
        self.alloc_bytes as i64 - self.free_bytes as i64
    }

    /// Objects allocated minus objects freed.
    pub fn live_objects_growth(&self) -> i64 {
        self.alloc_objects as i64 - self.free_objects as i64
    }

    /// Panics if the closure left more than `bytes` live, with the [`SITES_SHOWN`] sites that
    /// grew most and their stacks (the site first, then its callers).
    #[track_caller]
    pub fn assert_live_growth_at_most(&self, bytes: u64) {
        let growth = self.live_growth();
        if growth > bytes as i64 {
            panic!(
                "live heap grew by {growth} bytes ({} objects), more than the {bytes} allowed\n{}",
                self.live_objects_growth(),
                self.report()
            );
        }
    }

    /// The sites that grew most, as [`assert_live_growth_at_most`] prints them.
    ///
    /// [`assert_live_growth_at_most`]: Self::assert_live_growth_at_most
    pub fn report(&self) -> String {
        if self.sites.is_empty() {
            return "no site grew in the heap profile of this thread".to_owned();
        }
        let mut out = format!("sites that grew most (of {}):\n", self.sites.len());
        for s in self.sites.iter().take(SITES_SHOWN) {
            out.push_str(&format!(
                "  +{} bytes, +{} objects  {}\n",
                s.delta_bytes, s.delta_objects, s.function
            ));
            for f in s
                .stack
                .iter()
                .skip(1)
                .filter(|f| !sites::is_runtime(f))
                .take(FRAMES_SHOWN)
            {
                out.push_str(&format!("      {f}\n"));
            }
        }
        out
    }
}

/// Runs `f` on this thread under exact counting and returns what it left live, by site.
///
/// # Panics
///
/// If [`DiagAlloc`](crate::DiagAlloc) is not the global allocator (nothing would be counted).
pub fn measure<T>(f: impl FnOnce() -> T) -> Measured<T> {
    assert!(
        heap::is_installed(),
        "diag_core::testing::measure needs `#[global_allocator] static A: DiagAlloc = DiagAlloc::system();`"
    );
    let _turn = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let previous = heap::sample_rate();
    heap::set_sample_rate(1);
    // diag's own work here (profiles, the diff) is allocated and freed under the guard, so it
    // counts as diag's, never as this thread's.
    let (name, before_profile) = {
        let _ignore = IgnoreAllocs::new();
        let name = heap::labels::this_thread_name();
        let p = mine(heap::profile(heap::INUSE_SPACE), name.as_deref());
        (name, p)
    };
    // This thread's counter slot is claimed by its first counted allocation.
    drop(std::hint::black_box(Box::new(0u8)));
    let before = app_thread_totals().unwrap_or_default();
    let value = f();
    let after = app_thread_totals().unwrap_or_default();
    let grew = {
        let _ignore = IgnoreAllocs::new();
        let after_profile = mine(heap::profile(heap::INUSE_SPACE), name.as_deref());
        let mut grew = diff(&before_profile, &after_profile, &DiffOptions::default())
            .map(|d| d.sites)
            .unwrap_or_default();
        drop((name, before_profile, after_profile));
        grew.retain(|s| s.delta_bytes > 0);
        grew.sort_by_key(|s| std::cmp::Reverse(s.delta_bytes));
        grew
    };
    heap::set_sample_rate(previous);
    // Handed to the caller: copied outside the guard, the guarded original freed inside it.
    let sites = grew.clone();
    {
        let _ignore = IgnoreAllocs::new();
        drop(grew);
    }
    let d = |a: u64, b: u64| b.wrapping_sub(a);
    Measured {
        value,
        alloc_bytes: d(before.alloc_bytes, after.alloc_bytes),
        alloc_objects: d(before.alloc_objects, after.alloc_objects),
        free_bytes: d(before.free_bytes, after.free_bytes),
        free_objects: d(before.free_objects, after.free_objects),
        sites,
    }
}

/// [`measure`] for a future: polls `fut` to completion on this thread (parking it between
/// wake-ups), so all its work is this thread's. For futures that need no runtime driver
/// (channels, locks, computation); one that waits on a runtime's timers or sockets (tokio's
/// `sleep`, `TcpStream`) must be measured inside that runtime's own `block_on`, with
/// [`measure`] around it on a current-thread runtime.
pub fn measure_future<F: Future>(fut: F) -> Measured<F::Output> {
    measure(|| block_on(fut))
}

fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// `p` with only the samples labelled with thread `name` (all of them if the name is unknown).
fn mine(mut p: Profile, name: Option<&str>) -> Profile {
    let Some(name) = name else {
        return p;
    };
    p.samples.retain(|s| {
        s.labels
            .iter()
            .any(|(k, v)| k == crate::names::THREAD_LABEL && v == name)
    });
    p
}
