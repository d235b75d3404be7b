//! `diag report`: one self-contained HTML page (verdict, growth table, differential and CPU
//! flamegraphs, trend sparklines, blocking events, routes) from a live service or from saved
//! profiles.
//!
//! This module gathers what the page shows, with the computations the other commands use
//! (`profile::diff`, `profile::trend`, `profile::top`, the readable flame trees); [`live`]
//! fetches from a service, [`html`] renders.

mod html;
mod labels;
mod live;

use anyhow::{Context, Result, bail};
use diag_core::profile::{
    self, DiffOptions, FlameOptions, FlameTree, HeapDiff, HeapTrend, Profile, SvgOptions, Top,
    TopOptions, TrendOptions,
    sites::{NO_APP_FRAME, SiteRules},
};

use crate::input::read_profile;
use crate::scrape;
use crate::units;

pub(crate) use live::{LiveOptions, fetch_metrics, fetch_tasks, gather_live};

/// Width of the flamegraphs in the page, in pixels.
const FLAME_WIDTH: f64 = 1200.0;
/// Frames narrower than this many pixels are left out of the page's flamegraphs (they cannot
/// be hovered, and a profile of 10k stacks would otherwise make the page large).
const FLAME_MIN_WIDTH: f64 = 1.0;
/// Functions listed per CPU profile.
const CPU_TOP: usize = 15;

/// What the page shows. Every part is optional: the page says what was not available.
#[derive(Default)]
pub(crate) struct Report {
    /// Where the data came from: the service's URL or the files.
    pub(crate) source: String,
    /// Seconds between the first and the last heap snapshot, when known.
    pub(crate) window_secs: Option<f64>,
    /// The growth from the first to the last heap snapshot.
    pub(crate) diff: Option<HeapDiff>,
    /// The growth by `route` and by `task`, for the labels the snapshots carry.
    pub(crate) by_label: Vec<diag_core::profile::DiffByLabel>,
    /// Its readable differential flamegraph (inline SVG).
    pub(crate) diff_svg: Option<String>,
    /// The trend over three or more heap snapshots.
    pub(crate) trend: Option<HeapTrend>,
    /// The ages of the last heap snapshot's live bytes by site, when it carries them.
    pub(crate) ages: Option<diag_core::profile::Ages>,
    /// CPU profiles: their hottest functions and flamegraphs.
    pub(crate) cpu: Vec<CpuPart>,
    /// The service's `/debug/tasks` answer.
    pub(crate) tasks: Option<diag_core::wire::Tasks>,
    /// Routes over the window, from two scrapes of `/metrics`.
    pub(crate) routes: Option<scrape::Sample>,
    /// What could not be gathered, and other remarks, shown at the top.
    pub(crate) notes: Vec<String>,
}

/// One CPU profile's part of the page.
pub(crate) struct CpuPart {
    /// The file or URL it came from.
    pub(crate) name: String,
    /// Its hottest functions (flat: the innermost frame).
    pub(crate) top: Top,
    /// Its hottest application functions (flat: the innermost application frame, what it
    /// calls in the runtime and dependencies folded into it).
    pub(crate) app_top: Top,
    /// Its flamegraph (inline SVG).
    pub(crate) svg: String,
}

/// Options shared by both ways of building a report.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReportOptions {
    /// `--app-crates`.
    pub(crate) app_crates: Vec<String>,
    /// `--include-diag`: keep the samples of diag's own threads in the CPU table and
    /// flamegraph (the hottest application functions never count them).
    pub(crate) include_diag: bool,
}

/// What a profile is, for the report.
#[derive(Debug, PartialEq)]
enum Kind {
    Heap,
    Cpu,
}

fn kind(p: &Profile) -> Option<Kind> {
    if p.sample_index("inuse_space").is_some() {
        Some(Kind::Heap)
    } else if p.sample_index("cpu").is_some() || p.sample_index("samples").is_some() {
        Some(Kind::Cpu)
    } else {
        None
    }
}

/// The report of saved profiles: two or more heap snapshots give the diff (three or more the
/// trend too), CPU profiles their flamegraphs.
pub(crate) fn from_files(files: &[String], opts: &ReportOptions) -> Result<Report> {
    let mut heaps = Vec::new();
    let mut cpus = Vec::new();
    for f in files {
        let p = read_profile(f)?;
        match kind(&p) {
            Some(Kind::Heap) => heaps.push((f.clone(), p)),
            Some(Kind::Cpu) => cpus.push((f.clone(), p)),
            None => bail!(
                "{f} is neither a heap profile (no inuse_space column) nor a CPU profile (no cpu \
                 or samples column); it has {}",
                profile::sample_type_names(&p)
            ),
        }
    }
    if heaps.len() == 1 {
        bail!(
            "{} is the only heap snapshot: a report compares two (the growth) or three or more \
             (the trend as well)",
            heaps[0].0
        );
    }
    let mut report = Report {
        source: files.join(" "),
        ..Report::default()
    };
    report.add_heaps(heaps, opts)?;
    for (name, p) in cpus {
        report.add_cpu(&name, &p, opts)?;
    }
    Ok(report)
}

