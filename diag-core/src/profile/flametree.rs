//! A flame tree: the stacks of one profile (or of two, before and after) merged into a tree of
//! frames, outermost at the root, with the runtime and dependency plumbing collapsed.
//!
//! Collapsing makes the application visible: each run of consecutive frames that are not the
//! application's ([`SiteRules::kind`] says [`FrameKind::Runtime`] or
//! [`FrameKind::Dependency`]) becomes one node named after the crates it passes through,
//! `[tokio/hyper/std +2: 41 frames]`. A run that ends a stack keeps its innermost frame (the
//! leaf, e.g. `__GI___writev`) as a node of its own on top of the collapsed one, so the
//! function the samples were taken in stays in the picture. Synthetic frames (`[thread worker-1]`, `[unknown]`) are
//! kept as they are. The tree is what the readable flamegraphs draw
//! ([`write_svg`](FlameTree::write_svg)), and its [`folded`](FlameTree::folded) stacks are
//! what inferno draws for `diag flamegraph`.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::folded::looks_like_count;
use super::model::{Frame, Profile};
use super::sites::{FrameKind, SiteRules, crate_root, is_allocator_shim, short_name};

/// Crates named in a collapsed node's label before `+N`.
const LABEL_CRATES: usize = 3;

/// One frame of a [`FlameTree`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FlameNode {
    /// The frame's function (short or full name, as asked), or for a collapsed node its
    /// label (`[tokio/hyper/std +2: 41 frames]`).
    pub name: String,
    /// For a collapsed node, the crates of its frames in the order met (outermost first);
    /// empty for a real frame.
    pub crates: Vec<String>,
    /// For a collapsed node, the most frames it stands for in any one stack; 0 for a real frame.
    pub frames: usize,
    /// True for a runtime or dependency frame kept on top of its collapsed run: the
    /// innermost frame of a stack whose innermost frames were collapsed.
    pub leaf_of_run: bool,
    /// The value of the stacks through this node in the first profile (0 without one).
    pub before: i64,
    /// The value of the stacks through this node in the (second) profile.
    pub after: i64,
    /// Depth: 0 for the root, 1 for the outermost frames.
    pub depth: usize,
    /// The node's parent (the root is its own parent).
    pub parent: usize,
    /// The node's children, by name order.
    pub children: Vec<usize>,
}

impl FlameNode {
    /// True for a node that stands for a run of runtime or dependency frames.
    pub fn is_collapsed(&self) -> bool {
        self.frames > 0
    }

    /// `after - before`.
    pub fn delta(&self) -> i64 {
        self.after.saturating_sub(self.before)
    }
}

/// Stacks merged into a tree; node 0 is the root (`all`).
#[derive(Debug, Clone, PartialEq)]
pub struct FlameTree {
    /// The nodes; `nodes[0]` is the root and every parent comes before its children.
    pub nodes: Vec<FlameNode>,
}

/// How a frame enters the tree.
#[derive(Clone)]
enum Step {
    /// Kept as a node of its own, under this name.
    Keep(Rc<str>),
    /// Folded into a collapsed run; the crate it belongs to.
    Fold(Rc<str>),
}

impl FlameTree {
    /// The tree of `after`'s column `after_index`, with `before`'s column `before_index`
    /// merged in as the `before` values when given. With `rules`, runs of frames that are not
    /// the application's are collapsed; `short` names frames by their
    /// [`short_name`]. Samples with no positive value are left out.
    pub fn build(
        before: Option<(&Profile, usize)>,
        after: (&Profile, usize),
        rules: Option<&SiteRules>,
        short: bool,
    ) -> Self {
        let mut b = Builder {
            tree: FlameTree {
                nodes: vec![FlameNode {
                    name: "all".to_owned(),
                    crates: Vec::new(),
                    frames: 0,
                    leaf_of_run: false,
                    before: 0,
                    after: 0,
                    depth: 0,
                    parent: 0,
                    children: Vec::new(),
                }],
            },
            index: HashMap::new(),
            steps: HashMap::new(),
            rules,
            short,
        };
        if let Some((p, i)) = before {
            b.add_profile(p, i, true);
        }
        b.add_profile(after.0, after.1, false);
        let mut tree = b.tree;
        tree.finish();
        tree
    }

    /// The root.
    pub fn root(&self) -> &FlameNode {
        &self.nodes[0]
    }

    /// The nodes from the root down to `node` (root first).
    pub fn path(&self, mut node: usize) -> Vec<usize> {
        let mut path = vec![node];
        while node != 0 {
            node = self.nodes[node].parent;
            path.push(node);
        }
        path.reverse();
        path
    }

