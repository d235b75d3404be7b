//! Where a profile comes from: a saved file or a live service. The one place that decides.

use std::path::Path;

use anyhow::{Context, Result, bail};
use diag_core::profile::{self, Profile};

/// A profile argument: a file path, or the URL of a live service's debug listener.
pub(crate) enum Input<'a> {
    /// A saved profile.
    File(&'a Path),
    /// A live service (`http://...` or `https://...`).
    Url(&'a str),
}

impl<'a> Input<'a> {
    /// Classifies a command-line argument: anything starting with `http://` or `https://` is
    /// a URL, everything else a file.
    pub(crate) fn parse(arg: &'a str) -> Self {
        if arg.starts_with("http://") || arg.starts_with("https://") {
            Input::Url(arg)
        } else {
            Input::File(Path::new(arg))
        }
    }
}

/// Reads and decodes the profile named by `arg`; errors name it (`reading a.pb.gz: ...`).
pub(crate) fn read_profile(arg: &str) -> Result<Profile> {
    match Input::parse(arg) {
        Input::File(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            decode(&bytes, &path.display().to_string())
        }
        Input::Url(url) => bail!(
            "reading {url}: fetching profiles from a live service is not yet supported by this \
             command; save one with `diag snapshot` and pass the file"
        ),
    }
}

/// Decodes a profile read from `what` (a file or URL, for messages) and names its
/// unsymbolized frames, if any (see [`crate::symbols`]).
pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<Profile> {
    let mut p = profile::load(bytes).with_context(|| format!("reading {what}"))?;
    crate::symbols::name(&mut p, what)?;
    Ok(p)
}

/// `profile` less the profile in the file `base` (`--base`), stack by stack; `profile` as it
/// is without one.
pub(crate) fn less_base(profile: Profile, base: Option<&str>) -> Result<Profile> {
    let Some(base) = base else {
        return Ok(profile);
    };
    let earlier = read_profile(base)?;
    profile::delta(&earlier, &profile).with_context(|| format!("subtracting --base {base}"))
}

/// A CPU profile fetched from a live service.
pub(crate) struct FetchedCpu {
    /// The debug listener's base URL.
    pub(crate) base: String,
    /// The gzip'd pprof bytes as served (to save as they are).
    pub(crate) bytes: Vec<u8>,
    /// The decoded profile.
    pub(crate) profile: Profile,
}

/// Extra time allowed beyond the profile's length for the service to symbolize and answer.
const CPU_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

/// Profiles the CPU of the service at `url` for `seconds` at `frequency` Hz
/// (`/debug/pprof/profile`), ticking a progress line on stderr while it waits. The HTTP timeout
/// is the profile's length plus a minute.
pub(crate) fn fetch_cpu(
    url: &str,
    token: Option<String>,
    seconds: u64,
    frequency: u32,
) -> Result<FetchedCpu> {
    let timeout = std::time::Duration::from_secs(seconds) + CPU_SLACK;
    let remote = crate::remote::Remote::new(url, token, timeout)?;
    let path = format!("/debug/pprof/profile?seconds={seconds}&frequency={frequency}");
    let base = remote.base().to_owned();
    let reply = crate::remote::with_progress(
        &format!("profiling the CPU of {base} for {seconds} s at {frequency} Hz"),
        seconds,
        || remote.get_profile(&path),
    )?;
    let profile = decode(&reply.body, &format!("the CPU profile from {base}{path}"))?;
    Ok(FetchedCpu {
        base,
        bytes: reply.body,
        profile,
    })
}