impl Report {
    /// Adds the diff of the first and last of `heaps` (sorted by their timestamps; those
    /// without one keep their order) and, for three or more, their trend.
    pub(crate) fn add_heaps(
        &mut self,
        mut heaps: Vec<(String, Profile)>,
        opts: &ReportOptions,
    ) -> Result<()> {
        if heaps.len() < 2 {
            return Ok(());
        }
        if heaps.iter().all(|(_, p)| p.time_nanos > 0) {
            heaps.sort_by_key(|(_, p)| p.time_nanos);
        }
        let (first_name, first) = &heaps[0];
        let (last_name, last) = &heaps[heaps.len() - 1];
        self.add_diff((first_name, first), (last_name, last), opts)?;
        if heaps.len() >= profile::MIN_TREND_SNAPSHOTS {
            let refs: Vec<&Profile> = heaps.iter().map(|(_, p)| p).collect();
            self.add_trend(&refs, opts)?;
        }
        Ok(())
    }

    /// Adds the growth from `first` to `last` (named for errors): the table and the
    /// differential flamegraph with the top site's path outlined.
    pub(crate) fn add_diff(
        &mut self,
        (first_name, first): (&str, &Profile),
        (last_name, last): (&str, &Profile),
        opts: &ReportOptions,
    ) -> Result<()> {
        if first.time_nanos > 0 && last.time_nanos > first.time_nanos {
            self.window_secs = Some((last.time_nanos - first.time_nanos) as f64 / 1e9);
        }
        let mut dopts = DiffOptions::default();
        dopts.app_crates.clone_from(&opts.app_crates);
        let diff = profile::diff(first, last, &dopts)
            .with_context(|| format!("comparing {first_name} with {last_name}"))?;
        self.by_label = labels::growth_by_label(first, last, &dopts)
            .with_context(|| format!("comparing {first_name} with {last_name} by label"))?;
        let mut fopts = FlameOptions::default();
        fopts.app_crates.clone_from(&opts.app_crates);
        fopts.sample_type = Some(diff.sample_type.clone());
        let (tree, ty) = profile::diff_tree(first, last, &fopts)
            .context("drawing the differential flamegraph")?;
        let top_site = diff
            .sites
            .first()
            .filter(|s| s.delta_bytes > 0)
            .map(|s| s.function.clone());
        let mut svg = page_svg(format!("Growth of {}", ty.ty), &ty.unit);
        svg.subtitle = Some(format!(
            "frame width: {} in the last snapshot; colour: share of the growth; click to zoom",
            ty.ty
        ));
        svg.differential = true;
        svg.highlight = top_site;
        self.diff_svg = Some(svg_string(&tree, &svg)?);
        self.diff = Some(diff);
        // A profile without ages (a history point, another profiler's) has no column.
        let mut aopts = diag_core::profile::AgesOptions::default();
        aopts.app_crates.clone_from(&opts.app_crates);
        self.ages = profile::ages(last, &aopts).ok();
        Ok(())
    }

    /// Adds the trend of three or more heap snapshots.
    pub(crate) fn add_trend(&mut self, heaps: &[&Profile], opts: &ReportOptions) -> Result<()> {
        let mut topts = TrendOptions::default();
        topts.app_crates.clone_from(&opts.app_crates);
        self.trend = Some(profile::trend(heaps, &topts).context("computing the trend")?);
        Ok(())
    }