    /// Folded stacks of the `after` values (`outer;inner value`), as inferno reads them: each
    /// node's own value (its value less its children's) on the path of names to it.
    pub fn folded(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            let children = n
                .children
                .iter()
                .fold(0i64, |a, &c| a.saturating_add(self.nodes[c].after));
            let own = n.after.saturating_sub(children);
            if own <= 0 {
                continue;
            }
            let mut key = String::new();
            for (k, &p) in self.path(i).iter().skip(1).enumerate() {
                if k > 0 {
                    key.push(';');
                }
                key.push_str(&self.nodes[p].name);
            }
            if let Some(space) = key.rfind(' ')
                && looks_like_count(&key[space + 1..])
            {
                key.replace_range(space..=space, "_");
            }
            let v = out.entry(key).or_insert(0i64);
            *v = v.saturating_add(own);
        }
        out
    }

    /// Names collapsed nodes and orders children by name (deterministic output).
    fn finish(&mut self) {
        for n in &mut self.nodes {
            if n.is_collapsed() {
                n.name = collapsed_label(&n.crates, n.frames);
            }
        }
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for n in &mut self.nodes {
            n.children.sort_by(|&a, &b| names[a].cmp(&names[b]));
        }
    }
}

/// The crates that say least about a run (nearly every run passes through them): named after
/// the others.
const COMMON_CRATES: &[&str] = &["native", "std", "core", "alloc"];

/// `[tokio/hyper/std +2: 41 frames]`: the crates of a collapsed run, the telling ones (tokio,
/// hyper) before the common ones (std, core, alloc, C functions), each group in the order met.
fn collapsed_label(crates: &[String], frames: usize) -> String {
    let common = |c: &&String| COMMON_CRATES.contains(&c.as_str());
    let ordered: Vec<&str> = crates
        .iter()
        .filter(|c| !common(c))
        .chain(crates.iter().filter(common))
        .map(String::as_str)
        .collect();
    let mut label = String::from("[");
    label.push_str(
        &ordered
            .iter()
            .take(LABEL_CRATES)
            .copied()
            .collect::<Vec<_>>()
            .join("/"),
    );
    if crates.len() > LABEL_CRATES {
        label.push_str(&format!(" +{}", crates.len() - LABEL_CRATES));
    }
    let s = if frames == 1 { "" } else { "s" };
    label.push_str(&format!(": {frames} frame{s}]"));
    label
}

struct Builder<'r> {
    tree: FlameTree,
    /// (parent, key) -> child; a collapsed run's key starts with `\u{1}`.
    index: HashMap<(usize, Rc<str>), usize>,
    /// Each frame's step, by function and then file: deciding is the costly part, and a
    /// profile repeats its frames in many stacks.
    steps: HashMap<String, Vec<(Option<String>, Step)>>,
    rules: Option<&'r SiteRules>,
    short: bool,
}

