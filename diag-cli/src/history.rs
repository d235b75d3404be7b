//! The heap history a service keeps (`/debug/heap/history`): its listing, and its points as
//! saved profiles (`/debug/pprof/heap?at=T`). Used by `diag trend --history` and
//! `diag diff URL --since`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use diag_core::wire::{HeapHistory, HistoryPoint};

use crate::remote::Remote;
use crate::units;

/// How the history is kept, for messages: "one every 1m", or how to turn it on.
pub(crate) fn describe(history: &HeapHistory) -> String {
    if history.stats.interval_ms == 0 {
        "the history is off; turn it on with `curl -X POST \
         '<URL>/debug/heap/history?interval_ms=60000'`"
            .to_owned()
    } else {
        format!(
            "one every {}",
            units::span(Duration::from_millis(history.stats.interval_ms))
        )
    }
}

/// Reads the service's heap history listing.
pub(crate) fn read(remote: &Remote) -> Result<HeapHistory> {
    let reply = remote.get("/debug/heap/history")?;
    serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "{}/debug/heap/history did not answer the history JSON",
            remote.base()
        )
    })
}

/// Fetches the point recorded at `time_nanos` as a profile and saves it, as served, to `file`.
pub(crate) fn save_point(remote: &Remote, time_nanos: i64, file: &Path) -> Result<()> {
    let reply = remote.get_profile(&format!("/debug/pprof/heap?at={time_nanos}"))?;
    std::fs::write(file, &reply.body).with_context(|| format!("writing {}", file.display()))
}

/// The point of `remote`'s history recorded `ago` before now (as [`point_before`] picks it)
/// and how long ago it was recorded. No point yet: an error ending with `instead` (what to do
/// then). A history shorter than `ago`: its oldest point, said on stderr, ending with `doing`
/// (what the command does with it).
pub(crate) fn point_ago(
    remote: &Remote,
    ago: Duration,
    instead: &str,
    doing: &str,
) -> Result<(HistoryPoint, Duration)> {
    let h = read(remote)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let Some((point, short)) = point_before(&h.points, now, ago) else {
        anyhow::bail!(
            "{} holds no heap history point yet ({}): {instead}",
            remote.base(),
            describe(&h)
        );
    };
    let was = Duration::from_nanos(now.saturating_sub(point.time_nanos).max(0) as u64);
    if short {
        eprintln!(
            "diag: the heap history of {} reaches back {} (not {}): {doing}",
            remote.base(),
            units::span(was),
            units::span(ago)
        );
    }
    Ok((point, was))
}

/// The point to compare with "`since` before `now`": the newest one recorded at or before
/// then, or, if the history does not reach back so far, the oldest one (the bool says so).
pub(crate) fn point_before(
    points: &[HistoryPoint],
    now_nanos: i64,
    since: Duration,
) -> Option<(HistoryPoint, bool)> {
    let target = now_nanos.saturating_sub(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    match points.iter().rev().find(|p| p.time_nanos <= target) {
        Some(p) => Some((*p, false)),
        None => points.first().map(|p| (*p, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_before_picks_the_newest_at_or_before_the_target() {
        let s = 1_000_000_000;
        let points: Vec<HistoryPoint> = [10, 20, 30, 40]
            .iter()
            .map(|&t| HistoryPoint::at(t * s))
            .collect();
        let at = |now: i64, since: u64| {
            point_before(&points, now * s, Duration::from_secs(since))
                .map(|(p, short)| (p.time_nanos / s, short))
        };
        assert_eq!(at(45, 10), Some((30, false)));
        assert_eq!(at(45, 15), Some((30, false)));
        assert_eq!(at(45, 25), Some((20, false)));
        assert_eq!(at(45, 0), Some((40, false)));
        // Further back than the oldest point: the oldest, said to be short.
        assert_eq!(at(45, 3600), Some((10, true)));
        assert_eq!(
            point_before(&[], 45 * s, Duration::from_secs(1)).map(|p| p.1),
            None
        );
        // An absurd --since does not overflow.
        assert_eq!(
            point_before(&points, 45 * s, Duration::from_secs(u64::MAX)).map(|p| p.1),
            Some(true)
        );
    }
}