    /// Adds a CPU profile: its hottest functions and its flamegraph (each thread a root).
    pub(crate) fn add_cpu(&mut self, name: &str, p: &Profile, opts: &ReportOptions) -> Result<()> {
        let with_diag = diag_core::cpu::thread_rooted(p);
        // diag's own threads (thread=diag-*: symbolizing the report's snapshots, serving
        // them) are not the application's CPU: left out unless asked, and said.
        let mut without_diag = with_diag.clone();
        let share = profile::remove_diag_samples(&mut without_diag);
        if share.samples > 0 {
            let column = profile::select_sample(&with_diag, None).unwrap_or(0);
            self.notes.push(format!(
                "{name}: diag's own threads (thread=diag-*) were {} of the CPU ({} samples); {}",
                units::percent(share.percent(column)),
                share.samples,
                if opts.include_diag {
                    "kept (--include-diag), except in the hottest application functions"
                } else {
                    "left out (--include-diag keeps them)"
                }
            ));
        }
        let p = if opts.include_diag {
            with_diag
        } else {
            without_diag.clone()
        };
        let mut topts = TopOptions::default();
        topts.n = CPU_TOP;
        topts.app_crates.clone_from(&opts.app_crates);
        let top = profile::top(&p, &topts).with_context(|| format!("ranking {name}"))?;
        topts.attribution = profile::Attribution::Sites;
        let app_top =
            profile::top(&without_diag, &topts).with_context(|| format!("ranking {name}"))?;
        if top.total <= 0 {
            self.notes
                .push(format!("{name}: the CPU profile holds no samples"));
            return Ok(());
        }
        let index = profile::select_sample(&p, None)?;
        let rules = SiteRules::for_profile(&p).with_app_crates(&opts.app_crates);
        let tree = FlameTree::build(None, (&p, index), Some(&rules), true);
        let ty = &p.sample_types[index];
        let mut svg = page_svg(format!("CPU ({})", ty.ty), &ty.unit);
        svg.subtitle = Some("each thread a root; click to zoom, search above".to_owned());
        self.cpu.push(CpuPart {
            name: name.to_owned(),
            top,
            app_top,
            svg: svg_string(&tree, &svg)?,
        });
        Ok(())
    }

    /// The page.
    pub(crate) fn html(&self) -> String {
        html::render(self)
    }
}

/// The options of a flamegraph drawn into the page.
fn page_svg(title: String, unit: &str) -> SvgOptions {
    let mut o = SvgOptions::default();
    o.title = title;
    o.unit = unit.to_owned();
    o.min_width = FLAME_MIN_WIDTH;
    o.width = FLAME_WIDTH;
    o.inline = true;
    o
}

fn svg_string(tree: &FlameTree, opts: &SvgOptions) -> Result<String> {
    let mut out = Vec::new();
    tree.write_svg(opts, &mut out)?;
    String::from_utf8(out).context("the flamegraph is not UTF-8")
}

/// The verdict's hottest application functions of a CPU profile's `app_top`, by short name (a
/// function's closures and async bodies count as the function), largest share first. Only
/// functions that hold samples as their innermost application frame: a stack without one is
/// not the application's, and the dependency frames the list carries for their cum value
/// hold no flat share at all.
pub(crate) fn hot_app_functions(app_top: &Top) -> Vec<(&str, f64)> {
    let mut by_name: Vec<(&str, f64)> = Vec::new();
    for e in &app_top.entries {
        if e.flat == 0 || e.function.starts_with(NO_APP_FRAME) {
            continue;
        }
        match by_name.iter_mut().find(|(n, _)| *n == e.short) {
            Some((_, p)) => *p += e.flat_percent,
            None => by_name.push((&e.short, e.flat_percent)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
}

#[cfg(test)]
mod tests {
    use diag_core::profile::{Frame, Profile, Sample, ValueType, sites::APP_CRATES_COMMENT};

    use super::*;

    fn cpu_profile(stacks: &[(&[&str], i64)]) -> Profile {
        let mut p = Profile {
            sample_types: vec![ValueType::new("cpu", "nanoseconds")],
            comments: vec![format!("{APP_CRATES_COMMENT}=app")],
            ..Profile::default()
        };
        for (stack, v) in stacks {
            p.samples.push(Sample {
                stack: stack.iter().map(|f| Frame::named(*f)).collect(),
                values: vec![*v],
                labels: Vec::new(),
            });
        }
        p
    }

    fn app_top(p: &Profile) -> Top {
        let mut opts = TopOptions::default();
        opts.attribution = profile::Attribution::Sites;
        profile::top(p, &opts).unwrap()
    }

    #[test]
    fn stacks_outside_the_application_name_no_hot_function() {
        // The application's code lives in a crate the profile does not name as its own (a
        // binary over a library crate, without DIAG_APP_CRATES): the dependency and thread
        // frames on its stacks hold cum value only and are no application function.
        let p = cpu_profile(&[(
            &[
                "clone3",
                "<tokio::runtime::blocking::task::BlockingTask<T> as core::future::Future>::poll",
                "lib_crate::handler",
                "[thread tokio-rt-worker]",
            ],
            10,
        )]);
        assert!(hot_app_functions(&app_top(&p)).is_empty());
        let p = cpu_profile(&[
            (&["memcpy", "app::hash", "tokio::run", "[thread w]"], 30),
            (&["app::hash::{{closure}}", "tokio::run", "[thread w]"], 10),
            (&["clone3", "tokio::park", "[thread w]"], 60),
        ]);
        assert_eq!(hot_app_functions(&app_top(&p)), [("app::hash", 40.0)]);
    }
}
