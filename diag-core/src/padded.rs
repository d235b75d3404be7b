//! [`Padded`]: a value on cache lines of its own.
//!
//! The words every request or allocation reads (is the watchdog started, the sampling rate,
//! the heap region's bounds) are written almost never. Left to the linker, they share cache
//! lines with whatever static lands beside them; when that neighbour is written often (a lock
//! word, a counter) from another core, every read of ours misses. perf showed exactly that: the
//! lag probe's "running" flag beside a lock taken per request cost a cache miss per request.

use std::ops::Deref;

/// `T` alone on 128 bytes (two cache lines: the adjacent-line prefetcher pairs them).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
