//! Turning what `backtrace` resolves into the profile model's frames: shared by the heap
//! profiler's symbolizer and the CPU profile conversion.

use crate::profile::Frame;

/// A frame from a resolved symbol at instruction address `addr`: the demangled name without
/// the hash suffix (or the address when there is no name), file and line when known.
pub(crate) fn frame(sym: &backtrace::Symbol, addr: usize) -> Frame {
    Frame {
        function: match sym.name() {
            Some(n) => format!("{n:#}"),
            None => format!("{addr:#x}"),
        },
        file: sym.filename().map(|p| p.display().to_string()),
        line: sym.lineno().unwrap_or(0),
        address: addr as u64,
    }
}

/// A frame for an address nothing resolved, named by the address as pprof does.
pub(crate) fn unknown(addr: usize) -> Frame {
    Frame {
        function: format!("{addr:#x}"),
        file: None,
        line: 0,
        address: addr as u64,
    }
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
fn parse_maps(text: &str) -> Vec<crate::profile::Mapping> {
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

    #[test]
    fn this_process_maps_its_own_code() {
        let m = super::mappings();
        let here = super::mappings as fn() -> Vec<crate::profile::Mapping> as usize as u64;
        if std::path::Path::new("/proc/self/maps").exists() {
            assert!(m.iter().any(|m| m.contains(here)), "{m:?}");
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            assert_eq!(m[0].file, exe.display().to_string());
        }
    }
}
