//! Waiting on conditions, never on time: [`wait_until`] polls a probe until it says the
//! condition holds, and when it gives up names what it waited for and the last value it saw.
//! Shared by the test crates (diag-cli's and tests/unstable's support modules include this
//! file).

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Ok(value)` and returns that value. `probe` returns
/// `Err(seen)` while the condition does not hold yet, with what it saw (see [`when`]). After
/// `within` it fails: "waited 10 s for WHAT (N polls); last seen: SEEN".
///
/// The first poll is at once; then every 10 ms, doubling up to 200 ms.
#[track_caller]
pub fn wait_until<T, E: Debug>(
    within: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, E>,
) -> T {
    match poll_until(within, probe) {
        Ok(value) => value,
        Err(timeout) => panic!("waited {within:?} for {what} {timeout}"),
    }
}

/// [`wait_until`] that returns the timeout instead of failing (for a caller that must clean
/// up first): `Err` says how many polls there were and the last value seen.
pub fn poll_until<T, E: Debug>(
    within: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Result<T, Timeout<E>> {
    let mut poll = Poll::new(within);
    loop {
        match poll.check(probe()) {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(timeout) => return Err(timeout),
        }
        std::thread::sleep(poll.pause()); // the poll interval: then the condition is asked again
    }
}

/// `Ok(value)` if `done(&value)`, else `Err(value)`: the shape of a [`wait_until`] probe,
/// e.g. `when(records(), |&n| n > before)`.
pub fn when<T>(value: T, done: impl FnOnce(&T) -> bool) -> Result<T, T> {
    if done(&value) { Ok(value) } else { Err(value) }
}

/// A wait that ran out: how many polls, and what the last one saw.
#[derive(Debug)]
pub struct Timeout<E> {
    pub polls: u32,
    pub seen: E,
}

impl<E: Debug> std::fmt::Display for Timeout<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({} polls); last seen: {:?}", self.polls, self.seen)
    }
}

/// The bookkeeping of one wait (also behind the async wait of diag-core's support module).
pub struct Poll {
    start: Instant,
    within: Duration,
    polls: u32,
    next: Duration,
}

impl Poll {
    /// A wait of at most `within` from now.
    pub fn new(within: Duration) -> Self {
        Self {
            start: Instant::now(),
            within,
            polls: 0,
            next: Duration::from_millis(10),
        }
    }

    /// What one poll's probe said: `Some(value)` if the condition holds, `None` to poll
    /// again, or the timeout if it does not hold and the time is up.
    pub fn check<T, E>(&mut self, probed: Result<T, E>) -> Result<Option<T>, Timeout<E>> {
        self.polls += 1;
        match probed {
            Ok(value) => Ok(Some(value)),
            Err(seen) if self.start.elapsed() >= self.within => Err(Timeout {
                polls: self.polls,
                seen,
            }),
            Err(_) => Ok(None),
        }
    }

    /// How long to pause before the next poll (never past the end of the wait).
    pub fn pause(&mut self) -> Duration {
        let pause = self
            .next
            .min(self.within.saturating_sub(self.start.elapsed()));
        self.next = (self.next * 2).min(Duration::from_millis(200));
        pause
    }
}
