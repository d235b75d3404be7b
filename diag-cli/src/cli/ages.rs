//! `diag ages`'s arguments, and the options they become.

use std::time::Duration;

use clap::Args;

use super::{NamesArgs, RemoteArgs};
use crate::commands::ages;

/// `diag ages FILE|URL`.
#[derive(Debug, Args)]
pub(crate) struct AgesArgs {
    /// A live heap profile saved by `diag snapshot` (pprof .pb.gz), or the URL of a live
    /// service's debug listener (http://host:port), whose heap is read now.
    #[arg(value_name = "FILE|URL")]
    pub(crate) input: String,
    /// URL mode: read the heap history point the service recorded DURATION ago (e.g. 10m,
    /// 1h; its oldest if the history is shorter) instead of its heap now.
    #[arg(long, value_name = "DURATION")]
    pub(crate) at: Option<String>,
    /// Show this many sites, most live bytes first (0 = all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) top: usize,
    /// Print the sites as JSON (the contract in the README) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) names: NamesArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

impl From<AgesArgs> for ages::Options {
    fn from(a: AgesArgs) -> Self {
        Self {
            input: a.input,
            at: a.at,
            top: a.top,
            json: a.json,
            names: a.names.into(),
            token: a.remote.token,
            timeout: Duration::from_secs(a.remote.timeout.max(1)),
        }
    }
}
