//! Naming an unsymbolized profile (`?symbolize=0`, `DIAG_SYMBOLIZE=off`) from files: the
//! binaries and debug files its mappings' GNU build IDs name, wherever the profile is read
//! (the `diag` command on a laptop with the CI's debug files, not the production host).
//!
//! The same code names frames as the service does ([`super::dwarf`], [`super::symtab`],
//! [`super::naming`]): a profile symbolized here has the sites, short names and attribution
//! the service would have given it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment};

use super::dwarf::{DEBUG_DIR, Image, build_id_path};
use super::naming::{Namer, SymbolTable, demangle, drop_top_machinery, resolve_with};
use crate::profile::{Frame, Profile, RAW_DROP_TOP_MACHINERY, RAW_STACKS_COMMENT};
use crate::{Error, ErrorKind, Result};

/// Where to find the files that name a profile's addresses.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Sources {
    /// Binaries (executables, shared libraries, or their debug files), matched to the
    /// profile's mappings by GNU build ID (`--binary`).
    pub binaries: Vec<PathBuf>,
    /// Trees of separate debug files by build ID, like `/usr/lib/debug`:
    /// `DIR/.build-id/ab/cdef….debug` (`--debug-dir`). `/usr/lib/debug` is always searched
    /// last.
    pub debug_dirs: Vec<PathBuf>,
}

/// What a fetcher found for a build ID (e.g. from a debuginfod server).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Fetched {
    /// The executable or library itself.
    pub executable: Option<PathBuf>,
    /// Its separate debug file.
    pub debug: Option<PathBuf>,
}

impl Fetched {
    /// What was found: an executable, a debug file, or both.
    pub fn new(executable: Option<PathBuf>, debug: Option<PathBuf>) -> Self {
        Self { executable, debug }
    }
}

/// What [`symbolize`] did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Outcome {
    /// Distinct unsymbolized addresses the profile had.
    pub addresses: usize,
    /// Of those, the ones now named.
    pub named: usize,
    /// One line per image that could not be read: which, its build ID, and why.
    pub warnings: Vec<String>,
}

/// One image of the profile, once its file is found.
struct Found {
    image: Image,
    /// The file's PT_LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
    /// The file the symbol table is read from.
    symbols: PathBuf,
}

impl Found {
    /// The file's virtual address of file offset `off`.
    fn vaddr(&self, off: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(o, size, _)| (*o..o + size).contains(&off))
            .map(|(o, _, v)| off - o + v)
    }
}

/// One file's symbol table for the naming rules.
struct FileSymbols<'a>(&'a Path);

impl SymbolTable for FileSymbols<'_> {
    fn function_at(&self, addr: usize) -> Option<String> {
        let at = addr.checked_sub(1)? as u64;
        super::symtab::with_raw_name(self.0, at, |raw| raw.map(demangle))
    }

    fn functions_where(
        &self,
        _addr: usize,
        keep: &dyn Fn(&[&str]) -> bool,
        limit: usize,
    ) -> Vec<String> {
        super::symtab::with_table(self.0, |t| {
            t.map(|t| t.functions_where(keep, limit))
                .unwrap_or_default()
        })
    }
}

/// The GNU build ID of the ELF file at `path`, in hex; None if it has none.
pub fn build_id(path: &Path) -> Result<Option<String>> {
    let map = super::mapped::Mapped::open(path)
        .ok_or_else(|| Error::new(ErrorKind::Io, format!("cannot read {}", path.display())))?;
    let obj = object::File::parse(map.bytes()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not an ELF file: {e}", path.display()),
        )
    })?;
    Ok(obj
        .build_id()
        .ok()
        .flatten()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()))
}

/// The comment key of an unsymbolized profile's main-binary code hash (`exe_code=fnv1a64:...`):
/// the FNV-1a hash of the executable's executable segments as loaded. Cargo's `strip = true`
/// makes the linker drop the symbol table, which changes the GNU build ID but no byte of the
/// code: the same build with symbols kept at the final link (`cargo rustc --release -- -C
/// strip=none`) has the same code at the same addresses, and this hash shows it, so its names
/// are the right ones.
pub const EXE_CODE_COMMENT: &str = "exe_code";

/// FNV-1a (64 bits) of `parts` in order: a hash that is the same in every build of diag
/// (the service's and the CLI's may differ), fast enough for a binary's code once.
pub(crate) fn code_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("fnv1a64:{h:016x}")
}

/// [`code_hash`] of the executable segments of the ELF file at `path`, as a loader maps them
/// (each segment's file bytes).
fn file_code_hash(path: &Path) -> Option<String> {
    let map = super::mapped::Mapped::open(path)?;
    let obj = object::File::parse(map.bytes()).ok()?;
    // `segments()` are an ELF file's PT_LOAD entries, in file order.
    let parts: Vec<&[u8]> = obj
        .segments()
        .filter(|s| {
            matches!(s.flags(), object::SegmentFlags::Elf { p_flags, .. } if p_flags.0 & object::elf::PF_X.0 != 0)
        })
        .filter_map(|s| s.data().ok())
        .collect();
    (!parts.is_empty()).then(|| code_hash(parts))
}

