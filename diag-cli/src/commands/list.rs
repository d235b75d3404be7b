//! `diag list REGEX FILE`: the source of the functions matching REGEX, each line with its flat
//! and cumulative value, like `go tool pprof -list`. Where in a hot function the time goes, or
//! which line of an allocation site holds the memory.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use diag_core::profile::{self, Top, TopEntry, TopOptions};

use crate::commands::Flat;
use crate::commands::top::attribution;
use crate::filter::Filter;
use crate::input::{Input, less_base, read_profile};
use crate::units;

/// What `diag list` is asked to do.
pub(crate) struct Options {
    /// Functions to list: matched anywhere in their names.
    pub(crate) regex: regex_lite::Regex,
    /// The profile.
    pub(crate) file: String,
    /// Which column, and what counts as flat.
    pub(crate) flat: Flat,
    /// Source lines shown around each line with a value.
    pub(crate) context: usize,
    /// Where to look for source files recorded with another machine's paths; default: here.
    pub(crate) source_path: Vec<PathBuf>,
    /// Functions listed at most, heaviest first (0 = all).
    pub(crate) top: usize,
    /// An earlier profile subtracted first.
    pub(crate) base: Option<String>,
    /// `--focus` and friends.
    pub(crate) filter: Filter,
}

/// Runs `diag list`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    if let Input::Url(url) = Input::parse(&args.file) {
        bail!(
            "{url}: diag list reads a saved profile; save one first (`diag snapshot URL`, or \
             `diag flamegraph URL`, which keeps the raw CPU profile beside the SVG)"
        );
    }
    let mut p = less_base(read_profile(&args.file)?, args.base.as_deref())?;
    args.filter.apply_all([&mut p]);
    let mut opts = TopOptions::default();
    opts.sample_type.clone_from(&args.flat.sample);
    opts.attribution = attribution(&args.flat, &p);
    let by_function = profile::top(&p, &opts).with_context(|| format!("reading {}", args.file))?;
    opts.lines = true;
    let by_line = profile::top(&p, &opts).with_context(|| format!("reading {}", args.file))?;

    let mut functions: Vec<&TopEntry> = by_function
        .entries
        .iter()
        .filter(|e| args.regex.is_match(&e.function))
        .collect();
    if functions.is_empty() {
        bail!(
            "no function matching '{}' holds any {} in {}",
            args.regex.as_str(),
            by_function.sample_type.ty,
            args.file
        );
    }
    functions.sort_by(|a, b| b.cum.cmp(&a.cum).then(b.flat.cmp(&a.flat)));
    let shown = if args.top == 0 {
        functions.len()
    } else {
        args.top.min(functions.len())
    };
    let dirs = if args.source_path.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.source_path.clone()
    };

    let mut out = BufWriter::new(io::stdout().lock());
    for f in &functions[..shown] {
        write_function(&mut out, f, &by_function, &by_line, &dirs, args.context)?;
    }
    if shown < functions.len() {
        writeln!(
            out,
            "({} more functions match; --top 0 lists them all)",
            functions.len() - shown
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One function: a header with its totals, then each of its source files with the lines
/// that hold value, `context` lines around them.
fn write_function(
    w: &mut impl Write,
    f: &TopEntry,
    by_function: &Top,
    by_line: &Top,
    dirs: &[PathBuf],
    context: usize,
) -> io::Result<()> {
    let unit = by_function.sample_type.unit.as_str();
    // Its lines, by file (frames without a file under None), each line once.
    let mut files: BTreeMap<Option<&str>, BTreeMap<u32, (i64, i64)>> = BTreeMap::new();
    for e in by_line.entries.iter().filter(|e| e.function == f.function) {
        files
            .entry(e.file.as_deref())
            .or_default()
            .insert(e.line, (e.flat, e.cum));
    }
    let located: Vec<&str> = files.keys().filter_map(|k| *k).collect();
    writeln!(
        w,
        "ROUTINE ======================== {}{}",
        f.function,
        if located.is_empty() {
            String::new()
        } else {
            format!(" in {}", located.join(", "))
        }
    )?;
    writeln!(
        w,
        "{:>10} {:>10} (flat, cum) {} of {} total",
        units::value(f.flat, unit),
        units::value(f.cum, unit),
        units::percent(f.cum_percent),
        units::value(by_function.total, unit),
    )?;
    for (file, lines) in &files {
        let cell = |v: i64| {
            if v == 0 {
                ".".to_owned()
            } else {
                units::value(v, unit)
            }
        };
        let Some(file) = file else {
            writeln!(w, "{:>10} {:>10}  (no line information)", ".", ".")?;
            for (flat, cum) in lines.values() {
                writeln!(w, "{:>10} {:>10}", cell(*flat), cell(*cum))?;
            }
            continue;
        };
        let source = find_source(file, dirs);
        if source.is_none() {
            writeln!(
                w,
                "{:>10} {:>10}  (source of {file} not found; --source-path DIR looks there)",
                ".", "."
            )?;
        }
        let text = |n: u32| -> &str {
            source
                .as_ref()
                .and_then(|(_, text)| text.get((n as usize).checked_sub(1)?))
                .map_or("", String::as_str)
        };
        let shown = shown_lines(
            lines.keys().copied(),
            context,
            source.as_ref().map(|s| s.1.len()),
        );
        let mut last = None;
        for n in shown {
            if last.is_some_and(|l| n > l + 1) {
                writeln!(w, "{:>10} {:>10}  ...", "", "")?;
            }
            last = Some(n);
            let (flat, cum) = lines.get(&n).copied().unwrap_or((0, 0));
            let line = if n == 0 {
                "?".to_owned()
            } else {
                n.to_string()
            };
            writeln!(
                w,
                "{:>10} {:>10} {line:>6}  {}",
                cell(flat),
                cell(cum),
                text(n).trim_end()
            )?;
        }
    }
    writeln!(w)
}

/// The lines to print: those with value, and up to `context` lines either side of each
/// (within the file's `len` lines when its source was found; none when it was not).
fn shown_lines(valued: impl Iterator<Item = u32>, context: usize, len: Option<usize>) -> Vec<u32> {
    let mut shown = std::collections::BTreeSet::new();
    for n in valued {
        shown.insert(n);
        if let (Some(len), true) = (len, n > 0) {
            let lo = n.saturating_sub(context as u32).max(1);
            let hi = (n as usize + context).min(len) as u32;
            shown.extend(lo..=hi);
        }
    }
    shown.into_iter().collect()
}

/// Finds a frame's source file: the path as recorded, else under each of `dirs` with the
/// longest tail of the path that exists there (`/build/ci/src/json.rs` is found as
/// `./src/json.rs`: binaries are often built elsewhere). Returns the path and its lines.
fn find_source(file: &str, dirs: &[PathBuf]) -> Option<(PathBuf, Vec<String>)> {
    let path = Path::new(file);
    let parts: Vec<_> = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    // A bare file name is only tried when the path is one: `json.rs` alone would find any.
    let shortest = parts.len().min(2);
    let mut candidates = vec![path.to_path_buf()];
    for dir in dirs {
        for start in 0..=parts.len() - shortest {
            candidates.push(dir.join(parts[start..].iter().collect::<PathBuf>()));
        }
    }
    candidates.into_iter().find_map(|c| {
        let text = std::fs::read_to_string(&c).ok()?;
        Some((c, text.lines().map(str::to_owned).collect()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_lines_take_context_within_the_file() {
        let v = |lines: &[u32], ctx, len| shown_lines(lines.iter().copied(), ctx, len);
        assert_eq!(v(&[10], 2, Some(100)), [8, 9, 10, 11, 12]);
        assert_eq!(v(&[2, 99], 2, Some(100)), [1, 2, 3, 4, 97, 98, 99, 100]);
        assert_eq!(v(&[10, 12], 1, Some(100)), [9, 10, 11, 12, 13]);
        // No source: only the lines with value; line 0 (unknown) is kept as it is.
        assert_eq!(v(&[10, 0], 3, None), [0, 10]);
        assert_eq!(v(&[0], 3, Some(5)), [0]);
    }

    #[test]
    fn sources_are_found_by_the_longest_existing_tail() {
        let dir = std::env::temp_dir().join(format!("diag-list-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/json.rs"), "fn parse() {\n    loop {}\n}\n").unwrap();
        let dirs = [dir.clone()];
        let (found, lines) = find_source("/build/ci/src/json.rs", &dirs).unwrap();
        assert_eq!(found, dir.join("src/json.rs"));
        assert_eq!(lines[1], "    loop {}");
        let (found, _) = find_source("src/json.rs", &dirs).unwrap();
        assert_eq!(found, dir.join("src/json.rs"));
        assert!(find_source("/build/ci/src/other.rs", &dirs).is_none());
        // The file name alone is not enough to match.
        assert!(find_source("/build/ci/lib/json.rs", &dirs).is_none());
        std::fs::remove_dir_all(dir).ok();
    }
}
