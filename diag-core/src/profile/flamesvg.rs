//! Drawing a [`FlameTree`] as a readable SVG flamegraph: frames coloured by their share of the
//! growth (differential) or by whose code they are (one profile), collapsed plumbing drawn
//! pale, the path of one function outlined, a legend, and hover text that says what each
//! frame held before and after.
//!
//! The SVG needs no script: hover text is each frame's `<title>`. Frames carry their position
//! as fractions of the whole (`data-x`, `data-w`) and their depth (`data-d`), so a page that
//! embeds several of them can zoom and search with one small script.

use std::fmt::Write as _;
use std::io::Write;

use super::flametree::{FlameNode, FlameTree};
use super::sites::short_name;
use crate::error::{Error, ErrorKind, Result};
use crate::units;

/// Height of one frame, in pixels.
const FRAME_HEIGHT: f64 = 16.0;
/// Approximate width of one character of the 11 px label font.
const CHAR_WIDTH: f64 = 6.4;
/// Labels are written on frames at least this wide.
const MIN_LABEL_WIDTH: f64 = 22.0;
/// Height above the frames: title, subtitle and legend.
const HEADER: f64 = 74.0;

/// The colour bins of the differential legend: (lowest share of the growth, fill, label).
const GREW: [(f64, &str, &str); 4] = [
    (0.5, "#b2182b", "≥ 50%"),
    (0.1, "#d6604d", "10-50%"),
    (0.01, "#f4a582", "1-10%"),
    (0.0, "#fddbc7", "< 1%"),
];
/// Shrinking frames: (lowest share of the growth shrunk, fill).
const SHRANK: [(f64, &str); 3] = [(0.1, "#2166ac"), (0.01, "#4393c3"), (0.0, "#c6dbef")];
/// Frames whose value did not change.
const UNCHANGED: &str = "#e4e4e4";
/// Collapsed runtime/dependency frames of a single profile.
const PLUMBING: &str = "#c9ced6";

/// Options for [`FlameTree::write_svg`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SvgOptions {
    /// The title.
    pub title: String,
    /// A line under the title.
    pub subtitle: Option<String>,
    /// The unit of the values (`bytes`, `nanoseconds`, `count`, `samples`).
    pub unit: String,
    /// Colour by the change from `before` to `after` (a differential flamegraph); otherwise
    /// by whose code a frame is.
    pub differential: bool,
    /// Outline the path to the frames of this function (full or short name).
    pub highlight: Option<String>,
    /// Frames narrower than this many pixels (and their children) are left out.
    pub min_width: f64,
    /// Width of the drawing in pixels.
    pub width: f64,
    /// For embedding in an HTML page: no XML namespace, no `<?xml` prolog.
    pub inline: bool,
}

impl Default for SvgOptions {
    fn default() -> Self {
        Self {
            title: "Flame graph".to_owned(),
            subtitle: None,
            unit: "count".to_owned(),
            differential: false,
            highlight: None,
            min_width: 0.5,
            width: 1200.0,
            inline: false,
        }
    }
}

impl FlameTree {
    /// Draws the tree as an SVG into `w` (see the module docs). A tree with nothing to
    /// draw (no positive `after` value) is an [`ErrorKind::InvalidInput`] error.
    pub fn write_svg<W: Write>(&self, opts: &SvgOptions, mut w: W) -> Result<()> {
        let total = self.root().after;
        if total <= 0 {
            return Err(Error::invalid(
                "nothing to draw: no stack has a positive value",
            ));
        }
        let svg = Drawing::new(self, opts).draw();
        w.write_all(svg.as_bytes())
            .map_err(|e| Error::with_source(ErrorKind::Io, "writing the flamegraph", e))
    }
}

struct Drawing<'a> {
    tree: &'a FlameTree,
    opts: &'a SvgOptions,
    /// The sum of positive own deltas: what a frame's share of the growth is relative to.
    growth: i64,
    /// Nodes on the outlined path.
    path: Vec<bool>,
    out: String,
}

