//! One CPU profile at a time: [`Session`] owns diag's CPU sampler while it samples, and
//! stops it when finished or dropped (a client that disconnects drops it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use super::sampler::Sampler;
use super::{DEFAULT_MAX_SECONDS, MAX_FREQUENCY, convert};
use crate::error::{Error, ErrorKind, Result};
use crate::profile::Profile;

/// True while a session exists (from [`Session::start`] until it is finished or dropped).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Cap on the seconds a profile request may ask for.
static MAX_SECONDS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_SECONDS);

/// Sets the cap on the length of a requested CPU profile, in seconds (at least 1).
pub fn set_max_seconds(secs: u64) {
    MAX_SECONDS.store(secs.max(1), Ordering::Relaxed);
}

/// The cap on the length of a requested CPU profile, in seconds.
pub fn max_seconds() -> u64 {
    MAX_SECONDS.load(Ordering::Relaxed)
}

/// A running CPU profile. Only one exists at a time in the process.
///
/// Dropping it stops the sampling timer, restores the `SIGPROF` disposition and frees the
/// samples, so an abandoned profile (a client gone away) costs nothing afterwards.
pub struct Session {
    sampler: Option<Sampler>,
    frequency: u32,
    started: SystemTime,
    started_at: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("frequency", &self.frequency)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Clears [`ACTIVE`] unless defused (when a session takes over that duty).
struct ActiveFlag(bool);

impl Drop for ActiveFlag {
    fn drop(&mut self) {
        if self.0 {
            ACTIVE.store(false, Ordering::Release);
        }
    }
}

impl Session {
    /// Starts sampling on-CPU stacks of every thread at `frequency` Hz (1 to
    /// [`MAX_FREQUENCY`](super::MAX_FREQUENCY)).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for a frequency out of range, [`ErrorKind::Busy`]
    /// if a profile is already running (or another profiler owns `SIGPROF`),
    /// [`ErrorKind::Io`] if the signal handler or the sampler's thread cannot be set up,
    /// [`ErrorKind::Unsupported`] off Linux.
    pub fn start(frequency: u32) -> Result<Session> {
        if !(1..=MAX_FREQUENCY).contains(&frequency) {
            return Err(Error::invalid(format!(
                "CPU profile frequency {frequency} Hz is out of range 1..={MAX_FREQUENCY}"
            )));
        }
        if ACTIVE
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(busy());
        }
        let mut flag = ActiveFlag(true);
        let sampler = Sampler::start(frequency)?;
        flag.0 = false;
        #[cfg(feature = "server")]
        tracing::debug!(target: "diag", frequency, "CPU profile started");
        Ok(Session {
            sampler: Some(sampler),
            frequency,
            started: SystemTime::now(),
            started_at: Instant::now(),
        })
    }

    /// The sampling frequency in Hz.
    pub fn frequency(&self) -> u32 {
        self.frequency
    }

    /// Stops sampling and returns the symbolized profile.
    ///
    /// The raw samples are copied out and the profiler is stopped *before* any address is
    /// resolved, so symbolization never races the signal handler.
    pub fn finish(mut self) -> Result<Profile> {
        let duration = self.started_at.elapsed();
        let Some(sampler) = self.sampler.take() else {
            return Err(Error::new(
                ErrorKind::Io,
                "the CPU profile was already finished",
            ));
        };
        // Timers deleted and the handler idle before the (slow) symbolization.
        let gathered = sampler.finish();
        let p = convert::to_profile(&gathered, self.frequency, self.started, duration);
        #[cfg(feature = "server")]
        {
            let periods: u64 = gathered.stacks.values().map(|v| v.1).sum();
            tracing::debug!(
                target: "diag",
                seconds = duration.as_secs_f64(),
                periods,
                truncated = gathered.truncated,
                lost = gathered.lost,
                process_cpu_ms = gathered.process_cpu_nanos / 1_000_000,
                "CPU profile finished"
            );
            if gathered.lost > 0 {
                tracing::warn!(
                    target: "diag",
                    lost_periods = gathered.lost,
                    "CPU profile lost samples (sample buffer full or distinct-stack cap)"
                );
            }
        }
        Ok(p)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.sampler.take());
        ACTIVE.store(false, Ordering::Release);
    }
}

fn busy() -> Error {
    Error::new(
        ErrorKind::Busy,
        "a CPU profile is already running; only one at a time, retry when it ends",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The profiler is process-global: one test drives it, the rest only checks arguments.
    #[test]
    fn one_at_a_time_and_drop_releases() {
        assert_eq!(
            Session::start(0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Session::start(MAX_FREQUENCY + 1).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let s = Session::start(99).unwrap();
        assert_eq!(Session::start(99).unwrap_err().kind(), ErrorKind::Busy);
        drop(s);
        let s = Session::start(250).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < deadline {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let p = s.finish().unwrap();
        assert_eq!(p.sample_types[0].ty, "samples");
        assert_eq!(p.period, 1_000_000_000 / 250);
        assert!(p.duration_nanos > 0);
        // Finished: a new one may start.
        drop(Session::start(99).unwrap());
    }
}
