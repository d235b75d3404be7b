//! The capture directory: each capture's pprof files, its line in `index.jsonl`, and the
//! rotation that keeps at most the configured number of files.
//!
//! Files are written under a temporary name and renamed, so a reader never sees half a
//! profile; a capture whose files or index line cannot be written leaves nothing behind.
//! Only files the index names are ever removed: the oldest captures' files go first, with
//! their lines.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::wire::{CaptureEntry, CaptureFiles};

/// The index's name within the capture directory.
pub use crate::wire::CAPTURE_INDEX_FILE as INDEX_FILE;

/// What one capture writes.
pub(crate) struct Capture<'a> {
    pub(crate) time_nanos: i64,
    pub(crate) reason: &'a str,
    pub(crate) site: Option<&'a str>,
    /// `(usage, limit, source)`, if a limit is known.
    pub(crate) memory: Option<(u64, u64, &'a str)>,
    /// The heap now, gzip'd pprof.
    pub(crate) current: &'a [u8],
    /// The heap history's oldest point: its time and gzip'd pprof.
    pub(crate) oldest: Option<(i64, &'a [u8])>,
}

/// Writes `c` into `dir` (which must exist), appends its index line, then removes the oldest
/// captures' files until at most `max_files` remain. The entry written, or why not (a
/// sentence naming the path).
pub(crate) fn write(dir: &Path, c: &Capture<'_>, max_files: usize) -> Result<CaptureEntry, String> {
    usable(dir)?;
    let stamp = crate::units::utc(c.time_nanos.div_euclid(1_000_000_000))
        .replace(['-', ':'], "")
        .trim_end_matches('Z')
        .to_owned();
    let stem = free_stem(dir, &format!("heap-{stamp}-{}", c.reason));
    let current = format!("{stem}-current.pb.gz");
    let oldest = c.oldest.map(|_| format!("{stem}-oldest.pb.gz"));
    let mut written: Vec<String> = Vec::new();
    let result = (|| {
        put(dir, &current, c.current)?;
        written.push(current.clone());
        if let (Some(name), Some((_, bytes))) = (&oldest, c.oldest) {
            put(dir, name, bytes)?;
            written.push(name.clone());
        }
        let entry = CaptureEntry {
            time_nanos: c.time_nanos,
            time: crate::units::utc(c.time_nanos.div_euclid(1_000_000_000)),
            reason: c.reason.to_owned(),
            files: CaptureFiles {
                current: current.clone(),
                oldest: oldest.clone(),
            },
            site: c.site.map(str::to_owned),
            usage_bytes: c.memory.map(|m| m.0),
            limit_bytes: c.memory.map(|m| m.1),
            usage_source: c.memory.map(|m| m.2.to_owned()),
            oldest_time_nanos: c.oldest.map(|o| o.0),
            pid: std::process::id(),
        };
        append_line(dir, &entry)?;
        Ok(entry)
    })();
    match result {
        Ok(entry) => {
            // A failure to rotate leaves more files than asked, never a broken capture.
            let _ = rotate(dir, max_files.max(2));
            Ok(entry)
        }
        Err(e) => {
            for f in written {
                let _ = fs::remove_file(dir.join(f));
            }
            Err(e)
        }
    }
}

/// Whether `dir` is there and a directory (checked before the profiles are built, and again
/// before they are written).
pub(crate) fn usable(dir: &Path) -> Result<(), String> {
    let meta = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(())
}

/// `base`, or `base-2`, `base-3`... if a capture of that name is there already.
fn free_stem(dir: &Path, base: &str) -> String {
    (1..1000)
        .map(|k| {
            if k == 1 {
                base.to_owned()
            } else {
                format!("{base}-{k}")
            }
        })
        .find(|s| !dir.join(format!("{s}-current.pb.gz")).exists())
        .unwrap_or_else(|| base.to_owned())
}

/// Writes `bytes` to `dir/name` through a temporary file.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let r = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, &path));
    r.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}