impl<'a> Drawing<'a> {
    fn new(tree: &'a FlameTree, opts: &'a SvgOptions) -> Self {
        let own_delta = |n: &FlameNode| {
            let children = n
                .children
                .iter()
                .fold(0i64, |a, &c| a.saturating_add(tree.nodes[c].delta()));
            n.delta().saturating_sub(children)
        };
        let growth = tree
            .nodes
            .iter()
            .fold(0i64, |a, n| a.saturating_add(own_delta(n).max(0)));
        let mut path = vec![false; tree.nodes.len()];
        if let Some(h) = &opts.highlight {
            let short = short_name(h);
            for (i, n) in tree.nodes.iter().enumerate() {
                let hit = !n.is_collapsed()
                    && (n.name == *h || n.name == short)
                    && (!opts.differential || n.delta() > 0);
                if hit {
                    for p in tree.path(i) {
                        path[p] = true;
                    }
                }
            }
        }
        Self {
            tree,
            opts,
            growth: growth.max(1),
            path,
            out: String::new(),
        }
    }

    fn draw(mut self) -> String {
        let o = self.opts;
        let depth = self.tree.nodes.iter().map(|n| n.depth).max().unwrap_or(0);
        let height = HEADER + (depth as f64 + 1.0) * FRAME_HEIGHT + 8.0;
        let ns = if o.inline {
            ""
        } else {
            " xmlns=\"http://www.w3.org/2000/svg\""
        };
        let kind = if o.differential { "diff" } else { "single" };
        let _ = writeln!(
            self.out,
            "<svg{ns} class=\"flame {kind}\" width=\"{w}\" height=\"{height}\" \
             viewBox=\"0 0 {w} {height}\" font-family=\"Verdana,sans-serif\" font-size=\"11\">",
            w = o.width
        );
        self.out.push_str(
            "<style>.flame .f text{pointer-events:none}.flame .c rect{fill-opacity:.55}\
             .flame .c text{font-style:italic;fill:#444}.flame .h rect{stroke:#111;\
             stroke-width:1.6}.flame .f:hover rect{stroke:#000;stroke-width:.8}</style>\n",
        );
        let _ = writeln!(
            self.out,
            "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"16\">{}</text>",
            o.width / 2.0,
            esc(&o.title)
        );
        if let Some(sub) = &o.subtitle {
            let _ = writeln!(
                self.out,
                "<text x=\"{}\" y=\"37\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                o.width / 2.0,
                esc(sub)
            );
        }
        self.legend();
        self.out.push_str("<g class=\"frames\">\n");
        self.frame(0, 0.0, height);
        self.out.push_str("</g>\n</svg>\n");
        self.out
    }

    fn legend(&mut self) {
        let y = 50.0;
        let mut x = 10.0;
        let mut items: Vec<(&str, &str, String)> = Vec::new();
        if self.opts.differential {
            let _ = write!(
                self.out,
                "<g class=\"legend\"><text x=\"{x}\" y=\"{}\">share of the growth:</text>",
                y + 10.0
            );
            x += 128.0;
            for (_, fill, label) in GREW {
                items.push((fill, "", label.to_owned()));
            }
            items.push((UNCHANGED, "", "unchanged".into()));
            items.push((SHRANK[1].1, "", "shrank".into()));
            items.push((
                GREW[1].1,
                " fill-opacity=\".55\"",
                "[...] runtime/dependency frames, collapsed".into(),
            ));
        } else {
            self.out.push_str("<g class=\"legend\">");
            items.push(("#e8a33d", "", "application and named frames".into()));
            items.push((
                PLUMBING,
                "",
                "[...] runtime/dependency frames, collapsed".into(),
            ));
        }
        if self.path.iter().any(|&p| p) {
            let name = self.opts.highlight.as_deref().map(short_name);
            items.push((
                "none",
                " stroke=\"#111\" stroke-width=\"1.6\"",
                format!("outlined: path to {}", name.unwrap_or_default()),
            ));
        }
        for (fill, extra, label) in items {
            let _ = write!(
                self.out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"14\" height=\"12\" fill=\"{fill}\"{extra}/>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                x + 18.0,
                y + 10.0,
                esc(&label)
            );
            x += 24.0 + label.chars().count() as f64 * CHAR_WIDTH;
        }
        self.out.push_str("</g>\n");
    }