/// Whether the ELF file at `path` has DWARF of its own.
fn has_dwarf(path: &Path) -> bool {
    use object::ObjectSection;
    super::mapped::Mapped::open(path).is_some_and(|m| {
        object::File::parse(m.bytes()).is_ok_and(|o| {
            o.section_by_name(".debug_info")
                .is_some_and(|s| s.size() > 0)
        })
    })
}

/// The PT_LOAD segments of the ELF file at `path`: (file offset, size, address). A debug file
/// (`objcopy --only-keep-debug`) keeps the program headers with no bytes behind them: there
/// the size in memory stands for the size in the file, which the image had.
fn segments(path: &Path) -> Option<Vec<(u64, u64, u64)>> {
    let map = super::mapped::Mapped::open(path)?;
    let obj = object::File::parse(map.bytes()).ok()?;
    Some(
        obj.segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, if size == 0 { s.size() } else { size }, s.address())
            })
            .collect(),
    )
}

/// Names the unsymbolized frames ([`Frame::is_raw`]) of `profile` from the files `sources`
/// names, matched to its mappings by GNU build ID, and from `fetch` (called once per build
/// ID no given file has; `diag` asks debuginfod there). Frames are named as the service names
/// them, the profiler's own frames at the top of heap and blocking stacks dropped as it drops
/// them, and the application's crates recorded as it records them.
///
/// Errors (nothing could be named): a `--binary` whose build ID no mapping has, the main
/// binary's mapping included (both IDs named); a profile with unsymbolized frames but no build
/// IDs (Go's, older diag's). An image with no file found leaves its addresses unnamed, with a
/// warning in the [`Outcome`].
pub fn symbolize(
    profile: &mut Profile,
    sources: &Sources,
    fetch: &mut dyn FnMut(&str) -> Fetched,
) -> Result<Outcome> {
    // The distinct raw addresses, by mapping.
    let mut by_mapping: HashMap<usize, Vec<u64>> = HashMap::new();
    let mut unmapped = 0usize;
    for s in &profile.samples {
        for f in s.stack.iter().filter(|f| f.is_raw()) {
            match profile.mappings.iter().position(|m| m.contains(f.address)) {
                Some(i) => by_mapping.entry(i).or_default().push(f.address),
                None => unmapped += 1,
            }
        }
    }
    for v in by_mapping.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    let mut out = Outcome {
        addresses: by_mapping.values().map(Vec::len).sum(),
        ..Outcome::default()
    };
    let given = given_binaries(sources)?;
    if by_mapping.is_empty() {
        if unmapped > 0 {
            out.warnings.push(format!(
                "{unmapped} unsymbolized frames lie in no mapping of the profile: they stay \
                 addresses"
            ));
        }
        return Ok(out);
    }
    let ids: Vec<&str> = profile
        .mappings
        .iter()
        .map(|m| m.build_id.as_str())
        .filter(|id| !id.is_empty())
        .collect();
    if ids.is_empty() {
        return Err(Error::invalid(
            "the profile's mappings carry no build IDs (a Go profile, or one from a diag \
             before build IDs): there is nothing to match a binary against",
        ));
    }
    // A given binary of another build ID is the main binary's all the same when its code is
    // byte for byte the same (cargo's `strip = true` against a `strip = false` rebuild).
    let exe_code = profile.comment_value(EXE_CODE_COMMENT).map(str::to_owned);
    let mut given = given;
    for (path, id) in &mut given {
        if !ids.contains(&id.as_str()) {
            let main = &profile.mappings[0];
            if exe_code.is_some() && !main.build_id.is_empty() && file_code_hash(path) == exe_code {
                out.warnings.push(format!(
                    "{} has build ID {id}, the profile's main binary {}: the same code (one \
                     stripped by the linker), names taken from it",
                    path.display(),
                    main.build_id
                ));
                id.clone_from(&main.build_id);
                continue;
            }
            return Err(Error::invalid(format!(
                "{} has build ID {id}, which no mapping of the profile has (its main binary {} \
                 has build ID {}): a binary of another build",
                path.display(),
                main.file,
                if main.build_id.is_empty() {
                    "(none)"
                } else {
                    &main.build_id
                },
            )));
        }
    }

    let dirs: Vec<&Path> = sources
        .debug_dirs
        .iter()
        .map(PathBuf::as_path)
        .chain(std::iter::once(Path::new(DEBUG_DIR)))
        .collect();
    let mut namer = Namer::default();
    let mut named: HashMap<u64, Vec<Frame>> = HashMap::new();
    let mut main_symbols = None;
    let mut indices: Vec<usize> = by_mapping.keys().copied().collect();
    indices.sort_unstable();
    for i in indices {
        let m = &profile.mappings[i];
        let addrs = &by_mapping[&i];
        let Some(found) = find(&m.build_id, &m.file, &given, &dirs, fetch) else {
            out.warnings.push(format!(
                "no file for {} (build ID {}): its {} addresses stay unnamed",
                m.file,
                if m.build_id.is_empty() {
                    "none"
                } else {
                    &m.build_id
                },
                addrs.len()
            ));
            continue;
        };
        if i == 0 {
            main_symbols = Some(found.symbols.clone());
        }
        let symtab = FileSymbols(&found.symbols);
        let before = named.len();
        for &a in addrs {
            let Some(probe) = found.vaddr(a - m.start + m.offset) else {
                continue;
            };
            let Ok(probe_usize) = usize::try_from(probe) else {
                continue;
            };
            // The naming rules take return addresses: the call is the byte before.
            let mut frames = resolve_with(&mut namer, &symtab, probe_usize + 1, |cb| {
                found.image.frames(probe, cb);
            });
            if frames.iter().all(Frame::is_raw) {
                continue;
            }
            for f in &mut frames {
                f.address = a;
            }
            named.insert(a, frames);
        }
        if named.len() == before {
            out.warnings.push(format!(
                "{} names none of the {} addresses of {} (build ID {}, first {:#x}): no \
                 symbol or debug info in it covers them",
                found.symbols.display(),
                addrs.len(),
                m.file,
                m.build_id,
                addrs.iter().min().copied().unwrap_or_default(),
            ));
        }
    }
    out.named = named.len();

    let drop_machinery = profile.comment_value(RAW_STACKS_COMMENT) == Some(RAW_DROP_TOP_MACHINERY);
    for s in &mut profile.samples {
        if !s.stack.iter().any(Frame::is_raw) {
            continue;
        }
        let mut stack = Vec::with_capacity(s.stack.len());
        for f in s.stack.drain(..) {
            match named.get(&f.address).filter(|_| f.is_raw()) {
                Some(frames) => stack.extend(frames.iter().cloned()),
                None => stack.push(f),
            }
        }
        s.stack = if drop_machinery {
            drop_top_machinery(stack)
        } else {
            stack
        };
    }
    if out.named == out.addresses && unmapped == 0 {
        profile
            .comments
            .retain(|c| !c.starts_with(&format!("{RAW_STACKS_COMMENT}=")));
    }
    if let Some(file) = main_symbols {
        record_app_crates(profile, &file);
    }
    Ok(out)
}

