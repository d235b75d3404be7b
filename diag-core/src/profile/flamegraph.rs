//! Flamegraph SVGs of a profile, and differential flamegraphs of growth between two, via
//! inferno.

use std::collections::BTreeMap;
use std::io::Write;

use inferno::flamegraph::{self as inferno_fg, Direction};

use super::folded::fold;
use super::load::select_sample;
use super::model::{Profile, ValueType};
use crate::error::{Error, ErrorKind, Result};

/// The default [`FlameOptions::min_width`], in pixels (inferno's).
pub const DEFAULT_MIN_WIDTH: f64 = 0.1;

/// The largest sum of stack values handed to inferno. It adds counts up in `usize` and
/// multiplies differential deltas by 150 in `isize` (0.12's `color_scale`), which overflows (a
/// panic in debug builds, garbage colors in release) for values near `i64::MAX`; larger
/// profiles are scaled down to this, which changes no width visibly.
const MAX_INFERNO_TOTAL: u64 = 1 << 52;

/// Options for [`flamegraph`] and [`diff_flamegraph`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FlameOptions {
    /// The title; a default naming the column when `None`.
    pub title: Option<String>,
    /// Draw an icicle graph with stacks reversed: the innermost frames (allocation sites,
    /// on-CPU functions) at the top, their callers below.
    pub reverse: bool,
    /// Frames narrower than this many pixels are left out.
    pub min_width: f64,
    /// The column to draw; the profile's default when `None`.
    pub sample_type: Option<String>,
    /// What one unit of width counts (`bytes`, `objects`, `samples`); from the column when
    /// `None`.
    pub count_name: Option<String>,
    /// Label frames with their full names; by default they show their
    /// [`short_name`](super::sites::short_name) (generic arguments elided), as pprof does.
    pub full_names: bool,
}

impl Default for FlameOptions {
    fn default() -> Self {
        Self {
            title: None,
            reverse: false,
            min_width: DEFAULT_MIN_WIDTH,
            sample_type: None,
            count_name: None,
            full_names: false,
        }
    }
}

/// Renders `profile` as a flamegraph SVG into `w`.
///
/// A profile with nothing to draw in the chosen column is an
/// [`ErrorKind::InvalidInput`] error, and nothing is written.
pub fn flamegraph<W: Write>(profile: &Profile, opts: &FlameOptions, w: W) -> Result<()> {
    let index = select_sample(profile, opts.sample_type.as_deref())?;
    let ty = &profile.sample_types[index];
    let stacks = fold(
        profile,
        |s| s.values.get(index).copied().unwrap_or(0),
        !opts.full_names,
    );
    if stacks.is_empty() {
        return Err(Error::invalid(format!(
            "nothing to draw: no stack has a positive `{}` value",
            ty.ty
        )));
    }
    let mut stacks = stacks;
    let divisor = scale_down(&mut [&mut stacks]);
    let lines: Vec<String> = stacks.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let title = opts
        .title
        .clone()
        .unwrap_or_else(|| format!("Flame graph ({})", ty.ty));
    render(
        opts,
        ty,
        divisor,
        title,
        None,
        lines.iter().map(String::as_str),
        w,
    )
}

/// Divides every value of `maps` by one common divisor so that their sum is at most
/// [`MAX_INFERNO_TOTAL`], dropping stacks that become 0; returns the divisor (1: unchanged).
fn scale_down(maps: &mut [&mut BTreeMap<String, i64>]) -> u64 {
    let total: u128 = maps
        .iter()
        .flat_map(|m| m.values())
        .map(|&v| u128::from(v.unsigned_abs()))
        .sum();
    if total <= u128::from(MAX_INFERNO_TOTAL) {
        return 1;
    }
    let divisor = total.div_ceil(u128::from(MAX_INFERNO_TOTAL));
    let divisor = i64::try_from(divisor).unwrap_or(i64::MAX);
    for map in maps.iter_mut() {
        map.values_mut().for_each(|v| *v /= divisor);
        map.retain(|_, v| *v > 0);
    }
    divisor.unsigned_abs()
}

/// Renders a differential flamegraph of the change from `before` to `after` into `w`: frames
/// are as wide as in `after` and colored by change (red grew, blue shrank).
///
/// Both profiles must have the chosen column (default `inuse_space` if present).
pub fn diff_flamegraph<W: Write>(
    before: &Profile,
    after: &Profile,
    opts: &FlameOptions,
    w: W,
) -> Result<()> {
    let ia = select_sample(after, opts.sample_type.as_deref())?;
    let ty = after.sample_types[ia].clone();
    let ib = before.sample_index(&ty.ty).ok_or_else(|| {
        Error::invalid(format!(
            "cannot draw the difference: the first profile has no `{}` column",
            ty.ty
        ))
    })?;
    let mut before_stacks = fold(
        before,
        |s| s.values.get(ib).copied().unwrap_or(0),
        !opts.full_names,
    );
    let mut after_stacks = fold(
        after,
        |s| s.values.get(ia).copied().unwrap_or(0),
        !opts.full_names,
    );
    let divisor = scale_down(&mut [&mut before_stacks, &mut after_stacks]);
    if after_stacks.is_empty() {
        return Err(Error::invalid(format!(
            "nothing to draw: no stack of the second profile has a positive `{}` value",
            ty.ty
        )));
    }
    let to_text = |stacks: &BTreeMap<String, i64>| {
        let mut text = String::new();
        for (k, v) in stacks {
            text.push_str(&format!("{k} {v}\n"));
        }
        text
    };
    let (before_text, after_text) = (to_text(&before_stacks), to_text(&after_stacks));
    let mut differential = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before_text.as_bytes(),
        after_text.as_bytes(),
        &mut differential,
    )
    .map_err(|e| Error::with_source(ErrorKind::Io, "computing the differential stacks", e))?;
    let differential = String::from_utf8(differential)
        .map_err(|e| Error::with_source(ErrorKind::Io, "differential stacks are not UTF-8", e))?;
    let title = opts
        .title
        .clone()
        .unwrap_or_else(|| format!("Growth of {} (red: grew, blue: shrank)", ty.ty));
    let subtitle = Some("frame width: second snapshot".to_owned());
    render(opts, &ty, divisor, title, subtitle, differential.lines(), w)
}

