//! The CPU sampler's timers: a POSIX timer on each thread's CPU-time clock (`timer_create`
//! with the thread's clock id, `SIGEV_THREAD_ID`), the process-wide `ITIMER_PROF` that covers
//! threads until they have their own, and the lock-free table of armed thread ids the signal
//! handler consults to tell the two apart. See [`super::sampler`] for how they are used.

use std::collections::HashMap;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

/// Threads given a timer at most.
const MAX_THREADS: usize = 4096;

/// Thread ids that have their own timer (open addressing, `0` empty, `-1` removed).
static ARMED: [AtomicI32; ARMED_SLOTS] = [const { AtomicI32::new(0) }; ARMED_SLOTS];
const ARMED_SLOTS: usize = 2 * MAX_THREADS;

/// Records that `tid` has its own timer (diag's thread only).
pub(super) fn mark_armed(tid: i32) {
    let start = tid as usize % ARMED_SLOTS;
    for k in 0..ARMED_SLOTS {
        let slot = &ARMED[(start + k) % ARMED_SLOTS];
        let v = slot.load(Relaxed);
        if v == tid {
            return;
        }
        if v <= 0 {
            slot.store(tid, Release);
            return;
        }
    }
}

/// Forgets `tid` (diag's thread only).
pub(super) fn unmark_armed(tid: i32) {
    let start = tid as usize % ARMED_SLOTS;
    for k in 0..ARMED_SLOTS {
        let slot = &ARMED[(start + k) % ARMED_SLOTS];
        match slot.load(Relaxed) {
            0 => return,
            v if v == tid => {
                slot.store(-1, Release);
                return;
            }
            _ => {}
        }
    }
}

/// Whether `tid` has its own timer. Async-signal-safe (atomic loads).
pub(super) fn is_armed(tid: i32) -> bool {
    let start = tid as usize % ARMED_SLOTS;
    for k in 0..ARMED_SLOTS {
        match ARMED[(start + k) % ARMED_SLOTS].load(Acquire) {
            0 => return false,
            v if v == tid => return true,
            _ => {}
        }
    }
    false
}

/// The per-thread CPU-time timers, by thread id.
#[derive(Default)]
pub(super) struct Timers {
    period: Duration,
    by_tid: HashMap<i32, i32>,
    pub(super) armed_ever: usize,
    pub(super) errors: usize,
}

impl Timers {
    /// No timer yet; [`scan`](Self::scan) arms them at `period` of each thread's CPU time.
    pub(super) fn new(period: Duration) -> Timers {
        Timers {
            period,
            ..Timers::default()
        }
    }

    /// Arms a timer on every thread that has none and deletes those of threads that ended;
    /// true if a thread was new.
    pub(super) fn scan(&mut self) -> bool {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return false;
        };
        let live: Vec<i32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        self.by_tid.retain(|tid, timer| {
            let alive = live.contains(tid);
            if !alive {
                delete_timer(*timer);
                unmark_armed(*tid);
            }
            alive
        });
        let mut new = false;
        for tid in live {
            if self.by_tid.contains_key(&tid) || self.by_tid.len() >= MAX_THREADS {
                continue;
            }
            match arm(tid, self.period) {
                Some(timer) => {
                    self.by_tid.insert(tid, timer);
                    mark_armed(tid);
                    self.armed_ever += 1;
                    new = true;
                }
                None => self.errors += 1,
            }
        }
        new
    }

    pub(super) fn delete_all(&mut self) {
        set_process_timer(Duration::ZERO);
        for (tid, timer) in self.by_tid.drain() {
            delete_timer(timer);
            unmark_armed(tid);
        }
        for slot in &ARMED {
            slot.store(0, Relaxed);
        }
    }
}

/// The kernel's `struct sigevent` (64 bytes), with `SIGEV_THREAD_ID`'s thread id.
#[repr(C)]
struct KernelSigevent {
    value: usize,
    signo: libc::c_int,
    notify: libc::c_int,
    tid: libc::c_int,
    pad: [libc::c_int; 11],
}

const SIGEV_THREAD_ID: libc::c_int = 4;

/// Creates and arms a timer on thread `tid`'s CPU-time clock that sends it `SIGPROF` every
/// `period` of its CPU time; the kernel's timer id, or None (thread gone, limits).
///
/// Raw syscalls rather than glibc's `timer_create`, whose `timer_t` wraps the kernel's id
/// and which has no thread-clock constructor for another thread.
fn arm(tid: i32, period: Duration) -> Option<i32> {
    // The clock id of a thread's CPU time (glibc's MAKE_THREAD_CPUCLOCK: CPUCLOCK_SCHED with
    // the per-thread bit).
    let clock = ((!(tid as u32)) << 3 | 6) as libc::clockid_t;
    let mut ev = KernelSigevent {
        value: 0,
        signo: libc::SIGPROF,
        notify: SIGEV_THREAD_ID,
        tid,
        pad: [0; 11],
    };
    let mut id: libc::c_int = 0;
    // SAFETY: timer_create with a valid clock id, a sigevent of the kernel's layout and an
    // out-pointer to an int; it only writes `id`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_create,
            clock,
            &mut ev as *mut KernelSigevent,
            &mut id as *mut libc::c_int,
        )
    };
    if r != 0 {
        return None;
    }
    let ts = libc::timespec {
        tv_sec: period.as_secs() as libc::time_t,
        tv_nsec: period.subsec_nanos() as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts,
        it_value: ts,
    };
    // SAFETY: arming the timer just created with a valid itimerspec; no old value asked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_settime,
            id,
            0,
            &spec as *const libc::itimerspec,
            std::ptr::null_mut::<libc::itimerspec>(),
        )
    };
    if r != 0 {
        delete_timer(id);
        return None;
    }
    Some(id)
}

/// Arms (or with zero, disarms) the process-wide `ITIMER_PROF` that covers threads without a
/// timer of their own.
pub(super) fn set_process_timer(period: Duration) {
    let tv = libc::timeval {
        tv_sec: period.as_secs() as libc::time_t,
        tv_usec: period.subsec_micros() as libc::suseconds_t,
    };
    let it = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: setitimer with a valid itimerval; no old value asked. (The raw syscall: older
    // libc releases, which diag-core's manifest allows, have no binding for it.)
    unsafe {
        libc::syscall(
            libc::SYS_setitimer,
            libc::ITIMER_PROF,
            &it as *const libc::itimerval,
            std::ptr::null_mut::<libc::itimerval>(),
        )
    };
}

fn delete_timer(id: i32) {
    // SAFETY: deletes a timer this module created; a stale id fails harmlessly.
    unsafe { libc::syscall(libc::SYS_timer_delete, id) };
}
