//! One direction of imports in diag-core: every `crate::...` path (and every `super::` chain
//! that climbs to the crate root) in `src/**/*.rs` must name a top-level module on a lower
//! floor than the file's own, in the order written once, in the comment at the top of
//! `src/lib.rs` (read from there). Submodules of one top-level module use each other freely.
//! A plain text scan: comments and string literals are skipped, `use crate::{a, b::c}` groups
//! are read, and names the crate root re-exports (`crate::IgnoreAllocs`) count as the module
//! they come from.

use std::collections::HashMap;
use std::path::Path;

/// Imports against the direction that are allowed anyway: (importing module, imported
/// module, why). Empty: keep it so.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

#[test]
fn imports_go_down_the_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let checker = Checker::new(&lib);
    assert!(
        checker.floors >= 10,
        "read {} floors from the comment in src/lib.rs",
        checker.floors
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under {src:?}",
        files.len()
    );
    let mut problems = Vec::new();
    let mut modules_seen = std::collections::BTreeSet::new();
    let mut paths_read = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let Some(file) = SourceFile::from_path(rel) else {
            continue; // lib.rs: the root may name anything.
        };
        modules_seen.insert(file.module.clone());
        let text = std::fs::read_to_string(path).unwrap();
        paths_read += root_paths(&strip(&text), file.depth).len();
        problems.extend(checker.check(&file, &text));
    }
    // The scan itself works: the crate has hundreds of such paths.
    assert!(paths_read > 200, "read only {paths_read} paths");
    for m in &modules_seen {
        if checker.floor(m).is_none() {
            problems.push(format!(
                "module `{m}` is on no floor: add it to the floors in src/lib.rs"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the direction of src/lib.rs:\n{}",
        problems.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
}

/// A source file: its top-level module and how deep its module sits under the crate root.
struct SourceFile {
    name: String,
    module: String,
    /// `heap/alloc.rs` and `heap/mod.rs`'s children are 2 deep, `builder.rs` and `heap/mod.rs`
    /// are 1 deep.
    depth: usize,
}

impl SourceFile {
    /// `None` for `lib.rs`.
    fn from_path(rel: &Path) -> Option<Self> {
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts == ["lib.rs"] {
            return None;
        }
        let module = parts[0].trim_end_matches(".rs").to_owned();
        let last = parts.last().unwrap();
        let depth = if last == "mod.rs" {
            parts.len() - 1
        } else {
            parts.len()
        };
        Some(Self {
            name: rel.display().to_string(),
            module,
            depth,
        })
    }
}

struct Checker {
    /// How many floors.
    floors: usize,
    /// The floor of each top-level module (0: the lowest).
    floor: HashMap<String, usize>,
    /// Names the crate root re-exports, and the module each comes from.
    reexports: HashMap<String, String>,
}

impl Checker {
    /// The floors and root re-exports of `lib`, the text of `lib.rs`.
    fn new(lib: &str) -> Self {
        let floors = floors(lib);
        let floor = floors
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.iter().map(move |m| (m.clone(), i)))
            .collect();
        let mut reexports = HashMap::new();
        let code = strip(lib);
        let mut rest = code.as_str();
        while let Some(at) = rest.find("pub use ") {
            rest = &rest[at + "pub use ".len()..];
            let end = rest.find(';').unwrap_or(rest.len());
            let (module, items) = rest[..end].split_once("::").unwrap_or((&rest[..end], ""));
            for name in idents(items) {
                reexports.insert(name.to_owned(), module.trim().to_owned());
            }
            rest = &rest[end..];
        }
        Self {
            floors: floors.len(),
            floor,
            reexports,
        }
    }

    fn floor(&self, module: &str) -> Option<usize> {
        self.floor.get(module).copied()
    }

    /// The module that `crate::<name>` belongs to.
    fn module_of<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if self.floor.contains_key(name) {
            Some(name)
        } else {
            self.reexports.get(name).map(String::as_str)
        }
    }

    /// One line per import of `text` (the contents of `file`) against the direction.
    fn check(&self, file: &SourceFile, text: &str) -> Vec<String> {
        let code = strip(text);
        let mut out = Vec::new();
        let own = self.floor(&file.module);
        for (line, name, via_crate) in root_paths(&code, file.depth) {
            let Some(module) = self.module_of(&name) else {
                // A `super::` chain may have stopped short of the root (inside an inline
                // `mod tests`); a `crate::` path may not.
                if via_crate {
                    out.push(format!(
                        "{}:{line}: `crate::{name}` is neither a module nor a root re-export",
                        file.name
                    ));
                }
                continue;
            };
            if module == file.module {
                continue;
            }
            let (Some(own), Some(theirs)) = (own, self.floor(module)) else {
                continue; // reported once as "on no floor"
            };
            if theirs < own {
                continue;
            }
            if EXCEPTIONS
                .iter()
                .any(|(a, b, _)| *a == file.module && *b == module)
            {
                continue;
            }
            let how = if theirs == own {
                "on its own floor"
            } else {
                "on a higher floor"
            };
            out.push(format!(
                "{}:{line}: `{}` imports `{module}` ({how}) through `{name}`",
                file.name, file.module
            ));
        }
        out
    }
}

/// The floors listed in `lib`'s comment after `Floors, lowest first:`, one a line:
/// `//   a, b, c      what they are`, a list ending in a comma going on at the next line, and
/// lines indented further continuing the description.
fn floors(lib: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut continued = false;
    let lines = lib
        .lines()
        .skip_while(|l| !l.contains("Floors, lowest first:"));
    for line in lines.skip(1) {
        let Some(rest) = line.trim_start().strip_prefix("//") else {
            break;
        };
        if rest.trim().is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        if !rest.starts_with("   ") || rest[3..].starts_with(' ') {
            continue; // a description's next line
        }
        let list = rest.trim_start().split("  ").next().unwrap_or("").trim();
        let names = list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        match out.last_mut() {
            Some(last) if continued => last.extend(names),
            _ => out.push(names.collect()),
        }
        continued = list.ends_with(',');
    }
    out
}

/// `text` with comments and the contents of string and char literals blanked out (newlines
/// kept, so line numbers stay right).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let blank = |s: &[u8], out: &mut String| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
            blank(&b[i..end], &mut out);
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&b[i..j.min(b.len())], &mut out);
            i = j;
        } else if c == b'r' && !prev_ident && matches!(b.get(i + 1), Some(b'"' | b'#')) {
            // Raw string r"..." or r#"..."#.
            let hashes = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let end = text[body..]
                .find(&close)
                .map_or(b.len(), |n| body + n + close.len());
            blank(&b[i..end], &mut out);
            i = end;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&b[i..end], &mut out);
            i = end;
        } else if c == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            // A char literal ('x', '\n', '\''), not a lifetime.
            let mut j = i + 1;
            while j < b.len() && b[j] != b'\'' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&b[i..end], &mut out);
            i = end;
        } else {
            // Copy one whole UTF-8 character.
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

/// The identifiers in `s` (`{alloc::DiagAlloc, thread::IgnoreAllocs}` gives all four).
fn idents(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()))
        .filter(|w| !matches!(*w, "self" | "as" | "crate" | "super"))
}

