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
        // Unsymbolized profiles by default: no symbol table is read (the CLI that names the
        // profile finds the binary's crate in the binary's).
        None if crate::stack::resolve::default_naming() == crate::stack::resolve::Naming::Raw => {
            Vec::new()
        }
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
                let found = crate::stack::names::main_crates();
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
/// first (what pprof expects), each with its image's GNU build ID (read from the image's
/// notes in memory, so a binary replaced on disk since still gets its own), for the `mapping`
/// table of served profiles: with them, `go tool pprof BINARY` and `diag --binary` find the
/// file to symbolize an unsymbolized profile with. Empty where `/proc` is not available.
pub(crate) fn mappings() -> Vec<crate::profile::Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut out = parse_maps(&maps);
    #[cfg(target_os = "linux")]
    for (code, id) in build_ids() {
        for m in out.iter_mut().filter(|m| m.contains(code as u64)) {
            m.build_id.clone_from(&id);
        }
    }
    // Stable: the main binary's segments first, in address order, then the rest.
    out.sort_by_key(|m| m.file != exe);
    out
}

/// The `exe_code=` comment of unsymbolized profiles: the main executable's code hash (see
/// [`crate::symbolize::EXE_CODE_COMMENT`]), computed once, from its executable segments as
/// loaded (read-only code: relocations never touch it). About 1 ms per MB of code, on the
/// first unsymbolized profile.
#[cfg(target_os = "linux")]
pub(crate) fn exe_code_comment() -> Option<String> {
    static HASH: OnceLock<Option<String>> = OnceLock::new();
    let hash = HASH.get_or_init(|| {
        let _own = crate::alloc_state::IgnoreAllocs::new();
        let mut hash = None;
        crate::stack::unwind::each_image(|info| {
            let mut parts: Vec<&[u8]> = Vec::new();
            for i in 0..info.dlpi_phnum as usize {
                // SAFETY: dlpi_phdr has dlpi_phnum entries.
                let ph = unsafe { &*info.dlpi_phdr.add(i) };
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    let at = info.dlpi_addr as usize + ph.p_vaddr as usize;
                    // SAFETY: the main program's executable segment is mapped readable,
                    // p_filesz bytes of it from the file, for the life of the process.
                    parts.push(unsafe {
                        std::slice::from_raw_parts(at as *const u8, ph.p_filesz as usize)
                    });
                }
            }
            if !parts.is_empty() {
                hash = Some(crate::symbolize::code_hash(parts));
            }
            // The loader lists the main program first.
            std::ops::ControlFlow::Break(())
        });
        hash
    });
    hash.as_ref()
        .map(|h| format!("{}={h}", crate::symbolize::EXE_CODE_COMMENT))
}

/// For each loaded image with a GNU build ID: an address of its code, and the ID in hex.
#[cfg(target_os = "linux")]
fn build_ids() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    crate::stack::unwind::each_image(|info| {
        let (mut code, mut id) = (None, None);
        for i in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr has dlpi_phnum entries.
            let ph = unsafe { &*info.dlpi_phdr.add(i) };
            let at = info.dlpi_addr as usize + ph.p_vaddr as usize;
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 && ph.p_memsz > 0 {
                code.get_or_insert(at);
            } else if ph.p_type == libc::PT_NOTE && id.is_none() {
                // SAFETY: a PT_NOTE segment of a loaded image lies in one of its loaded
                // (readable) segments, p_memsz bytes from `at`, for as long as the image is
                // loaded: the loader's lock, held during this callback, keeps it.
                let notes =
                    unsafe { std::slice::from_raw_parts(at as *const u8, ph.p_memsz as usize) };
                id = gnu_build_id(notes);
            }
        }
        if let (Some(code), Some(id)) = (code, id) {
            out.push((code, id));
        }
        std::ops::ControlFlow::Continue(())
    });
    out
}

/// The GNU build ID (`NT_GNU_BUILD_ID`) in an ELF note segment, in hex.
pub(crate) fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let align = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let (namesz, descsz, ty) = (
            word(notes, 0)? as usize,
            word(notes, 4)? as usize,
            word(notes, 8)?,
        );
        let name_end = 12usize.checked_add(align(namesz)?)?;
        let desc_end = name_end.checked_add(align(descsz)?)?;
        let name = notes.get(12..12 + namesz)?;
        let desc = notes.get(name_end..name_end + descsz)?;
        if ty == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        notes = notes.get(desc_end..)?;
    }
    None
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

#[cfg(test)]
mod tests {
    #[test]
    fn maps_lines_parse() {
        let text = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 123 /usr/bin/my app
55d0c0b00000-55d0c0c00000 r-xp 00100000 fd:01 123 /usr/bin/my app
7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
7f0000004000-7f0000005000 r-xp 00002000 fd:01 9 /lib/libc.so.6
";
        let m = super::parse_maps(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].file, "/usr/bin/my app");
        assert_eq!(
            (m[0].start, m[0].limit, m[0].offset),
            (0x55d0c0b00000, 0x55d0c0c00000, 0x100000)
        );
        assert_eq!(m[1].file, "/lib/libc.so.6");
    }

    /// The main binary comes first, holds this code, and carries the build ID its file has.
    #[test]
    fn this_process_maps_its_own_code_with_build_ids() {
        let m = super::mappings();
        let here = super::mappings as fn() -> Vec<crate::profile::Mapping> as usize as u64;
        if !std::path::Path::new("/proc/self/maps").exists() {
            return;
        }
        assert!(m.iter().any(|m| m.contains(here)), "{m:?}");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(m[0].file, exe.display().to_string());
        let data = std::fs::read(&exe).unwrap();
        use object::Object;
        let file_id = object::File::parse(&*data)
            .unwrap()
            .build_id()
            .unwrap()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>());
        if let Some(id) = file_id {
            assert_eq!(m[0].build_id, id, "{m:?}");
        }
        // libc has one too on this system's Debian builds.
        assert!(
            m.iter()
                .all(|m| !m.file.contains("libc.so") || !m.build_id.is_empty()),
            "{m:?}"
        );
    }

    #[test]
    fn build_ids_parse_from_notes() {
        let mut notes = Vec::new();
        // A note of another type first, then the build ID.
        for (ty, name, desc) in [
            (1u32, &b"GNU\0"[..], &[9u8; 16][..]),
            (3, b"GNU\0", &[0xab, 0xcd, 0x01]),
        ] {
            notes.extend((name.len() as u32).to_ne_bytes());
            notes.extend((desc.len() as u32).to_ne_bytes());
            notes.extend(ty.to_ne_bytes());
            notes.extend(name);
            notes.resize(notes.len().next_multiple_of(4), 0);
            notes.extend(desc);
            notes.resize(notes.len().next_multiple_of(4), 0);
        }
        assert_eq!(super::gnu_build_id(&notes).as_deref(), Some("abcd01"));
        assert_eq!(super::gnu_build_id(&notes[..20]), None);
        assert_eq!(super::gnu_build_id(&[]), None);
    }
}
