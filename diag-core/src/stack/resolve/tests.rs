use super::*;
use crate::symbolize::naming::Resolved;

impl Resolved for backtrace::Symbol {
    fn name_bytes(&self) -> Option<&[u8]> {
        self.name().map(|n| n.as_bytes())
    }
    fn file_name(&self) -> Option<String> {
        self.filename().map(|p| p.display().to_string())
    }
    fn line_number(&self) -> Option<u32> {
        self.lineno()
    }
}

#[inline(never)]
fn symbolize_me() -> usize {
    std::hint::black_box(5)
}

#[test]
fn names_files_and_lines_for_this_binary() {
    assert_eq!(symbolize_me(), 5);
    let addr = symbolize_me as *const () as usize + 1;
    let f = with_state(|st| st.frames(addr, &mut None));
    let last = f.last().expect("a frame");
    assert!(
        last.function.ends_with("resolve::tests::symbolize_me"),
        "{f:?}"
    );
    assert!(
        last.file
            .as_deref()
            .is_some_and(|p| p.ends_with("resolve/tests.rs")),
        "{f:?}"
    );
    assert!(last.line > 0, "{f:?}");
    // This test binary does not run `DiagAlloc`: what the symbolizer keeps cannot be
    // measured, so it keeps nothing after a request.
    assert!(!has_image(Path::new("/proc/self/exe")));
    assert_eq!(usage().0, 0);
    // In a batch: diag's own frames at the top of a stack are dropped (here, all of
    // them), libc's are named from its dynamic symbols, and an address outside any image
    // is named by address.
    let libc_fn = libc::getpid as *const () as usize + 1;
    let s = stacks(&[&[addr], &[libc_fn], &[8]]);
    assert!(s[0].is_empty(), "{s:?}");
    assert!(s[1][0].function.contains("getpid"), "{s:?}");
    // (Named by its call's address, the byte before the return address.)
    assert_eq!(s[2][0].function, "0x7");
    assert!(s[2][0].is_raw(), "{s:?}");
}

/// The frames backtrace's resolver gives for `addr`, named by the same rules.
fn backtrace_frames(addr: usize) -> Vec<(String, Option<String>, u32)> {
    let f = crate::stack::names::resolve_with(addr, |cb| {
        backtrace::resolve(addr as *mut std::ffi::c_void, cb)
    });
    f.into_iter()
        .map(|f| (f.function, f.file, f.line))
        .collect()
}

/// Names, files, lines and inlined frames exactly as `backtrace` gave them (which diag
/// used before), on a captured stack through the standard library and on ~800 addresses
/// spread over this test binary's functions and libc's.
#[test]
fn frames_are_the_ones_backtrace_gave() {
    let mut ips = Vec::new();
    let mut v: Vec<u32> = (0..64).rev().collect();
    v.sort_by(|a, b| {
        if ips.is_empty() {
            backtrace::trace(|f| {
                ips.push(f.ip() as usize);
                true
            });
        }
        a.cmp(b)
    });
    assert!(ips.len() > 5, "{ips:?}");
    // Addresses within this binary's and libc's functions, from their symbol tables.
    let mut addrs = ips.clone();
    let exe_fn = frames_are_the_ones_backtrace_gave as *const () as usize;
    for (probe, path) in [
        (exe_fn, None),
        (libc::malloc as *const () as usize, Some(())),
    ] {
        let seg = crate::stack::segment_of(probe).expect("segment");
        let file = match path {
            None => std::path::PathBuf::from("/proc/self/exe"),
            Some(()) => seg.file.clone().expect("libc's path"),
        };
        let data = std::fs::read(&file).unwrap();
        let obj = object::File::parse(&*data).unwrap();
        use object::{Object, ObjectSymbol};
        let mut funcs: Vec<_> = obj
            .symbols()
            .chain(obj.dynamic_symbols())
            .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 4)
            .map(|s| (s.address() + s.size() / 2) as usize + seg.bias)
            .filter(|a| seg.range.contains(a))
            .collect();
        funcs.sort_unstable();
        funcs.dedup();
        let step = (funcs.len() / 400).max(1);
        addrs.extend(funcs.into_iter().step_by(step));
    }
    // One request for all (this test binary does not run `DiagAlloc`, so the symbolizer
    // keeps nothing from one request to the next).
    let ours: Vec<Arc<[Frame]>> =
        with_state(|st| addrs.iter().map(|&a| st.frames(a, &mut None)).collect());
    let mut differ = Vec::new();
    for (&a, ours) in addrs.iter().zip(ours) {
        let ours: Vec<_> = ours
            .iter()
            .map(|f| (f.function.clone(), f.file.clone(), f.line))
            .collect();
        let theirs = backtrace_frames(a);
        // One difference is allowed: of a symbol's aliases (libc's `xdr_uint32_t` and
        // `__GI_xdr_uint32_t`), backtrace gives whichever its unstable sort put first,
        // diag always the public one.
        let alias = |(f, file, line): &(String, Option<String>, u32),
                     (g, gfile, gline): &(String, Option<String>, u32)| {
            (file, line) == (gfile, gline) && g.trim_start_matches('_').ends_with(f.as_str())
        };
        let same = ours.len() == theirs.len()
            && ours.iter().zip(&theirs).all(|(o, t)| o == t || alias(o, t));
        if !same {
            differ.push((a, ours, theirs));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} addresses differ, e.g. {:#?}",
        differ.len(),
        addrs.len(),
        &differ[..differ.len().min(3)]
    );
}

/// An address in the kernel's vDSO (where a CPU sample lands inside `clock_gettime`) is
/// named `[vdso]`, not left as a bare address.
#[test]
fn vdso_addresses_are_named() {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if base == 0 {
        return; // no vDSO on this system
    }
    let seg = (base..base + (1 << 16))
        .step_by(64)
        .find_map(crate::stack::segment_of)
        .expect("the vDSO's executable segment");
    assert!(seg.file.as_deref().is_some_and(is_vdso), "{:?}", seg.file);
    let addr = seg.range.start + seg.range.len() / 2;
    let frames = with_state(|st| st.frames(addr, &mut None));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].function, VDSO);
}

/// An address inside a PLT stub of this binary (a sample can interrupt one) is named as the
/// stub (`memcpy@plt`), not left as an address.
#[test]
#[cfg(target_arch = "x86_64")]
fn names_a_plt_stub() {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    // The mapping of the file's start: a PIE's first segment has address and offset 0.
    let base = maps
        .lines()
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 6 && f[2] == "00000000" && Path::new(f[5]) == exe
        })
        .and_then(|l| usize::from_str_radix(l.split('-').next()?, 16).ok())
        .expect("the executable's first mapping");
    let stub = crate::symbolize::symtab::with_table(Path::new("/proc/self/exe"), |t| {
        t.and_then(|t| t.plt_stub_addrs().first().copied())
    })
    .expect("a Rust test binary calls through its PLT");
    // As a return address: the byte before it is looked up, still inside the 16-byte stub.
    let f = with_state(|st| st.frames(base + stub as usize + 4, &mut None));
    assert!(
        f.last().is_some_and(|f| f.function.ends_with("@plt")),
        "{f:?}"
    );
}
