//! Folded stacks: `outer;mid;inner value` lines, the input format of flamegraph tools
//! (Brendan Gregg's `flamegraph.pl`, inferno).

use std::collections::BTreeMap;
use std::io::Write;

use super::load::select_sample;
use super::model::{Profile, Sample};
use crate::error::{Error, ErrorKind, Result};

/// The frame name used for a sample with an empty stack.
const EMPTY_STACK: &str = "[unknown]";

/// Aggregated folded stacks of one column: stack (outermost first, `;`-separated) to value.
/// Stacks whose total is zero or negative are left out (a flamegraph cannot draw them).
///
/// Frame names have any `;` replaced by `:` (as in `[u8; 32]`), since `;` separates frames;
/// surrounding whitespace is trimmed (a blank name is `[unknown]`), and a stack that would end
/// in a number after a space (`f 12`) has that space made `_`, so no reader takes it for a count.
pub fn folded_map(profile: &Profile, sample_type: Option<&str>) -> Result<BTreeMap<String, i64>> {
    let index = select_sample(profile, sample_type)?;
    Ok(fold(
        profile,
        |s| s.values.get(index).copied().unwrap_or(0),
        false,
    ))
}

/// Folded lines (`outer;mid;inner value`), sorted by stack, for one column.
pub fn folded(profile: &Profile, sample_type: Option<&str>) -> Result<Vec<String>> {
    Ok(folded_map(profile, sample_type)?
        .into_iter()
        .map(|(stack, value)| format!("{stack} {value}"))
        .collect())
}

/// Writes [`folded`] lines to `w`, one per line.
pub fn write_folded<W: Write>(
    profile: &Profile,
    sample_type: Option<&str>,
    mut w: W,
) -> Result<()> {
    for line in folded(profile, sample_type)? {
        writeln!(w, "{line}")
            .map_err(|e| Error::with_source(ErrorKind::Io, "writing folded stacks", e))?;
    }
    Ok(())
}

/// Folds `profile` with `value` giving each sample's weight; frames named by their
/// [`short_name`](super::sites::short_name) if `short`.
pub(crate) fn fold(
    profile: &Profile,
    value: impl Fn(&Sample) -> i64,
    short: bool,
) -> BTreeMap<String, i64> {
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    let mut key = String::new();
    for sample in &profile.samples {
        let v = value(sample);
        if v == 0 {
            continue;
        }
        key.clear();
        stack_key(sample, short, &mut key);
        match stacks.get_mut(key.as_str()) {
            Some(sum) => *sum = sum.saturating_add(v),
            None => {
                stacks.insert(key.clone(), v);
            }
        }
    }
    stacks.retain(|_, v| *v > 0);
    stacks
}

fn stack_key(sample: &Sample, short: bool, key: &mut String) {
    if sample.stack.is_empty() {
        key.push_str(EMPTY_STACK);
        return;
    }
    for (i, frame) in sample.stack.iter().rev().enumerate() {
        if i > 0 {
            key.push(';');
        }
        let shortened;
        let name = if short {
            shortened = super::sites::short_name(frame.function.trim());
            shortened.as_str()
        } else {
            frame.function.trim()
        };
        let name = if name.is_empty() { "[unknown]" } else { name };
        if name.contains([';', '\n', '\r']) {
            key.extend(name.chars().map(|c| match c {
                ';' => ':',
                '\n' | '\r' => ' ',
                c => c,
            }));
        } else {
            key.push_str(name);
        }
    }
    // A stack ending in ` 12` or ` 1.5` would be read back as a second count column (the
    // differential format) by inferno and flamegraph.pl: glue that token to its frame.
    if let Some(space) = key.rfind(' ')
        && looks_like_count(&key[space + 1..])
    {
        key.replace_range(space..=space, "_");
    }
}

/// True if inferno would parse `token` as a sample count: digits with at most one `.`.
pub(crate) fn looks_like_count(token: &str) -> bool {
    !token.is_empty()
        && token.bytes().filter(|&b| b == b'.').count() <= 1
        && token.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testutil::{cpu_profile, heap_profile};

    #[test]
    fn outermost_first_and_aggregated() {
        let p = heap_profile(&[
            (&["myapp::leaf", "myapp::mid", "myapp::main"], 100),
            (&["myapp::leaf", "myapp::mid", "myapp::main"], 50),
            (&["<[u8; 32] as myapp::T>::f", "myapp::main"], 10),
            (&[], 5),
        ]);
        let lines = folded(&p, None).unwrap();
        assert_eq!(
            lines,
            [
                "[unknown] 5",
                "myapp::main;<[u8: 32] as myapp::T>::f 10",
                "myapp::main;myapp::mid;myapp::leaf 150",
            ]
        );
        let objects = folded(&p, Some("inuse_objects")).unwrap();
        assert_eq!(objects[2], "myapp::main;myapp::mid;myapp::leaf 3");
        let mut out = Vec::new();
        write_folded(&p, None, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), lines.join("\n") + "\n");
    }

    #[test]
    fn names_are_never_read_back_as_counts_or_blanks() {
        // Found by the profile_ops fuzz target: a blank frame name gave a line inferno ignored
        // ("No stack counts found"), and a name ending in ` 12` was read as a second count.
        let p = heap_profile(&[
            (&[" ", "myapp::main"], 10),
            (&["\tmyapp::f 12\r", "myapp::main"], 20),
            (&["  "], 30),
        ]);
        assert_eq!(
            folded(&p, None).unwrap(),
            [
                "[unknown] 30",
                "myapp::main;[unknown] 10",
                "myapp::main;myapp::f_12 20"
            ]
        );
        let blank = heap_profile(&[(&["\t"], 30)]);
        let mut svg = Vec::new();
        crate::profile::flamegraph(&blank, &Default::default(), &mut svg).unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("[unknown]"));
    }

    #[test]
    fn zero_and_negative_stacks_are_dropped() {
        let p = cpu_profile(&[(&["a"], 0), (&["b"], 2)]);
        assert_eq!(folded(&p, Some("samples")).unwrap(), ["b 2"]);
        assert!(folded(&p, Some("nope")).is_err());
    }
}