/// Every top-level name that `code` (comments and strings stripped) reaches from the crate
/// root, with its line and whether it came through `crate::`: `crate::x`, each first name of
/// a `crate::{x, y::z}` group, and what follows a `super::` chain long enough to climb out of
/// a file `depth` modules deep.
fn root_paths(code: &str, depth: usize) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b'$');
        let rest = &code[i..];
        let via_crate = starts_word && rest.starts_with("crate::");
        let after = if via_crate {
            Some(i + "crate::".len())
        } else if starts_word && rest.starts_with("super::") {
            // Count the chain; it reaches the root if it climbs at least `depth` levels
            // (an inline `mod tests` adds a level, which can only make this miss, not err).
            let mut j = i;
            let mut n = 0;
            while code[j..].starts_with("super::") {
                n += 1;
                j += "super::".len();
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
            }
            if n >= depth && depth > 0 {
                Some(j)
            } else {
                i = j;
                continue;
            }
        } else {
            None
        };
        let Some(mut j) = after else {
            i += 1;
            continue;
        };
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) == Some(&b'{') {
            // A group: the first name of each comma-separated item at depth 1.
            let mut level = 0;
            let mut k = j;
            let mut item_start = j + 1;
            while k < b.len() {
                match b[k] {
                    b'{' => level += 1,
                    b'}' | b',' if level == 1 => {
                        if let Some(name) = idents(&code[item_start..k]).next() {
                            out.push((line_of(item_start), name.to_owned(), via_crate));
                        }
                        item_start = k + 1;
                        if b[k] == b'}' {
                            break;
                        }
                    }
                    b'}' => level -= 1,
                    _ => {}
                }
                k += 1;
            }
            i = k + 1;
        } else {
            let end = code[j..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(code.len(), |n| j + n);
            if end > j {
                out.push((line_of(j), code[j..end].to_owned(), via_crate));
            }
            i = end.max(i + 1);
        }
    }
    out
}

