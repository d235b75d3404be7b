//! Waiting on conditions, never on time: [`wait_until`] polls a probe until it says the
//! condition holds, and when it gives up names what it waited for and the last value it saw.
//! Shared by the test crates (diag-cli's support module includes this file).

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Ok(value)` and returns that value. `probe` returns
/// `Err(seen)` while the condition does not hold yet, with what it saw (see [`when`]). After
/// `within` it fails: "waited 10 s for WHAT ...; last seen: SEEN".
///
/// The first poll is at once; then every 10 ms, doubling up to 200 ms.
#[track_caller]
pub fn wait_until<T, E: Debug>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let mut poll = Poll::new(within, what);
    loop {
        if let Some(value) = poll.check(probe()) {
            return value;
        }
        std::thread::sleep(poll.pause()); // the poll interval: then the condition is asked again
    }
}

/// `Ok(value)` if `done(&value)`, else `Err(value)`: the shape of a [`wait_until`] probe,
/// e.g. `when(records(), |&n| n > before)`.
pub fn when<T>(value: T, done: impl FnOnce(&T) -> bool) -> Result<T, T> {
    if done(&value) { Ok(value) } else { Err(value) }
}

/// The bookkeeping of one wait (also behind the async wait of diag-core's support module).
pub struct Poll<'a> {
    start: Instant,
    within: Duration,
    what: &'a str,
    polls: u32,
    next: Duration,
}

impl<'a> Poll<'a> {
    /// A wait for `what`, for at most `within` from now.
    pub fn new(within: Duration, what: &'a str) -> Self {
        Self {
            start: Instant::now(),
            within,
            what,
            polls: 0,
            next: Duration::from_millis(10),
        }
    }

    /// The value if the probe said the condition holds; fails if it does not and the time is
    /// up.
    #[track_caller]
    pub fn check<T, E: Debug>(&mut self, probed: Result<T, E>) -> Option<T> {
        self.polls += 1;
        match probed {
            Ok(value) => Some(value),
            Err(seen) if self.start.elapsed() >= self.within => panic!(
                "waited {:.1?} for {} ({} polls); last seen: {seen:?}",
                self.start.elapsed(),
                self.what,
                self.polls
            ),
            Err(_) => None,
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
