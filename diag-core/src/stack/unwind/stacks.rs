//! Stack bounds for threads diag never ran code on, from the process's memory map.
//!
//! The cached unwinder reads the interrupted stack only inside `[sp, high)`, where `high` is
//! the top of the thread's stack. A thread that ran a watched poll or a sampled allocation
//! recorded its own bounds (`pthread_getattr_np`, normal context). The CPU sampler
//! interrupts every thread, and most never did: a signal handler cannot ask (glibc's
//! `pthread_getattr_np` allocates and locks). So diag's sampler thread reads
//! `/proc/self/maps` in normal context (at the start of a profile and whenever it sees a new
//! thread) and keeps the writable private mappings, where thread stacks live (glibc
//! `mmap`s them; the main thread's is `[stack]`); the handler takes the mapping that holds
//! the interrupted stack pointer as that stack's bounds, with a try-lock that never waits.
//!
//! What this trusts: that the pages from the stack pointer to the end of its mapping stay
//! mapped while the handler reads them. They belong to the running thread's own stack up to
//! its top; the unwinder reads beyond the top only if a rule is wrong, and then only up to
//! the end of the mapping as scanned at most one rescan ago.

use std::sync::RwLock;

/// Mappings kept at most (a process with more writable mappings loses bounds for the rest,
/// and their samples keep only the interrupted instruction).
const MAX_MAPPINGS: usize = 65_536;

/// Sorted, non-overlapping `[start, end)` of writable private mappings.
static MAPPINGS: RwLock<Vec<(usize, usize)>> = RwLock::new(Vec::new());

/// Re-reads `/proc/self/maps`. Normal context only (it reads a file and allocates); the
/// caller marks its allocations as diag's own.
pub(crate) fn refresh_stack_mappings() {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let mut found = parse(&text);
    found.truncate(MAX_MAPPINGS);
    if let Ok(mut m) = MAPPINGS.write() {
        *m = found;
    }
}

/// Writable private mappings from the text of a `maps` file, sorted by address.
fn parse(text: &str) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let p = perms.as_bytes();
            if p.len() < 4 || p[0] != b'r' || p[1] != b'w' || p[3] != b'p' {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            );
            (a < b).then_some((a, b))
        })
        .collect();
    out.sort_unstable();
    out
}

/// The writable mapping holding `sp`, as last scanned: the stack's bounds for the unwinder.
/// Async-signal-safe (a try-lock, a binary search); None if the table is being rewritten or
/// no mapping holds `sp`.
pub(crate) fn bounds_of(sp: usize) -> Option<(usize, usize)> {
    let m = MAPPINGS.try_read().ok()?;
    let i = m
        .partition_point(|&(start, _)| start <= sp)
        .checked_sub(1)?;
    let (start, end) = m[i];
    (sp < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_private_mappings_only() {
        let maps = "\
5555d000-5555e000 r-xp 00001000 fd:01 123 /usr/bin/x
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
7f0000021000-7f0004000000 ---p 00000000 00:00 0
7f1000000000-7f1000001000 rw-s 00000000 00:05 9 /dev/shm/x
7ffd0000a000-7ffd0002b000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(
            parse(maps),
            [
                (0x7f00_0000_0000, 0x7f00_0002_1000),
                (0x7ffd_0000_a000, 0x7ffd_0002_b000)
            ]
        );
    }

    #[test]
    fn this_threads_stack_is_found() {
        refresh_stack_mappings();
        let local = 0u64;
        let sp = std::hint::black_box(&local) as *const u64 as usize;
        let (lo, hi) = bounds_of(sp).expect("no mapping holds this stack");
        assert!(lo <= sp && sp < hi);
        assert_eq!(bounds_of(1), None);
    }
}