#[cfg(test)]
mod checker {
    use super::*;

    const LIB: &str = "\
// One direction. Floors, lowest first:
//
//   error, padded, wire,      leaves
//   defaults, names, env        more of them
//   alloc_state               the allocator's state,
//                               and IgnoreAllocs
//   profile                   profiles
//   stack                     stacks
//   tasks                     tasks
//   heap                      heap
//   cpu                       cpu
//   metrics                   metrics
//   http, layer, console      the debug routes
//   handle, fuzzing           Diag
//   builder                   Builder
//   init                      init()

mod heap;
pub use heap::{alloc::DiagAlloc, IgnoreAllocs};
pub use builder::Builder;
";

    fn check(path: &str, text: &str) -> Vec<String> {
        let file = SourceFile::from_path(Path::new(path)).unwrap();
        Checker::new(LIB).check(&file, text)
    }

    #[test]
    fn the_floors_are_read_from_the_comment() {
        let floors = floors(LIB);
        assert_eq!(floors.len(), 12, "{floors:?}");
        assert_eq!(
            floors[0],
            ["error", "padded", "wire", "defaults", "names", "env"]
        );
        assert_eq!(floors[1], ["alloc_state"]);
        assert_eq!(floors[8], ["http", "layer", "console"]);
        assert_eq!(floors[11], ["init"]);
    }

    #[test]
    fn an_upward_import_is_flagged() {
        let found = check("stack/unwind/mod.rs", "use crate::heap::MAX_FRAMES;\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("stack/unwind/mod.rs:1"), "{found:?}");
        assert!(found[0].contains("`stack` imports `heap`"), "{found:?}");
    }

    #[test]
    fn downward_and_own_module_imports_pass() {
        let text = "use crate::profile::Frame;\nuse crate::stack::unwind;\n\
                    fn f() { crate::heap::stats(); crate::alloc_state::IgnoreAllocs::new(); }\n";
        assert_eq!(check("heap/alloc.rs", text), Vec::<String>::new());
    }

    #[test]
    fn groups_paths_in_code_and_root_reexports_are_read() {
        let text = "use crate::{profile::Frame, metrics::{self, render}};\n\
                    fn f() {\n    let _ = crate::Builder::default();\n}\n";
        let found = check("tasks/mod.rs", text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("tasks/mod.rs:1") && found[0].contains("`metrics`"));
        assert!(found[1].contains("tasks/mod.rs:3") && found[1].contains("`builder`"));
    }

    #[test]
    fn the_same_floor_is_not_below() {
        let found = check("http/mod.rs", "use crate::layer::DiagLayer;\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("on its own floor"), "{found:?}");
    }

    #[test]
    fn super_chains_that_reach_the_root_count() {
        let found = check("heap/alloc.rs", "use super::super::builder::Builder;\n");
        assert_eq!(found.len(), 1, "{found:?}");
        // Within the module: fine.
        assert!(check("heap/alloc.rs", "use super::stacks;\n").is_empty());
        assert!(check("builder.rs", "mod tests { use super::*; }\n").is_empty());
    }

    #[test]
    fn comments_strings_and_other_crates_are_not_imports() {
        let text = "// use crate::builder::Builder;\n/// [`Builder`](crate::Builder)\n\
                    /* crate::init */ const S: &str = \"crate::builder\";\n\
                    const R: &str = r#\"crate::http\"#;\nconst C: char = '\"';\n\
                    fn f() { other_crate::builder(); $crate::init(); }\n";
        assert_eq!(check("profile/mod.rs", text), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_root_name_is_flagged() {
        let found = check("heap/alloc.rs", "use crate::nowhere::X;\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("neither a module nor a root re-export"));
    }
}