/// Renders folded `lines` whose values were divided by `divisor`.
fn render<'a, W: Write>(
    opts: &FlameOptions,
    ty: &ValueType,
    divisor: u64,
    title: String,
    subtitle: Option<String>,
    lines: impl IntoIterator<Item = &'a str>,
    w: W,
) -> Result<()> {
    let mut o = inferno_fg::Options::default();
    o.title = title;
    o.subtitle = subtitle;
    o.count_name = opts.count_name.clone().unwrap_or_else(|| count_name(ty));
    if divisor > 1 {
        o.count_name = format!("x{divisor} {}", o.count_name);
    }
    o.min_width = opts.min_width;
    o.hash = true;
    o.deterministic = true;
    if opts.reverse {
        o.reverse_stack_order = true;
        o.direction = Direction::Inverted;
    }
    inferno_fg::from_lines(&mut o, lines, w).map_err(|e| {
        // inferno answers InvalidData when no line leaves a drawable width (e.g. every stack
        // of a differential input is reduced to nothing): the input's fault, not an I/O one.
        if e.kind() == std::io::ErrorKind::InvalidData {
            Error::invalid(format!("nothing to draw: {e}"))
        } else {
            Error::with_source(ErrorKind::Io, "writing the flamegraph", e)
        }
    })
}

/// The default count name for a column: `bytes`, `objects`, `samples`, or its unit.
fn count_name(ty: &ValueType) -> String {
    if ty.unit == "bytes" {
        "bytes".to_owned()
    } else if ty.ty.ends_with("_objects") {
        "objects".to_owned()
    } else if ty.ty == "samples" {
        "samples".to_owned()
    } else {
        ty.unit.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testutil::{cpu_profile, heap_profile};

    fn svg(p: &Profile, opts: &FlameOptions) -> String {
        let mut out = Vec::new();
        flamegraph(p, opts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_heap_and_cpu() {
        let p = heap_profile(&[(&["myapp::leaf", "myapp::main"], 4096)]);
        let s = svg(&p, &FlameOptions::default());
        assert!(s.starts_with("<?xml"), "{}", &s[..100]);
        assert!(s.contains("myapp::leaf"));
        assert!(s.contains("Flame graph (inuse_space)"));
        assert!(s.contains("bytes"));
        let opts = FlameOptions {
            title: Some("T & T".into()),
            reverse: true,
            ..FlameOptions::default()
        };
        assert!(svg(&p, &opts).contains("T &amp; T"));
        let cpu = cpu_profile(&[(&["myapp::spin", "myapp::main"], 7)]);
        assert!(svg(&cpu, &FlameOptions::default()).contains("myapp::spin"));
    }

    #[test]
    fn empty_profile_is_an_error_and_writes_nothing() {
        let p = heap_profile(&[]);
        let mut out = Vec::new();
        let err = flamegraph(&p, &FlameOptions::default(), &mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }

    #[test]
    fn values_near_i64_max_do_not_overflow_inferno() {
        // Found by the profile_ops fuzz target: inferno sums counts in usize and multiplies
        // deltas by 150 in isize, which panicked in debug builds.
        let big = i64::MAX - 1;
        let inuse = |stacks: &[(&str, i64)]| Profile {
            sample_types: vec![ValueType::new("inuse_space", "bytes")],
            samples: stacks
                .iter()
                .map(|&(leaf, v)| crate::profile::Sample {
                    stack: vec![
                        crate::profile::Frame::named(leaf),
                        crate::profile::Frame::named("myapp::main"),
                    ],
                    values: vec![v],
                    labels: Vec::new(),
                })
                .collect(),
            ..Profile::default()
        };
        let before = inuse(&[("myapp::a", 1)]);
        let after = inuse(&[
            ("myapp::a", big),
            ("myapp::b", big),
            ("myapp::c", big),
            ("myapp::tiny", 1),
        ]);
        let s = svg(&after, &FlameOptions::default());
        assert!(s.contains("myapp::c"));
        assert!(!s.contains("myapp::tiny"), "scaled down to 0 and dropped");
        let mut out = Vec::new();
        diff_flamegraph(&before, &after, &FlameOptions::default(), &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("myapp::b"));
        assert!(s.contains(" bytes"), "count name keeps its unit");
    }

    #[test]
    fn differential() {
        let before = heap_profile(&[
            (&["myapp::a", "myapp::main"], 100),
            (&["myapp::b", "myapp::main"], 100),
        ]);
        let after = heap_profile(&[
            (&["myapp::a", "myapp::main"], 900),
            (&["myapp::b", "myapp::main"], 50),
        ]);
        let mut out = Vec::new();
        diff_flamegraph(&before, &after, &FlameOptions::default(), &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("myapp::a"));
        assert!(s.contains("Growth of inuse_space"));
        let cpu = cpu_profile(&[(&["x"], 1)]);
        assert!(diff_flamegraph(&cpu, &after, &FlameOptions::default(), Vec::new()).is_err());
    }
}
