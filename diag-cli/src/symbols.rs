//! Naming unsymbolized profiles here rather than in the service: a service with
//! `DIAG_SYMBOLIZE=off` (or asked for `?symbolize=0`) serves addresses and mappings with GNU
//! build IDs; the files that name them are found from `--binary`, `--debug-dir`, the mapped
//! file's own path when it has the same build ID (the profiled host), `/usr/lib/debug`, and
//! debuginfod servers (`DEBUGINFOD_URLS`, the elfutils protocol), whose answers are cached
//! under the user's cache directory. Names come from `diag_core::symbolize`, the code the
//! service names its own frames with.
//!
//! The settings are the process's (one command per process), set once by the command line
//! before any profile is read, so every place that decodes a profile names it the same way.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Result, bail};
use diag_core::profile::{Frame, Profile};
use diag_core::symbolize::{Fetched, Sources, symbolize};

mod tasks;
pub(crate) use tasks::name_tasks;

/// Where the files that name unsymbolized profiles are (`--binary`, `--debug-dir`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Symbols {
    /// Binaries or debug files of the profiled service, matched by GNU build ID.
    pub(crate) binaries: Vec<PathBuf>,
    /// Trees of debug files by build ID (`DIR/.build-id/ab/cdef....debug`).
    pub(crate) debug_dirs: Vec<PathBuf>,
}

impl Symbols {
    /// Makes these the process's settings (the first call wins).
    pub(crate) fn install(&self) {
        let _ = SETTINGS.set(self.clone());
    }
}

static SETTINGS: OnceLock<Symbols> = OnceLock::new();

fn settings() -> &'static Symbols {
    SETTINGS.get_or_init(Symbols::default)
}

/// True when files to name profiles with were given: live profiles are then asked for
/// unsymbolized (`?symbolize=0`).
pub(crate) fn wants_raw() -> bool {
    let s = settings();
    !s.binaries.is_empty() || !s.debug_dirs.is_empty()
}

/// `path` with `symbolize=0` added to its query when [`wants_raw`].
pub(crate) fn profile_path(path: &str) -> String {
    if !wants_raw() || path.contains("symbolize=") {
        return path.to_owned();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}symbolize=0")
}

/// Names the unsymbolized frames of `profile` (read from `what`), if it has any: an error
/// when the profile is unsymbolized and none of its addresses could be named, a warning on
/// stderr for those left unnamed. A profile the service named but for a few addresses (an
/// interrupted instruction in a PLT stub, say) keeps them as addresses, with the warning.
pub(crate) fn name(profile: &mut Profile, what: &str) -> Result<()> {
    let frames = || profile.samples.iter().flat_map(|s| s.stack.iter());
    if !frames().any(Frame::is_raw) {
        return Ok(());
    }
    let named_before = frames().any(|f| !f.is_raw());
    let s = settings();
    let mut sources = Sources::default();
    sources.binaries = s.binaries.clone();
    sources.debug_dirs = s.debug_dirs.clone();
    let mut fetch = |id: &str| debuginfod(id);
    let outcome = symbolize(profile, &sources, &mut fetch)
        .map_err(|e| anyhow::anyhow!("naming the addresses of {what}: {e}"))?;
    let why = outcome.warnings.join("; ");
    if outcome.addresses > 0 && outcome.named == 0 && !named_before {
        bail!(
            "naming the addresses of {what}: none of its {} unsymbolized addresses could be \
             named ({why}); pass the service's binary with --binary, its debug files with \
             --debug-dir, or set DEBUGINFOD_URLS",
            outcome.addresses
        );
    }
    if outcome.named < outcome.addresses {
        // Once per set of binaries: `diag trend` reads dozens of history points of one
        // service, each with the same cause.
        static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut ids: Vec<&str> = profile
            .mappings
            .iter()
            .map(|m| m.build_id.as_str())
            .collect();
        ids.sort_unstable();
        let key = ids.join(",");
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        if !warned.contains(&key) {
            let _ = writeln!(
                std::io::stderr(),
                "diag: warning: {what}: {} of {} addresses named; {why} (not repeated for \
                 the other profiles of these binaries)",
                outcome.named,
                outcome.addresses
            );
            warned.push(key);
        }
    } else {
        for note in &outcome.warnings {
            let _ = writeln!(std::io::stderr(), "diag: note: {what}: {note}");
        }
    }
    Ok(())
}

/// The debuginfod servers to ask (`DEBUGINFOD_URLS`, space-separated, as elfutils reads it).
fn servers() -> Vec<String> {
    std::env::var("DEBUGINFOD_URLS")
        .unwrap_or_default()
        .split_whitespace()
        .map(|u| u.trim_end_matches('/').to_owned())
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .collect()
}

/// Where debuginfod answers are kept: `DEBUGINFOD_CACHE_PATH`, else
/// `$XDG_CACHE_HOME/diag/debuginfod`, else `~/.cache/diag/debuginfod`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DEBUGINFOD_CACHE_PATH") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("diag").join("debuginfod"))
}

/// How long one debuginfod request may take: `DEBUGINFOD_TIMEOUT` seconds (elfutils' name),
/// default 30.
fn timeout() -> Duration {
    std::env::var("DEBUGINFOD_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// The debug file and executable of build ID `id` from the cache or the debuginfod servers;
/// failures are warnings (the addresses stay unnamed), never errors.
fn debuginfod(id: &str) -> Fetched {
    let servers = servers();
    if servers.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Fetched::default();
    }
    let Some(cache) = cache_dir() else {
        return Fetched::default();
    };
    let dir = cache.join(id);
    let get = |kind: &str| -> Option<PathBuf> {
        let file = dir.join(kind);
        if file.is_file() {
            return Some(file);
        }
        for server in &servers {
            let url = format!("{server}/buildid/{id}/{kind}");
            match download(&url, &file) {
                Ok(true) => return Some(file),
                Ok(false) => {}
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "diag: warning: debuginfod: {e}");
                }
            }
        }
        None
    };
    let debug = get("debuginfo");
    let executable = get("executable");
    Fetched::new(executable, debug)
}

/// Downloads `url` into `to` (through a temporary file beside it): Ok(false) when the server
/// has no such file (404), Err when it cannot be reached or fails.
fn download(url: &str, to: &Path) -> Result<bool> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout()))
        .http_status_as_error(false)
        .build()
        .new_agent();
    // A server that accepts and never answers is told apart from one that refuses.
    let failed = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) => anyhow::anyhow!(
            "{url}: no answer within {} s (DEBUGINFOD_TIMEOUT)",
            timeout().as_secs()
        ),
        e => anyhow::anyhow!("{url}: {e}"),
    };
    let mut reply = agent.get(url).call().map_err(failed)?;
    match reply.status().as_u16() {
        200 => {}
        404 => return Ok(false),
        s => bail!("{url}: answered {s}"),
    }
    let body = reply
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .read_to_vec()
        .map_err(failed)?;
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let tmp = to.with_extension("part");
    std::fs::write(&tmp, &body).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, to).map_err(|e| anyhow::anyhow!("{}: {e}", to.display()))?;
    Ok(true)
}
