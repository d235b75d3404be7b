//! The worker threads of `heap_ab`: one phase of a workload on every worker each time they
//! are released, timed in wall and CPU time.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::workloads::WORKLOADS;

/// Worker threads that run one phase of a workload each time they are released.
pub struct Workers {
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    job: Arc<Job>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Job {
    workload: AtomicUsize,
    iters: AtomicUsize,
    seed: AtomicU64,
    quit: AtomicBool,
    sink: AtomicU64,
    cpu_ns: AtomicU64,
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Workers {
    /// Starts `threads` workers, waiting for their first phase.
    pub fn new(threads: usize) -> Self {
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(Barrier::new(threads + 1));
        let job = Arc::new(Job::default());
        let handles = (0..threads)
            .map(|t| {
                let (start, done, job) = (start.clone(), done.clone(), job.clone());
                std::thread::spawn(move || {
                    loop {
                        start.wait();
                        if job.quit.load(Relaxed) {
                            return;
                        }
                        let w = WORKLOADS[job.workload.load(Relaxed)];
                        let seed = job.seed.load(Relaxed) + t as u64;
                        let c = thread_cpu_ns();
                        let sum = (w.run)(job.iters.load(Relaxed), seed);
                        job.cpu_ns.fetch_add(thread_cpu_ns() - c, Relaxed);
                        job.sink.fetch_add(sum, Relaxed);
                        done.wait();
                    }
                })
            })
            .collect();
        Self {
            start,
            done,
            job,
            handles,
        }
    }

    /// Runs `iters` operations of workload `w` (an index into [`WORKLOADS`]) on every worker:
    /// the wall time of the phase and the workers' CPU time in it, ns.
    pub fn phase(&self, w: usize, iters: usize, seed: u64) -> (Duration, u64) {
        self.job.cpu_ns.store(0, Relaxed);
        self.job.workload.store(w, Relaxed);
        self.job.iters.store(iters, Relaxed);
        self.job.seed.store(seed, Relaxed);
        self.start.wait();
        let t = Instant::now();
        self.done.wait();
        (t.elapsed(), self.job.cpu_ns.load(Relaxed))
    }

    /// Stops and joins the workers.
    pub fn stop(self) {
        self.job.quit.store(true, Relaxed);
        self.start.wait();
        for h in self.handles {
            h.join().expect("worker");
        }
        black_box(self.job.sink.load(Relaxed));
    }
}