/// Appends `entry` as one line to the index, in one write.
fn append_line(dir: &Path, entry: &CaptureEntry) -> Result<(), String> {
    let path = dir.join(INDEX_FILE);
    let mut line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
    line.push('\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("appending to {}: {e}", path.display()))
}

/// The files an index line names.
fn files_of(e: &CaptureEntry) -> impl Iterator<Item = &str> {
    std::iter::once(e.files.current.as_str()).chain(e.files.oldest.as_deref())
}

/// Removes the oldest captures (their files, then their lines) until the files the index
/// names and that still exist are at most `max_files`. Lines that do not parse are kept.
/// Returns the captures removed.
pub(crate) fn rotate(dir: &Path, max_files: usize) -> Result<usize, String> {
    let path = dir.join(INDEX_FILE);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<(&str, Option<CaptureEntry>)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (l, serde_json::from_str(l).ok()))
        .collect();
    let exists = |e: &CaptureEntry| files_of(e).filter(|f| dir.join(f).exists()).count();
    let mut held: usize = lines
        .iter()
        .filter_map(|(_, e)| e.as_ref())
        .map(exists)
        .sum();
    let mut drop = vec![false; lines.len()];
    for (i, (_, e)) in lines.iter().enumerate() {
        if held <= max_files {
            break;
        }
        let Some(e) = e else { continue };
        for f in files_of(e) {
            if fs::remove_file(dir.join(f)).is_ok() {
                held -= 1;
            }
        }
        drop[i] = true;
    }
    let removed = drop.iter().filter(|d| **d).count();
    if removed > 0 {
        let kept: String = lines
            .iter()
            .zip(&drop)
            .filter(|(_, d)| !**d)
            .map(|((l, _), _)| format!("{l}\n"))
            .collect();
        put(dir, INDEX_FILE, kept.as_bytes())?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(time_nanos: i64, with_oldest: bool) -> Capture<'static> {
        Capture {
            time_nanos,
            reason: "memory_limit",
            site: None,
            memory: Some((95, 100, "rss")),
            current: b"current",
            oldest: with_oldest.then_some((time_nanos - 1, b"oldest".as_slice())),
        }
    }

    fn index(dir: &Path) -> Vec<CaptureEntry> {
        fs::read_to_string(dir.join(INDEX_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn pprof_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pb.gz"))
            .collect();
        v.sort();
        v
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("diag-capture-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_capture_is_two_files_and_a_line() {
        let dir = scratch("one");
        let t = 1_796_619_662_000_000_000;
        let e = write(&dir, &capture(t, true), 20).unwrap();
        assert_eq!(
            e.files.current,
            "heap-20261207T050102-memory_limit-current.pb.gz"
        );
        assert_eq!(
            e.files.oldest.as_deref(),
            Some("heap-20261207T050102-memory_limit-oldest.pb.gz")
        );
        assert_eq!(fs::read(dir.join(&e.files.current)).unwrap(), b"current");
        assert_eq!(index(&dir), vec![e.clone()]);
        assert_eq!(e.time, "2026-12-07T05:01:02Z");
        assert_eq!((e.usage_bytes, e.limit_bytes), (Some(95), Some(100)));
        // The same second again: other names, nothing overwritten.
        let again = write(&dir, &capture(t, false), 20).unwrap();
        assert_eq!(
            again.files.current,
            "heap-20261207T050102-memory_limit-2-current.pb.gz"
        );
        assert_eq!(again.files.oldest, None);
        assert_eq!(pprof_files(&dir).len(), 3);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_oldest_captures_go_first_with_their_lines() {
        let dir = scratch("rotate");
        fs::write(dir.join("mine.pb.gz"), b"a file diag did not write").unwrap();
        let entries: Vec<CaptureEntry> = (0..4)
            .map(|k| write(&dir, &capture(1_000_000_000_000 * (k + 1), true), 5).unwrap())
            .collect();
        // 4 captures of 2 files, at most 5 kept: the first two captures went.
        assert_eq!(index(&dir), entries[2..].to_vec());
        let mut want: Vec<String> = entries[2..]
            .iter()
            .flat_map(|e| files_of(e).map(str::to_owned).collect::<Vec<_>>())
            .chain(["mine.pb.gz".to_owned()])
            .collect();
        want.sort();
        assert_eq!(pprof_files(&dir), want);
        // Below two, a capture's own files are kept.
        write(&dir, &capture(9_000_000_000_000, true), 1).unwrap();
        assert_eq!(index(&dir).len(), 1);
        assert_eq!(pprof_files(&dir).len(), 3);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_or_unwritable_directory_fails_with_its_path() {
        let dir = scratch("fail");
        let missing = dir.join("missing");
        let e = write(&missing, &capture(1, true), 20).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let file = dir.join("a-file");
        fs::write(&file, b"").unwrap();
        let e = write(&file, &capture(1, true), 20).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        // An index that cannot be appended to (a directory in its place): no files are left.
        fs::create_dir(dir.join(INDEX_FILE)).unwrap();
        let e = write(&dir, &capture(1, true), 20).unwrap_err();
        assert!(e.contains(INDEX_FILE), "{e}");
        assert_eq!(pprof_files(&dir), Vec::<String>::new());
        fs::remove_dir_all(dir).ok();
    }
}
