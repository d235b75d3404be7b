//! Capture directories: what a service with `DIAG_CAPTURE_DIR` wrote when a site became a leak
//! suspect or its memory neared the limit. Each capture is a line of `index.jsonl`
//! ([`CaptureEntry`]) naming two pprof files beside it: the heap history's oldest point and
//! the heap at the capture. `diag diff DIR` and `diag report DIR` take the latest capture's
//! two files: the growth up to that moment.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use diag_core::wire::CAPTURE_INDEX_FILE as INDEX_FILE;
use diag_core::wire::CaptureEntry;

use crate::units;

/// The latest capture of a directory, with its files' paths.
pub(crate) struct Latest {
    /// Its index line.
    pub(crate) entry: CaptureEntry,
    /// The heap history's oldest point when it was taken.
    pub(crate) oldest: PathBuf,
    /// The heap when it was taken.
    pub(crate) current: PathBuf,
    /// Captures the index lists.
    pub(crate) count: usize,
}

/// Whether a command-line argument names a directory (a capture directory, for the commands
/// that take one).
pub(crate) fn is_dir(arg: &str) -> bool {
    Path::new(arg).is_dir()
}

/// The latest capture in `dir` whose files are there; errors say what the directory lacks.
pub(crate) fn latest(dir: &Path) -> Result<Latest> {
    let index = dir.join(INDEX_FILE);
    if !index.exists() {
        bail!(
            "{} holds no capture: no {INDEX_FILE} (a service writes one into its \
             DIAG_CAPTURE_DIR when a site becomes a leak suspect or its memory nears the limit)",
            dir.display()
        );
    }
    let text =
        std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
    let entries: Vec<CaptureEntry> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &CaptureEntry| !e.files.current.is_empty())
        .collect();
    let Some(entry) = entries.last().cloned() else {
        bail!("{} lists no capture", index.display());
    };
    let Some(oldest) = entry.files.oldest.as_deref() else {
        bail!(
            "the latest capture in {} ({}, {}) has only the heap at that moment, no heap \
             history point to compare it with (the service's history was off): compare its \
             file with another, `diag diff OTHER.pb.gz {}`",
            dir.display(),
            entry.time,
            entry.reason,
            dir.join(&entry.files.current).display()
        );
    };
    let (oldest, current) = (dir.join(oldest), dir.join(&entry.files.current));
    for f in [&oldest, &current] {
        if !f.is_file() {
            bail!("{}: listed in {} but missing", f.display(), index.display());
        }
    }
    Ok(Latest {
        count: entries.len(),
        entry,
        oldest,
        current,
    })
}

impl Latest {
    /// One line for stderr: which capture, why, and the memory then.
    pub(crate) fn describe(&self, dir: &Path) -> String {
        let e = &self.entry;
        let mut s = format!(
            "diag: latest of {} capture{} in {}: {} ({}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            dir.display(),
            e.time,
            e.reason
        );
        if let Some(site) = &e.site {
            s.push_str(&format!(", site {site}"));
        }
        if let (Some(u), Some(l)) = (e.usage_bytes, e.limit_bytes) {
            s.push_str(&format!(
                ", memory {} of {}, {}",
                units::bytes(u as i64),
                units::bytes(l as i64),
                units::percent(u as f64 * 100.0 / l.max(1) as f64)
            ));
        }
        s.push_str("): the heap history's oldest point against the heap then");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_directory_lacks_is_said() {
        let dir = std::env::temp_dir().join(format!("diag-captures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = latest(&dir).err().unwrap().to_string();
        assert!(e.contains("holds no capture"), "{e}");
        std::fs::write(dir.join(INDEX_FILE), "\nnot json\n").unwrap();
        let e = latest(&dir).err().unwrap().to_string();
        assert!(e.contains("lists no capture"), "{e}");
        let line = r#"{"time":"2026-12-07T05:01:02Z","reason":"memory_limit","files":{"current":"c.pb.gz","oldest":"o.pb.gz"}}"#;
        std::fs::write(dir.join(INDEX_FILE), format!("{line}\n")).unwrap();
        let e = latest(&dir).err().unwrap().to_string();
        assert!(e.contains("missing"), "{e}");
        std::fs::write(dir.join("c.pb.gz"), b"").unwrap();
        std::fs::write(dir.join("o.pb.gz"), b"").unwrap();
        let l = latest(&dir).unwrap();
        assert_eq!(
            (l.oldest, l.current),
            (dir.join("o.pb.gz"), dir.join("c.pb.gz"))
        );
        let only = r#"{"time":"t","reason":"suspect","files":{"current":"c.pb.gz"}}"#;
        std::fs::write(dir.join(INDEX_FILE), format!("{line}\n{only}\n")).unwrap();
        let e = latest(&dir).err().unwrap().to_string();
        assert!(e.contains("no heap history point"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