    /// Draws node `root` at fraction `x` of the width, then its descendants, parents before
    /// children (iteratively: stacks can be deep).
    fn frame(&mut self, root: usize, x: f64, height: f64) {
        let tree = self.tree;
        let total = tree.root().after as f64;
        let mut work = vec![(root, x)];
        while let Some((i, x)) = work.pop() {
            let n = &tree.nodes[i];
            let frac = n.after as f64 / total;
            let px = frac * self.opts.width;
            if px < self.opts.min_width || n.after <= 0 {
                continue;
            }
            self.one(i, x, frac, height);
            let mut cx = x;
            let mut children = Vec::with_capacity(n.children.len());
            for &c in &n.children {
                children.push((c, cx));
                cx += tree.nodes[c].after as f64 / total;
            }
            work.extend(children.into_iter().rev());
        }
    }

    /// Writes the frame of node `i`, `frac` of the width wide, at fraction `x`.
    fn one(&mut self, i: usize, x: f64, frac: f64, height: f64) {
        let n = &self.tree.nodes[i];
        let px = frac * self.opts.width;
        let y = height - 8.0 - (n.depth as f64 + 1.0) * FRAME_HEIGHT;
        let mut class = String::from("f");
        if n.is_collapsed() {
            class.push_str(" c");
        }
        if self.path[i] {
            class.push_str(" h");
        }
        let fill = self.fill(n);
        let _ = write!(
            self.out,
            "<g class=\"{class}\" data-x=\"{x:.6}\" data-w=\"{frac:.6}\" data-d=\"{}\">\
             <title>{}</title><rect x=\"{:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" \
             fill=\"{fill}\" rx=\"1.5\"/>",
            n.depth,
            esc(&self.hover(n)),
            x * self.opts.width,
            px,
            FRAME_HEIGHT - 1.0,
        );
        if let Some(label) = fit(&n.name, px) {
            let _ = write!(
                self.out,
                "<text x=\"{:.1}\" y=\"{}\">{}</text>",
                x * self.opts.width + 3.0,
                y + 11.5,
                esc(&label)
            );
        }
        self.out.push_str("</g>\n");
    }

    fn fill(&self, n: &FlameNode) -> String {
        if self.opts.differential {
            let d = n.delta();
            let share = d.unsigned_abs() as f64 / self.growth as f64;
            let fill = if d > 0 {
                GREW.iter()
                    .find(|b| share >= b.0)
                    .map_or(GREW[3].1, |b| b.1)
            } else if d < 0 {
                SHRANK
                    .iter()
                    .find(|b| share >= b.0)
                    .map_or(SHRANK[2].1, |b| b.1)
            } else {
                UNCHANGED
            };
            return fill.to_owned();
        }
        if n.is_collapsed() || n.name.starts_with('[') || n.depth == 0 {
            return PLUMBING.to_owned();
        }
        // inferno's "hot" palette, hashed by name so a function keeps its colour.
        let h = n.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let (a, b) = ((h & 0xff) as f64 / 255.0, ((h >> 8) & 0xff) as f64 / 255.0);
        format!(
            "rgb({},{},{})",
            205 + (50.0 * b) as u8,
            (80.0 + 150.0 * a) as u8,
            (55.0 * b) as u8
        )
    }

