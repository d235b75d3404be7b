//! `diag snapshot URL [-o FILE]`: pull a heap profile from a live service and save it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use diag_core::profile::pprof_codec;

use crate::remote::{self, Remote};
use crate::units::bytes;

/// Parsed arguments of `diag snapshot`.
pub(crate) struct SnapshotArgs {
    pub(crate) url: String,
    pub(crate) output: Option<PathBuf>,
    pub(crate) allocs: bool,
    pub(crate) token: Option<String>,
    pub(crate) timeout: std::time::Duration,
}

/// What one snapshot saved.
pub(crate) struct Saved {
    pub(crate) path: PathBuf,
    pub(crate) inuse_bytes: i64,
    pub(crate) inuse_objects: i64,
    pub(crate) rate: i64,
}

/// Fetches, checks and writes one snapshot; returns where and what.
pub(crate) fn take(args: &SnapshotArgs) -> Result<Saved> {
    let remote = Remote::new(&args.url, args.token.clone(), args.timeout)?;
    let path = if args.allocs {
        "/debug/pprof/allocs"
    } else {
        "/debug/pprof/heap"
    };
    let reply = remote.get_profile(path)?;
    let profile = pprof_codec::decode(&reply.body).with_context(|| {
        format!(
            "{}{path} answered a profile diag cannot read",
            remote.base()
        )
    })?;
    let total = |t: &str| {
        profile
            .sample_index(t)
            .map(|i| profile.total(i))
            .unwrap_or(0)
    };
    let out = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "heap-{}-{}.pb.gz",
            remote::host_tag(remote.base()),
            remote::timestamp()
        ))
    });
    std::fs::write(&out, &reply.body).with_context(|| format!("writing {}", out.display()))?;
    Ok(Saved {
        path: out,
        inuse_bytes: total("inuse_space"),
        inuse_objects: total("inuse_objects"),
        rate: profile.period,
    })
}

/// Runs `diag snapshot`.
pub(crate) fn run(args: SnapshotArgs) -> Result<ExitCode> {
    let s = take(&args)?;
    println!(
        "in use: {} in {} objects (estimated; sample rate {}) -> {}",
        bytes(s.inuse_bytes),
        s.inuse_objects,
        match s.rate {
            0 => "off".to_owned(),
            1 => "exact".to_owned(),
            r => format!("1 per {}", bytes(r)),
        },
        s.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
