//! What diag knows of the process it runs in, for naming frames and for profiles' metadata:
//! the application's crates (configured, and found in the main binary's symbol table on a
//! thread of diag's own at start-up) and the binaries mapped into it (`/proc/self/maps`).

use std::sync::{Mutex, OnceLock};

/// Crates of the application configured in this process (`DIAG_APP_CRATES`,
/// `Builder::app_crates`).
fn configured_app_crates() -> &'static Mutex<Vec<String>> {
    static CRATES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    &CRATES
}

/// Sets the application's crates named by the configuration (see [`app_crates`]).
pub(crate) fn set_app_crates(crates: &[String]) {
    let mut c = configured_app_crates()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for k in crates {
        if !c.contains(k) {
            c.push(k.clone());
        }
    }
}

/// The profile comment that records [`app_crates`] (`app_crates=a,b`), if there are any.
pub(crate) fn app_crates_comment() -> Option<String> {
    let app = app_crates();
    (!app.is_empty()).then(|| {
        format!(
            "{}={}",
            crate::profile::sites::APP_CRATES_COMMENT,
            app.join(",")
        )
    })
}

/// The application's crates this process knows of, for its profiles to record
/// ([`APP_CRATES_COMMENT`](crate::profile::sites::APP_CRATES_COMMENT)): the binary's own crate
/// (the crate whose `main` its symbol table has) and those configured. Finding the binary's
/// crate reads the executable's symbol table (half a second for a large unoptimized binary):
/// that is done once on a thread of its own, started by the first call (or by
/// [`warm_app_crates`] at start-up), so no snapshot waits for it; a call before it is done
/// has the configured crates only.
pub(crate) fn app_crates() -> Vec<String> {
    let mut out = match main_crates().get() {
        Some(main) => main.clone(),
        None => {
            warm_app_crates();
            Vec::new()
        }
    };
    for k in configured_app_crates()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// The binary's own crates, once found.
fn main_crates() -> &'static OnceLock<Vec<String>> {
    static MAIN: OnceLock<Vec<String>> = OnceLock::new();
    &MAIN
}

/// Starts finding the binary's crate (see [`app_crates`]) on a thread of its own, once.
pub(crate) fn warm_app_crates() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("diag-symbols".into())
            .spawn(|| {
                // diag's own work: its reading of the symbol table is neither sampled nor
                // counted as the application's (a real service showed a sampled 200 KiB
                // buffer of this thread's in its heap profile).
                let _own = crate::alloc_state::IgnoreAllocs::new();
                #[cfg(all(feature = "heap", target_os = "linux"))]
                let found = crate::stack::symtab::main_crates();
                #[cfg(not(all(feature = "heap", target_os = "linux")))]
                let found = Vec::new();
                let _ = main_crates().set(found);
            });
        if spawned.is_err() {
            let _ = main_crates().set(Vec::new());
        }
    });
}

/// The executable file mappings of this process from `/proc/self/maps`, the main binary
/// first (what pprof expects), for the `mapping` table of served profiles. Empty where
/// `/proc` is not available.
pub(crate) fn mappings() -> Vec<crate::profile::Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut out = parse_maps(&maps);
    // Stable: the main binary's segments first, in address order, then the rest.
    out.sort_by_key(|m| m.file != exe);
    out
}

/// Parses `/proc/PID/maps` text: file-backed executable ranges only.
pub(crate) fn parse_maps(text: &str) -> Vec<crate::profile::Mapping> {
    text.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode path (the path may contain spaces)
            let mut f = line.splitn(6, ' ');
            let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
            let path = f.nth(2)?.trim_start();
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (start, limit) = range.split_once('-')?;
            Some(crate::profile::Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                limit: u64::from_str_radix(limit, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                file: path.to_owned(),
                build_id: String::new(),
            })
        })
        .collect()
}