/// The given binaries with their build IDs; an error for one that cannot be read or has none.
fn given_binaries(sources: &Sources) -> Result<Vec<(PathBuf, String)>> {
    sources
        .binaries
        .iter()
        .map(|p| match build_id(p)? {
            Some(id) => Ok((p.clone(), id)),
            None => Err(Error::invalid(format!(
                "{} has no GNU build ID to match the profile's mappings against (link with \
                 --build-id, the default of Rust's toolchains on Linux)",
                p.display()
            ))),
        })
        .collect()
}

/// The file for the image of build ID `id` (mapped from `file` in the profiled process): a
/// given binary or debug file with that ID, the debug trees' file for it, the file at the
/// mapping's own path if it has that ID (symbolizing on the profiled host), or what `fetch`
/// finds.
fn find(
    id: &str,
    file: &str,
    given: &[(PathBuf, String)],
    dirs: &[&Path],
    fetch: &mut dyn FnMut(&str) -> Fetched,
) -> Option<Found> {
    if id.is_empty() {
        return None;
    }
    let from_dirs = || {
        dirs.iter()
            .filter_map(|d| build_id_path(d, id))
            .find(|p| p.is_file())
    };
    let local = Path::new(file);
    let own = (local.is_file() && build_id(local).ok().flatten().as_deref() == Some(id))
        .then(|| local.to_path_buf());
    let given = given.iter().find(|(_, g)| g == id).map(|(p, _)| p.clone());
    let mut exe = given.or(own);
    let mut debug = from_dirs();
    // Asked for only what is still missing: the image, or the debug info a stripped image
    // lacks.
    if exe.is_none() || (debug.is_none() && !exe.as_deref().is_some_and(has_dwarf)) {
        let f = fetch(id);
        exe = exe.or(f.executable);
        debug = debug.or(f.debug);
    }
    let exe = exe.or_else(|| debug.clone())?;
    let dir_refs: Vec<&Path> = dirs.to_vec();
    let image = Image::load_with(&exe, debug.as_deref(), &dir_refs);
    let symbols = image.symbol_file().to_path_buf();
    Some(Found {
        segments: segments(&exe)?,
        image,
        symbols,
    })
}

/// Adds the `app_crates=` comment the service adds when it names frames itself (the crate
/// whose `main` the main binary's symbol table has, read from `symbols`), if the profile has
/// none.
fn record_app_crates(profile: &mut Profile, symbols: &Path) {
    let key = crate::profile::sites::APP_CRATES_COMMENT;
    if profile.comment_value(key).is_some() {
        return;
    }
    let crates = super::symtab::with_table(symbols, |t| {
        t.map(super::symtab::Table::main_crates).unwrap_or_default()
    });
    if !crates.is_empty() {
        profile.comments.push(format!("{key}={}", crates.join(",")));
    }
}
