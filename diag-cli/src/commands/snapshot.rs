//! `diag snapshot URL [-o FILE] [--seconds N]`: pull a heap profile from a live service and
//! save it; with `--seconds`, a delta profile of what changed over the next N seconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use diag_core::profile::pprof_codec;

use crate::remote::{self, Remote};
use crate::units::{bytes, signed};

/// What `diag snapshot` is asked to do.
pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) output: Option<PathBuf>,
    pub(crate) allocs: bool,
    /// Seconds of a delta profile (`?seconds=N`); 0 for a snapshot of now.
    pub(crate) seconds: u64,
    pub(crate) token: Option<String>,
    pub(crate) timeout: std::time::Duration,
}

/// What one snapshot saved.
pub(crate) struct Saved {
    pub(crate) path: PathBuf,
    pub(crate) inuse_bytes: i64,
    pub(crate) inuse_objects: i64,
    /// Allocated bytes (`alloc_space`): since the start, or over a delta profile's seconds.
    pub(crate) alloc_bytes: i64,
    pub(crate) rate: i64,
    /// One line per leak-like site by the ages of its live bytes (`diag ages`), most live
    /// bytes first, at most three; none for a delta profile or one without ages.
    pub(crate) leak_like: Vec<String>,
}

/// Fetches, checks and writes one snapshot; returns where and what.
pub(crate) fn take(args: &Options) -> Result<Saved> {
    let remote = Remote::new(
        &args.url,
        args.token.clone(),
        args.timeout + Duration::from_secs(args.seconds),
    )?;
    let mut path = if args.allocs {
        "/debug/pprof/allocs"
    } else {
        "/debug/pprof/heap"
    }
    .to_owned();
    let reply = if args.seconds > 0 {
        path.push_str(&format!("?seconds={}", args.seconds));
        remote::with_progress(
            &format!(
                "recording what {} allocates for {} s",
                remote.base(),
                args.seconds
            ),
            args.seconds,
            || remote.get_profile(&path),
        )?
    } else {
        remote.get_profile(&path)?
    };
    let mut profile = pprof_codec::decode(&reply.body).with_context(|| {
        format!(
            "{}{path} answered a profile diag cannot read",
            remote.base()
        )
    })?;
    // Unsymbolized (asked for with --binary / --debug-dir, or the service's
    // DIAG_SYMBOLIZE=off): named here and saved named; saved as served (with a note) when
    // nothing names it here, to be named later (`diag symbolize`, or any command with
    // --binary): the snapshot is not lost for want of a binary.
    let mut raw = profile
        .samples
        .iter()
        .any(|s| s.stack.iter().any(|f| f.is_raw()));
    if raw {
        match crate::symbols::name(&mut profile, &format!("{}{path}", remote.base())) {
            Err(e) if !crate::symbols::wants_raw() => {
                eprintln!(
                    "diag: note: saved unsymbolized ({e:#}); name it later with `diag symbolize \
                     FILE --binary PATH`"
                );
                raw = false;
            }
            r => r?,
        }
    }
    let total = |t: &str| {
        profile
            .sample_index(t)
            .map(|i| profile.total(i))
            .unwrap_or(0)
    };
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(default_name(remote.base(), args.seconds > 0)));
    let body = if raw {
        pprof_codec::encode_gzip(&profile)
    } else {
        reply.body
    };
    std::fs::write(&out, &body).with_context(|| format!("writing {}", out.display()))?;
    Ok(Saved {
        path: out,
        inuse_bytes: total("inuse_space"),
        inuse_objects: total("inuse_objects"),
        alloc_bytes: total("alloc_space"),
        rate: profile.period,
        leak_like: super::ages::leak_like_lines(&profile, 3),
    })
}

/// The default file name of a snapshot of the listener at `base` taken now:
/// `heap-<host>-<port>-<UTC time>.pb.gz`, `heap-delta-...` for a delta profile.
pub(crate) fn default_name(base: &str, delta: bool) -> String {
    format!(
        "heap-{}{}-{}.pb.gz",
        if delta { "delta-" } else { "" },
        remote::host_tag(base),
        remote::timestamp()
    )
}

/// Runs `diag snapshot`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let s = take(&args)?;
    let rate = match s.rate {
        0 => "off".to_owned(),
        1 => "exact".to_owned(),
        r => format!("1 per {}", bytes(r)),
    };
    if args.seconds > 0 {
        println!(
            "over {} s: allocated {}, in use {} ({} objects) (estimated; sample rate {rate}) -> {}",
            args.seconds,
            bytes(s.alloc_bytes),
            signed(s.inuse_bytes, "bytes"),
            signed(s.inuse_objects, "count"),
            s.path.display()
        );
    } else {
        println!(
            "in use: {} in {} objects (estimated; sample rate {rate}) -> {}",
            bytes(s.inuse_bytes),
            s.inuse_objects,
            s.path.display()
        );
    }
    for line in &s.leak_like {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
