//! Flamegraph SVGs of a profile (via inferno, with its zoom and search), and readable
//! differential flamegraphs of growth between two ([`FlameTree::write_svg`]). Both collapse
//! runtime and dependency frames by default ([`FlameOptions::collapse`]).

use std::collections::BTreeMap;
use std::io::Write;

use inferno::flamegraph::{self as inferno_fg, Direction};

use super::flamesvg::SvgOptions;
use super::flametree::FlameTree;
use super::folded::fold;
use super::load::select_sample;
use super::model::{Profile, ValueType};
use super::sites::SiteRules;
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
    /// Collapse each run of frames that are not the application's (std, the allocator,
    /// tokio, hyper, ... as [`SiteRules`] tells them) into one frame named after its crates
    /// (see [`FlameTree`]), so the application's frames stand out. On by default.
    pub collapse: bool,
    /// Crates taken as the application's besides those the profiles show or record
    /// (`--app-crates`), for [`FlameOptions::collapse`].
    pub app_crates: Vec<String>,
    /// Differential flamegraphs: outline the path to the frames of this function (e.g. the
    /// top leak site).
    pub highlight: Option<String>,
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
            collapse: true,
            app_crates: Vec::new(),
            highlight: None,
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
    let stacks = if opts.collapse {
        let rules = SiteRules::for_profile(profile).with_app_crates(&opts.app_crates);
        FlameTree::build(None, (profile, index), Some(&rules), !opts.full_names).folded()
    } else {
        fold(
            profile,
            |s| s.values.get(index).copied().unwrap_or(0),
            !opts.full_names,
        )
    };
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

/// Renders a readable differential flamegraph of the change from `before` to `after` into
/// `w` ([`FlameTree::write_svg`]): frames as wide as in `after`, coloured by their share of the
/// growth (red grew, blue shrank), runtime and dependency frames collapsed unless
/// [`FlameOptions::collapse`] is off, the path to [`FlameOptions::highlight`] outlined, a
/// legend, and hover text with each frame's before, after and delta.
///
/// Both profiles must have the chosen column (default `inuse_space` if present).
pub fn diff_flamegraph<W: Write>(
    before: &Profile,
    after: &Profile,
    opts: &FlameOptions,
    w: W,
) -> Result<()> {
    let (tree, ty) = diff_tree(before, after, opts)?;
    let count = opts.count_name.clone().unwrap_or_else(|| count_name(&ty));
    let svg = SvgOptions {
        title: opts
            .title
            .clone()
            .unwrap_or_else(|| format!("Growth of {} (red: grew, blue: shrank)", ty.ty)),
        subtitle: Some(format!(
            "frame width: {} in the second snapshot, in {count}; hover a frame for before, after \
             and delta",
            ty.ty
        )),
        unit: ty.unit.clone(),
        differential: true,
        highlight: opts.highlight.clone(),
        min_width: opts.min_width.max(DIFF_MIN_WIDTH),
        ..SvgOptions::default()
    };
    tree.write_svg(&svg, w)
}

/// Frames narrower than this are left out of differential flamegraphs whatever
/// [`FlameOptions::min_width`] says: they cannot be hovered, and they make the SVG large.
const DIFF_MIN_WIDTH: f64 = 0.5;

/// The flame tree of the change from `before` to `after` in the chosen column (see
/// [`diff_flamegraph`]), and that column.
pub fn diff_tree(
    before: &Profile,
    after: &Profile,
    opts: &FlameOptions,
) -> Result<(FlameTree, ValueType)> {
    let ia = select_sample(after, opts.sample_type.as_deref())?;
    let ty = after.sample_types[ia].clone();
    let ib = before.sample_index(&ty.ty).ok_or_else(|| {
        Error::invalid(format!(
            "cannot draw the difference: the first profile has no `{}` column",
            ty.ty
        ))
    })?;
    let rules = opts
        .collapse
        .then(|| SiteRules::for_profiles([before, after]).with_app_crates(&opts.app_crates));
    let tree = FlameTree::build(
        Some((before, ib)),
        (after, ia),
        rules.as_ref(),
        !opts.full_names,
    );
    if tree.root().after <= 0 {
        return Err(Error::invalid(format!(
            "nothing to draw: no stack of the second profile has a positive `{}` value",
            ty.ty
        )));
    }
    Ok((tree, ty))
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
pub(crate) fn count_name(ty: &ValueType) -> String {
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