    fn hover(&self, n: &FlameNode) -> String {
        let unit = self.opts.unit.as_str();
        let total = self.tree.root().after;
        let mut s = n.name.clone();
        if self.opts.differential {
            let d = n.delta();
            let rel = if n.before > 0 {
                units::signed_percent(d as f64 * 100.0 / n.before as f64)
            } else {
                "new".to_owned()
            };
            let _ = write!(
                s,
                "\nbefore {}, after {}, delta {} ({rel})",
                units::named(n.before, unit),
                units::named(n.after, unit),
                units::signed_named(d, unit)
            );
            if d > 0 {
                let _ = write!(
                    s,
                    "\n{} of the growth",
                    units::percent(d as f64 * 100.0 / self.growth as f64)
                );
            }
        } else {
            let _ = write!(
                s,
                "\n{} ({} of all)",
                units::named(n.after, unit),
                units::percent(n.after as f64 * 100.0 / total.max(1) as f64)
            );
        }
        if n.is_collapsed() {
            let _ = write!(
                s,
                "\n{} runtime/dependency frames collapsed: {}",
                n.frames,
                n.crates.join(", ")
            );
        }
        if n.leaf_of_run {
            s.push_str("\ninnermost frame of the collapsed runtime/dependency frames below");
        }
        s
    }
}

/// `name` cut to what fits in `px` pixels (`..` marks a cut), or `None` if too narrow.
fn fit(name: &str, px: f64) -> Option<String> {
    if px < MIN_LABEL_WIDTH {
        return None;
    }
    let room = ((px - 6.0) / CHAR_WIDTH) as usize;
    let len = name.chars().count();
    if len <= room {
        return Some(name.to_owned());
    }
    (room >= 3).then(|| name.chars().take(room - 2).collect::<String>() + "..")
}

/// Escapes text for XML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::testutil::heap_profile;

    #[test]
    fn differential_svg_says_before_after_and_delta() {
        let before = heap_profile(&[
            (&["myapp::leak", "myapp::main"], 1024),
            (&["myapp::cache", "myapp::main"], 4096),
        ]);
        let after = heap_profile(&[
            (&["myapp::leak", "myapp::main"], 3 * 1024 * 1024),
            (&["myapp::cache", "myapp::main"], 2048),
        ]);
        let i = after.sample_index("inuse_space").unwrap();
        let t = FlameTree::build(Some((&before, i)), (&after, i), None, true);
        let opts = SvgOptions {
            differential: true,
            unit: "bytes".into(),
            highlight: Some("myapp::leak".into()),
            title: "Growth <x>".into(),
            ..SvgOptions::default()
        };
        let mut out = Vec::new();
        t.write_svg(&opts, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("<svg xmlns="), "{}", &s[..80]);
        assert!(s.contains("Growth &lt;x&gt;"));
        assert!(
            s.contains("myapp::leak\nbefore 1.0 KiB, after 3.0 MiB, delta +3.0 MiB (+307100.0%)"),
            "{s}"
        );
        assert!(s.contains("delta -2.0 KiB (-50.0%)"), "{s}");
        // The leak is red (≥ 50 % of the growth) and outlined with its callers.
        assert!(s.contains("class=\"f h\""));
        assert!(s.contains(GREW[0].1) && s.contains(SHRANK[2].1));
        assert!(s.contains("outlined: path to myapp::leak"));
        assert!(s.contains("share of the growth:"));
        let inline = SvgOptions {
            inline: true,
            ..opts
        };
        let mut out = Vec::new();
        t.write_svg(&inline, &mut out).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("http"));
    }

    #[test]
    fn deep_stacks_do_not_overflow_the_stack() {
        let names: Vec<String> = (0..50_000).map(|i| format!("myapp::f{i}")).collect();
        let stack: Vec<&str> = names.iter().map(String::as_str).collect();
        let p = heap_profile(&[(&stack, 4096)]);
        let i = p.sample_index("inuse_space").unwrap();
        let t = FlameTree::build(None, (&p, i), None, true);
        let opts = SvgOptions {
            min_width: 0.0,
            ..SvgOptions::default()
        };
        let mut out = Vec::new();
        t.write_svg(&opts, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("myapp::f0\n") && s.contains("myapp::f49999\n"));
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        let p = heap_profile(&[]);
        let t = FlameTree::build(None, (&p, 0), None, true);
        let err = t.write_svg(&SvgOptions::default(), Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn long_names_are_cut_to_their_frame() {
        assert_eq!(fit("abcdefghij", 40.0).as_deref(), Some("abc.."));
        assert_eq!(fit("abc", 10.0), None);
    }
}
