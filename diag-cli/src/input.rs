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
            profile::load(&bytes).with_context(|| format!("reading {}", path.display()))
        }
        Input::Url(url) => bail!(
            "reading {url}: fetching profiles from a live service is not yet supported by this \
             command; save one with `diag snapshot` and pass the file"
        ),
    }
}
