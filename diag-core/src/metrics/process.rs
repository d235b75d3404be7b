//! Process gauges read straight from `/proc/self` at scrape time.
//!
//! Four small files cover everything asked for (memory, CPU, threads, start time, descriptors),
//! so this reads them directly (~100 lines) instead of pulling in the `procfs` crate and its
//! dependency tree. Off Linux (no `/proc`), the process gauges are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// One reading of the process's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) cpu_user_seconds: f64,
    pub(crate) cpu_system_seconds: f64,
    pub(crate) threads: u64,
    pub(crate) open_fds: Option<u64>,
    pub(crate) max_fds: Option<u64>,
    pub(crate) start_time_seconds: Option<f64>,
    pub(crate) uptime_seconds: Option<f64>,
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}

/// Parses the fields of `/proc/self/stat` after the command name (which may contain spaces
/// and parentheses, so split after the last `)`): returns utime, stime (ticks), threads,
/// starttime (ticks since boot), vsize (bytes), rss (pages).
pub(crate) fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((num(14)?, num(15)?, num(20)?, num(22)?, num(23)?, num(24)?))
}

fn boot_time_seconds() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files  <soft>  <hard>  files"
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads the process's state now; `None` without `/proc`.
pub(crate) fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (utime, stime, threads, start_ticks, vsize, rss_pages) = parse_stat(&stat)?;
    let tick = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
    let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
    let start_time_seconds = boot_time_seconds().map(|b| b as f64 + start_ticks as f64 / tick);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .ok();
    let uptime_seconds = match (start_time_seconds, now) {
        (Some(s), Some(n)) => Some((n - s).max(0.0)),
        _ => None,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        // The directory handle itself is one of the entries: leave it out.
        .map(|d| (d.count() as u64).saturating_sub(1));
    Some(ProcessStats {
        resident_bytes: rss_pages * page,
        virtual_bytes: vsize,
        cpu_user_seconds: utime as f64 / tick,
        cpu_system_seconds: stime as f64 / tick,
        threads,
        open_fds,
        max_fds: max_open_files(),
        start_time_seconds,
        uptime_seconds,
    })
}

/// Exposes [`read`] and the heap profiler's exact counters on every scrape.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, unit, c.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        let s = &Unit::Seconds;
        let b = &Unit::Bytes;
        if let Some(p) = read() {
            let e = &mut enc;
            gauge(
                e,
                "process_resident_memory",
                "Resident memory size",
                Some(b),
                p.resident_bytes as f64,
            )?;
            gauge(
                e,
                "process_virtual_memory",
                "Virtual memory size",
                Some(b),
                p.virtual_bytes as f64,
            )?;
            counter(
                e,
                "process_cpu",
                "User plus system CPU time",
                Some(s),
                p.cpu_user_seconds + p.cpu_system_seconds,
            )?;
            counter(
                e,
                "process_cpu_user",
                "User CPU time",
                Some(s),
                p.cpu_user_seconds,
            )?;
            counter(
                e,
                "process_cpu_system",
                "System CPU time",
                Some(s),
                p.cpu_system_seconds,
            )?;
            gauge(
                e,
                "process_threads",
                "OS threads in the process",
                None,
                p.threads as f64,
            )?;
            if let Some(n) = p.open_fds {
                gauge(
                    e,
                    "process_open_fds",
                    "Open file descriptors",
                    None,
                    n as f64,
                )?;
            }
            if let Some(n) = p.max_fds {
                gauge(
                    e,
                    "process_max_fds",
                    "Limit on open file descriptors (soft)",
                    None,
                    n as f64,
                )?;
            }
            if let Some(t) = p.start_time_seconds {
                gauge(
                    e,
                    "process_start_time",
                    "Start time since the Unix epoch",
                    Some(s),
                    t,
                )?;
            }
            if let Some(t) = p.uptime_seconds {
                gauge(
                    e,
                    "process_uptime",
                    "Time since the process started",
                    Some(s),
                    t,
                )?;
            }
        }
        if crate::heap::is_installed() {
            let h = crate::heap::stats();
            let e = &mut enc;
            gauge(
                e,
                "diag_heap_live",
                "Heap bytes live now through DiagAlloc (exact)",
                Some(b),
                h.live_bytes as f64,
            )?;
            gauge(
                e,
                "diag_heap_live_objects",
                "Heap blocks live now through DiagAlloc (exact)",
                None,
                h.live_objects as f64,
            )?;
            gauge(
                e,
                "diag_self_heap",
                "Heap bytes live now that diag itself allocated (symbolizer, encoding, HTTP, history); not in diag_heap_live_bytes",
                Some(b),
                h.self_live_bytes as f64,
            )?;
            counter(
                e,
                "diag_heap_allocated",
                "Heap bytes ever allocated through DiagAlloc (exact)",
                Some(b),
                h.allocated_bytes as f64,
            )?;
            counter(
                e,
                "diag_heap_allocated_objects",
                "Heap allocations ever made through DiagAlloc (exact)",
                None,
                h.allocated_objects as f64,
            )?;
            gauge(
                e,
                "diag_heap_sample_rate",
                "Mean bytes between heap samples (0 off, 1 exact)",
                Some(b),
                h.sample_rate as f64,
            )?;
        }
        let lag = crate::tasks::lag_view();
        if lag.running {
            let e = &mut enc;
            gauge(
                e,
                "diag_event_loop_lag",
                "How late the runtime ran the lag probe's last timer (rises while blocked)",
                Some(s),
                lag.current_ms / 1e3,
            )?;
            gauge(
                e,
                "diag_event_loop_lag_p99",
                "99th percentile of event-loop lag over the probe's window",
                Some(s),
                lag.p99_ms / 1e3,
            )?;
            gauge(
                e,
                "diag_event_loop_lag_max",
                "Largest event-loop lag over the probe's window",
                Some(s),
                lag.max_ms / 1e3,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        // Fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime(14) stime(15) cutime cstime priority nice num_threads(20) itrealvalue
        // starttime(22) vsize(23) rss(24) ...
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194304 100 0 0 0 \
                    250 75 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 75, 7, 12345, 104857600, 2560)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_this_process() {
        let p = read().expect("/proc/self is readable on Linux");
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.threads >= 1);
        assert!(p.open_fds.unwrap() >= 3, "{p:?}");
        assert!(p.uptime_seconds.unwrap() >= 0.0);
    }
}