impl Builder<'_> {
    fn add_profile(&mut self, p: &Profile, index: usize, before: bool) {
        let unknown = [Frame::named("[unknown]")];
        for s in &p.samples {
            let v = s.values.get(index).copied().unwrap_or(0);
            if v <= 0 {
                continue;
            }
            let stack: &[Frame] = if s.stack.is_empty() {
                &unknown
            } else {
                &s.stack
            };
            self.add_stack(stack, v, before);
        }
    }

    /// Adds one stack (innermost first) with value `v`.
    fn add_stack(&mut self, stack: &[Frame], v: i64, before: bool) {
        let add = |n: &mut FlameNode| {
            if before {
                n.before = n.before.saturating_add(v);
            } else {
                n.after = n.after.saturating_add(v);
            }
        };
        add(&mut self.tree.nodes[0]);
        let mut node = 0;
        let mut run: Vec<Rc<str>> = Vec::new();
        for frame in stack.iter().rev() {
            match self.cached_step(frame) {
                Step::Fold(krate) => run.push(krate),
                Step::Keep(name) => {
                    if !run.is_empty() {
                        node = self.collapsed_child(node, &run);
                        add(&mut self.tree.nodes[node]);
                        run.clear();
                    }
                    node = self.child(node, name, Vec::new(), 0);
                    add(&mut self.tree.nodes[node]);
                }
            }
        }
        // A run that ends the stack: its innermost frame (the leaf, where the samples were
        // taken) is kept on top of the rest of the run.
        if let Some((_, outer)) = run.split_last() {
            if !outer.is_empty() {
                node = self.collapsed_child(node, outer);
                add(&mut self.tree.nodes[node]);
            }
            let name = Rc::from(self.keep_name(stack[0].function.trim()));
            node = self.child(node, name, Vec::new(), 0);
            self.tree.nodes[node].leaf_of_run = true;
            add(&mut self.tree.nodes[node]);
        }
    }

    fn cached_step(&mut self, frame: &Frame) -> Step {
        if let Some(known) = self.steps.get(frame.function.as_str())
            && let Some((_, step)) = known.iter().find(|(f, _)| *f == frame.file)
        {
            return step.clone();
        }
        let step = self.step(frame);
        self.steps
            .entry(frame.function.clone())
            .or_default()
            .push((frame.file.clone(), step.clone()));
        step
    }

    fn step(&self, frame: &Frame) -> Step {
        let raw = frame.function.trim();
        let synthetic = raw.is_empty() || raw.starts_with('[');
        if let Some(rules) = self.rules
            && !synthetic
            && rules.kind(frame) != FrameKind::App
        {
            let is_path =
                raw.starts_with('<') || raw.split('<').next().unwrap_or("").contains("::");
            return Step::Fold(Rc::from(if is_allocator_shim(raw) {
                "alloc"
            } else if is_path {
                crate_root(raw)
            } else {
                "native"
            }));
        }
        Step::Keep(Rc::from(self.keep_name(raw)))
    }

    /// The node name of a kept frame named `raw`.
    fn keep_name(&self, raw: &str) -> String {
        let name = if self.short {
            short_name(raw)
        } else {
            raw.to_owned()
        };
        let name: String = name
            .chars()
            .map(|c| match c {
                ';' => ':',
                '\n' | '\r' => ' ',
                c => c,
            })
            .collect();
        if name.trim().is_empty() {
            "[unknown]".to_owned()
        } else {
            name
        }
    }

    fn collapsed_child(&mut self, parent: usize, run: &[Rc<str>]) -> usize {
        let mut crates: Vec<String> = Vec::new();
        for c in run {
            if !crates.iter().any(|k| **k == **c) {
                crates.push(c.to_string());
            }
        }
        let key: Rc<str> = Rc::from(format!("\u{1}{}", crates.join("/")));
        let child = self.child(parent, key, crates, run.len());
        let n = &mut self.tree.nodes[child];
        n.frames = n.frames.max(run.len());
        child
    }

    fn child(&mut self, parent: usize, key: Rc<str>, crates: Vec<String>, frames: usize) -> usize {
        if let Some(&c) = self.index.get(&(parent, key.clone())) {
            return c;
        }
        let id = self.tree.nodes.len();
        let depth = self.tree.nodes[parent].depth + 1;
        self.tree.nodes.push(FlameNode {
            name: key.to_string(),
            crates,
            frames,
            leaf_of_run: false,
            before: 0,
            after: 0,
            depth,
            parent,
            children: Vec::new(),
        });
        self.tree.nodes[parent].children.push(id);
        self.index.insert((parent, key), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Sample;
    use crate::profile::model::ValueType;

    fn frame(f: &str, file: &str) -> Frame {
        Frame {
            function: f.to_owned(),
            file: (!file.is_empty()).then(|| file.to_owned()),
            ..Frame::named(f)
        }
    }

    fn profile(stacks: &[(Vec<Frame>, i64)]) -> Profile {
        Profile {
            sample_types: vec![ValueType::new("inuse_space", "bytes")],
            samples: stacks
                .iter()
                .map(|(s, v)| Sample {
                    stack: s.clone(),
                    values: vec![*v],
                    labels: Vec::new(),
                })
                .collect(),
            ..Profile::default()
        }
    }

    /// alloc frames, the app's leak site, a handler, then tokio and a C thread start.
    fn leak_stack(site: &str) -> Vec<Frame> {
        vec![
            frame(
                "alloc::raw_vec::RawVec<T>::try_allocate_in",
                "/rustc/x/library/alloc/src/raw_vec.rs",
            ),
            frame(site, "/src/app/src/main.rs"),
            frame(
                "tokio::runtime::task::poll",
                "/c/registry/src/x/tokio-1/src/task.rs",
            ),
            frame(
                "hyper::proto::h1::dispatch",
                "/c/registry/src/x/hyper-1/src/d.rs",
            ),
            frame("app::handler", "/src/app/src/main.rs"),
            frame(
                "tokio::runtime::worker::run",
                "/c/registry/src/x/tokio-1/src/w.rs",
            ),
            frame("std::thread::start", "/rustc/x/library/std/src/thread.rs"),
            frame("clone3", ""),
        ]
    }

    #[test]
    fn collapses_runs_of_plumbing_and_keeps_the_app() {
        let before = profile(&[(leak_stack("app::remember"), 100)]);
        let after = profile(&[
            (leak_stack("app::remember"), 900),
            (leak_stack("app::other"), 50),
        ]);
        let rules = SiteRules::for_profiles([&before, &after]);
        let t = FlameTree::build(Some((&before, 0)), (&after, 0), Some(&rules), true);
        let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "all",
                "[tokio/native/std: 3 frames]",
                "app::handler",
                "[hyper/tokio: 2 frames]",
                "app::remember",
                // A run of one frame that ends the stack: the frame itself.
                "alloc::raw_vec::RawVec::try_allocate_in",
                "app::other",
                "alloc::raw_vec::RawVec::try_allocate_in",
            ]
        );
        let root = t.root();
        assert_eq!((root.before, root.after, root.delta()), (100, 950, 850));
        assert_eq!((t.nodes[4].before, t.nodes[4].after), (100, 900));
        assert_eq!(t.path(4), [0, 1, 2, 3, 4]);
        let folded = t.folded();
        assert_eq!(
            folded.get("[tokio/native/std: 3 frames];app::handler;[hyper/tokio: 2 frames];app::remember;alloc::raw_vec::RawVec::try_allocate_in"),
            Some(&900)
        );
        // Without rules every frame is its own node.
        let all = FlameTree::build(None, (&after, 0), None, true);
        assert_eq!(all.nodes.iter().filter(|n| n.is_collapsed()).count(), 0);
        assert!(all.nodes.iter().any(|n| n.name == "clone3"));
    }

    #[test]
    fn a_collapsed_run_that_ends_the_stack_keeps_its_leaf_on_top() {
        // A hyper file server writing: the app's handler, then 4 frames of plumbing down to
        // libc's writev, where the samples were taken.
        let stack = vec![
            frame("__GI___writev", ""),
            frame(
                "tokio::net::tcp::stream::TcpStream::poll_write_vectored",
                "/c/registry/src/x/tokio-1/src/tcp.rs",
            ),
            frame(
                "hyper::proto::h1::io::Buffered::poll_flush",
                "/c/registry/src/x/hyper-1/src/io.rs",
            ),
            frame(
                "hyper::proto::h1::dispatch::Dispatcher::poll",
                "/c/registry/src/x/hyper-1/src/d.rs",
            ),
            frame("app::serve_file", "/src/app/src/main.rs"),
        ];
        let p = profile(&[(stack, 39), (leak_stack("app::remember"), 61)]);
        let rules = SiteRules::for_profile(&p);
        let t = FlameTree::build(None, (&p, 0), Some(&rules), true);
        let leaf = t
            .nodes
            .iter()
            .position(|n| n.name == "__GI___writev")
            .expect("the leaf is drawn");
        let n = &t.nodes[leaf];
        assert!(n.leaf_of_run && !n.is_collapsed());
        assert_eq!(n.after, 39);
        let below = &t.nodes[n.parent];
        assert_eq!(below.name, "[hyper/tokio: 3 frames]");
        assert_eq!(t.nodes[below.parent].name, "app::serve_file");
        let folded = t.folded();
        assert_eq!(
            folded.get("app::serve_file;[hyper/tokio: 3 frames];__GI___writev"),
            Some(&39),
            "{folded:?}"
        );
        // A run of one frame is just that frame.
        assert!(
            folded
                .keys()
                .any(|k| k.ends_with("app::remember;alloc::raw_vec::RawVec::try_allocate_in")),
            "{folded:?}"
        );
        // The tree's total is unchanged.
        assert_eq!(t.root().after, 100);
    }

    #[test]
    fn synthetic_frames_are_kept_and_names_sanitised() {
        let mut s = leak_stack("app::remember");
        s.push(Frame::named("[thread worker-1]"));
        s[1].function = "app::f 12".into();
        let p = profile(&[(s, 7), (Vec::new(), 3)]);
        let rules = SiteRules::for_profile(&p);
        let t = FlameTree::build(None, (&p, 0), Some(&rules), false);
        let folded = t.folded();
        assert_eq!(folded.get("[unknown]"), Some(&3));
        assert!(
            folded
                .keys()
                .any(|k| k.starts_with("[thread worker-1];[tokio/native/std")),
            "{folded:?}"
        );
        assert!(
            folded
                .keys()
                .any(|k| k.contains("app::f 12;alloc::raw_vec")),
            "{folded:?}"
        );
    }
}
