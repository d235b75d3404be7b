//! The [`Builder`]'s capture settings (`DIAG_CAPTURE_DIR` and its companions, see
//! [`heap::set_capture`]): kept beside the builder so its file stays one screenful per
//! concern.

use std::path::PathBuf;

use super::{Builder, env_number, env_var};
use crate::env;
use crate::error::{Error, ErrorKind, Result};
use crate::heap;

/// The capture's settings as the builder holds them.
#[derive(Debug, Clone)]
pub(super) struct CaptureConfig {
    dir: Option<PathBuf>,
    at_percent: u8,
    max_files: usize,
    memory_limit_bytes: Option<u64>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            dir: None,
            at_percent: heap::DEFAULT_CAPTURE_AT_PERCENT,
            max_files: heap::DEFAULT_CAPTURE_MAX_FILES,
            memory_limit_bytes: None,
        }
    }
}

impl CaptureConfig {
    /// Applies `DIAG_CAPTURE_DIR`, `DIAG_CAPTURE_AT_PERCENT`, `DIAG_CAPTURE_MAX_FILES` and
    /// `DIAG_MEMORY_LIMIT_BYTES`.
    pub(super) fn with_env(mut self) -> Result<Self> {
        if let Some(d) = env_var(env::CAPTURE_DIR)? {
            self.dir = Some(PathBuf::from(d));
        }
        if let Some(n) = env_number(env::CAPTURE_AT_PERCENT)? {
            self.at_percent = u8::try_from(n)
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{}={n} must be between 1 and 100", env::CAPTURE_AT_PERCENT),
                    )
                })?;
        }
        if let Some(n) = env_number(env::CAPTURE_MAX_FILES)? {
            if n < 2 {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}={n} must be at least 2 (a capture is two files)",
                        env::CAPTURE_MAX_FILES
                    ),
                ));
            }
            self.max_files = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = env_number(env::MEMORY_LIMIT_BYTES)? {
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}=0: give the limit in bytes, or leave it unset for the cgroup's",
                        env::MEMORY_LIMIT_BYTES
                    ),
                ));
            }
            self.memory_limit_bytes = Some(n);
        }
        Ok(self)
    }

    /// Applies the settings (called by `start()`).
    pub(super) fn apply(&self) {
        heap::set_capture(
            self.dir.clone(),
            self.at_percent,
            self.max_files,
            self.memory_limit_bytes,
        );
    }
}

impl Builder {
    /// Captures the heap into `dir` (which must exist) when a site becomes a leak suspect and
    /// when memory nears its limit: the heap now and the heap history's oldest point as pprof
    /// files, and a line of `index.jsonl`; at most one capture per
    /// [`heap::CAPTURE_MIN_INTERVAL`]. Default: no captures. See `DIAG_CAPTURE_DIR` and
    /// [`heap::set_capture`].
    pub fn capture_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.capture.dir = Some(dir.into());
        self
    }

    /// Share of the memory limit, in percent, at which the heap is captured (default
    /// [`heap::DEFAULT_CAPTURE_AT_PERCENT`]; clamped to 1..=100).
    pub fn capture_at_percent(mut self, percent: u8) -> Self {
        self.capture.at_percent = percent.clamp(1, 100);
        self
    }

    /// Most capture files kept, the oldest captures removed first (default
    /// [`heap::DEFAULT_CAPTURE_MAX_FILES`]; at least 2).
    pub fn capture_max_files(mut self, n: usize) -> Self {
        self.capture.max_files = n.max(2);
        self
    }

    /// The memory limit in bytes, measured against the process's resident set, in place of
    /// the cgroup's limit and usage (`DIAG_MEMORY_LIMIT_BYTES`).
    pub fn memory_limit_bytes(mut self, bytes: u64) -> Self {
        self.capture.memory_limit_bytes = Some(bytes).filter(|b| *b > 0);
        self
    }
}

/// Held by the tests that set `DIAG_*` variables, since `Builder::from_env` reads them all.
#[cfg(test)]
pub(super) static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_settings_from_env() {
        let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // Only this test touches these variables.
        let set = |k: &str, v: &str| {
            // SAFETY: the tests that read or write DIAG_* variables hold ENV_LOCK.
            unsafe { std::env::set_var(k, v) }
        };
        let clear = || {
            for k in [
                env::CAPTURE_DIR,
                env::CAPTURE_AT_PERCENT,
                env::CAPTURE_MAX_FILES,
                env::MEMORY_LIMIT_BYTES,
            ] {
                // SAFETY: as above.
                unsafe { std::env::remove_var(k) }
            }
        };
        set(env::CAPTURE_DIR, "/var/tmp/caps");
        set(env::CAPTURE_AT_PERCENT, "85");
        set(env::CAPTURE_MAX_FILES, "6");
        set(env::MEMORY_LIMIT_BYTES, "1073741824");
        let c = CaptureConfig::default().with_env().unwrap();
        assert_eq!(c.dir, Some(PathBuf::from("/var/tmp/caps")));
        assert_eq!(
            (c.at_percent, c.max_files, c.memory_limit_bytes),
            (85, 6, Some(1 << 30))
        );
        for (k, bad) in [
            (env::CAPTURE_AT_PERCENT, "0"),
            (env::CAPTURE_AT_PERCENT, "101"),
            (env::CAPTURE_MAX_FILES, "1"),
            (env::MEMORY_LIMIT_BYTES, "0"),
            (env::MEMORY_LIMIT_BYTES, "1G"),
        ] {
            clear();
            set(k, bad);
            let e = CaptureConfig::default().with_env().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains(k), "{e}");
        }
        clear();
        let c = CaptureConfig::default().with_env().unwrap();
        assert_eq!((c.dir, c.at_percent, c.max_files), (None, 90, 20));
        let b = Builder::default()
            .capture_dir("/tmp")
            .capture_at_percent(0)
            .capture_max_files(1)
            .memory_limit_bytes(0);
        assert_eq!(
            (
                b.capture.at_percent,
                b.capture.max_files,
                b.capture.memory_limit_bytes
            ),
            (1, 2, None)
        );
    }
}
