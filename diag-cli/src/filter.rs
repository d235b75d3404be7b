//! `--focus`, `--ignore` and `--hide`: narrow profiles to the stacks and frames that matter,
//! with the meaning `go tool pprof` gives its options of the same names.
//!
//! A pattern matches a frame if it matches the frame's function name or its source file
//! anywhere (unanchored, like pprof's). `--focus` keeps the stacks with at least one matching
//! frame, `--ignore` drops the stacks with any, and both look at the stacks as recorded;
//! `--hide` then removes the matching frames from the stacks that are left, keeping their
//! values (a stack whose every frame is hidden shows as `[unknown]`).
//!
//! `--tag-focus KEY=REGEX` and `--tag-ignore KEY=REGEX` do the same on the samples' pprof
//! labels (`route`, `task`, `thread`), like pprof's `-tagfocus` / `-tagignore`: the pattern
//! matches the label's value anywhere; a sample without the label never matches.

use crate::units;
use diag_core::profile::{Frame, Profile};
use regex_lite::Regex;

/// The filter options, shared by every command that reads profiles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Keep only stacks with a frame whose function or file matches REGEX.
    pub(crate) focus: Option<Regex>,
    /// Drop the stacks with a frame whose function or file matches REGEX.
    pub(crate) ignore: Option<Regex>,
    /// Remove the frames whose function or file matches REGEX from every stack (their values
    /// go to the frames around them).
    pub(crate) hide: Option<Regex>,
    /// Keep only samples whose pprof label KEY (route, task, thread, ...) matches REGEX
    /// (repeatable: a sample must match each).
    pub(crate) tag_focus: Vec<TagFilter>,
    /// Drop the samples whose pprof label KEY matches REGEX (repeatable: any match drops).
    pub(crate) tag_ignore: Vec<TagFilter>,
}

/// `--tag-focus` / `--tag-ignore`: a label key and a pattern for its value.
#[derive(Debug, Clone)]
pub(crate) struct TagFilter {
    /// The label's key (`route`).
    pub(crate) key: String,
    /// The pattern its value must match.
    pub(crate) re: Regex,
}

impl TagFilter {
    /// True if `s` carries the label and its value matches.
    fn matches(&self, s: &diag_core::profile::Sample) -> bool {
        diag_core::profile::label(s, &self.key).is_some_and(|v| self.re.is_match(v))
    }
}

/// `KEY=REGEX`, with a reason when it is not one.
pub(crate) fn parse_tag(s: &str) -> Result<TagFilter, String> {
    let Some((key, pattern)) = s.split_once('=') else {
        return Err(format!(
            "`{s}` is not KEY=REGEX (e.g. route=/audit, task=^flush$, thread=worker)"
        ));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{s}` names no label before `=`"));
    }
    Ok(TagFilter {
        key: key.to_owned(),
        re: parse_regex(pattern)?,
    })
}

/// `--focus` and friends: a regular expression, with the parser's own message if it is not one.
pub(crate) fn parse_regex(s: &str) -> Result<Regex, String> {
    if s.is_empty() {
        return Err("an empty pattern would match every frame".into());
    }
    Regex::new(s).map_err(|e| e.to_string())
}

/// What filtering did to some profiles: stacks seen and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Kept {
    /// Stacks before filtering.
    pub(crate) stacks: usize,
    /// Stacks left.
    pub(crate) kept: usize,
}

impl Filter {
    /// True if any filter was given.
    pub(crate) fn is_active(&self) -> bool {
        self.focus.is_some()
            || self.ignore.is_some()
            || self.hide.is_some()
            || !self.tag_focus.is_empty()
            || !self.tag_ignore.is_empty()
    }

    /// Filters `p` in place and says how many of its stacks were kept.
    pub(crate) fn apply(&self, p: &mut Profile) -> Kept {
        let stacks = p.samples.len();
        if !self.is_active() {
            return Kept {
                stacks,
                kept: stacks,
            };
        }
        p.samples.retain(|s| {
            self.focus
                .as_ref()
                .is_none_or(|re| s.stack.iter().any(|f| matches(re, f)))
                && self
                    .ignore
                    .as_ref()
                    .is_none_or(|re| !s.stack.iter().any(|f| matches(re, f)))
                && self.tag_focus.iter().all(|t| t.matches(s))
                && !self.tag_ignore.iter().any(|t| t.matches(s))
        });
        if let Some(re) = &self.hide {
            for s in &mut p.samples {
                s.stack.retain(|f| !matches(re, f));
            }
        }
        Kept {
            stacks,
            kept: p.samples.len(),
        }
    }

    /// Filters every profile of `profiles` and, if a filter was given, says on stderr what it
    /// kept: one line for all of them, a warning if nothing was left.
    pub(crate) fn apply_all<'a>(&self, profiles: impl IntoIterator<Item = &'a mut Profile>) {
        if !self.is_active() {
            return;
        }
        let mut total = Kept::default();
        for p in profiles {
            let k = self.apply(p);
            total.stacks += k.stacks;
            total.kept += k.kept;
        }
        let described = self.describe();
        if total.kept == 0 && total.stacks > 0 {
            eprintln!(
                "diag: warning: {described} left no stack of {}",
                total.stacks
            );
        } else {
            eprintln!(
                "diag: {described}: kept {} of {} stacks",
                total.kept, total.stacks
            );
        }
    }

    /// The filters as given on the command line, e.g. `--focus 'cache' --hide 'tokio::'`.
    pub(crate) fn describe(&self) -> String {
        let frames = [
            ("--focus", &self.focus),
            ("--ignore", &self.ignore),
            ("--hide", &self.hide),
        ]
        .into_iter()
        .filter_map(|(flag, re)| re.as_ref().map(|re| format!("{flag} '{}'", re.as_str())));
        let tags = [
            ("--tag-focus", &self.tag_focus),
            ("--tag-ignore", &self.tag_ignore),
        ]
        .into_iter()
        .flat_map(|(flag, tags)| {
            tags.iter()
                .map(move |t| format!("{flag} '{}={}'", t.key, t.re.as_str()))
        });
        frames.chain(tags).collect::<Vec<_>>().join(" ")
    }
}

/// Leaves the samples of diag's own threads (`thread=diag-*`) out of `p` unless `include`
/// (`--include-diag`), and says on stderr how much they were.
pub(crate) fn leave_out_diag(p: &mut Profile, include: bool) {
    if include {
        return;
    }
    let share = diag_core::profile::remove_diag_samples(p);
    if share.samples == 0 {
        return;
    }
    let column = diag_core::profile::select_sample(p, None).unwrap_or(0);
    let ty = p
        .sample_types
        .get(column)
        .map_or("value", |t| t.ty.as_str());
    eprintln!(
        "diag: left out diag's own threads (thread={}*): {} of the {ty} ({} samples); \
         --include-diag keeps them",
        diag_core::profile::DIAG_THREAD_PREFIX,
        units::percent(share.percent(column)),
        share.samples,
    );
}

/// True if `re` matches the frame's function name or its source file.
fn matches(re: &Regex, f: &Frame) -> bool {
    re.is_match(&f.function) || f.file.as_deref().is_some_and(|file| re.is_match(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diag_core::profile::{Sample, ValueType};

    fn frame(function: &str, file: Option<&str>) -> Frame {
        let mut f = Frame::named(function);
        f.file = file.map(str::to_owned);
        f
    }

    /// Three stacks, innermost first, with values 1, 10 and 100.
    fn profile() -> Profile {
        let sample = |stack: Vec<Frame>, v: i64| Sample {
            stack,
            values: vec![v],
            labels: Vec::new(),
        };
        Profile {
            sample_types: vec![ValueType::new("inuse_space", "bytes")],
            samples: vec![
                sample(
                    vec![
                        frame("alloc::vec::Vec<T>::push", None),
                        frame("myapp::cache::insert", Some("src/cache.rs")),
                        frame("tokio::runtime::task::poll", None),
                    ],
                    1,
                ),
                sample(
                    vec![
                        frame("myapp::json::parse", Some("src/json.rs")),
                        frame("tokio::runtime::task::poll", None),
                    ],
                    10,
                ),
                sample(vec![frame("std::rt::lang_start", None)], 100),
            ],
            ..Profile::default()
        }
    }

    fn filter(focus: Option<&str>, ignore: Option<&str>, hide: Option<&str>) -> Filter {
        let re = |s: Option<&str>| s.map(|s| parse_regex(s).unwrap());
        Filter {
            focus: re(focus),
            ignore: re(ignore),
            hide: re(hide),
            ..Filter::default()
        }
    }

    fn values(p: &Profile) -> Vec<i64> {
        p.samples.iter().map(|s| s.values[0]).collect()
    }

    #[test]
    fn no_filter_keeps_everything() {
        let mut p = profile();
        let f = Filter::default();
        assert!(!f.is_active());
        assert_eq!(f.apply(&mut p), Kept { stacks: 3, kept: 3 });
        assert_eq!(p, profile());
    }

    #[test]
    fn focus_keeps_stacks_with_a_matching_frame_by_name_or_file() {
        let mut p = profile();
        let k = filter(Some("cache::insert"), None, None).apply(&mut p);
        assert_eq!(k, Kept { stacks: 3, kept: 1 });
        assert_eq!(values(&p), [1]);
        // The stack is kept whole: focus selects stacks, it does not cut them.
        assert_eq!(p.samples[0].stack.len(), 3);

        let mut p = profile();
        filter(Some(r"src/json\.rs$"), None, None).apply(&mut p);
        assert_eq!(values(&p), [10]);

        // Unanchored, like pprof: `tokio` matches inside the path.
        let mut p = profile();
        filter(Some("tokio"), None, None).apply(&mut p);
        assert_eq!(values(&p), [1, 10]);
    }

    #[test]
    fn ignore_drops_stacks_with_any_matching_frame() {
        let mut p = profile();
        let k = filter(None, Some("^tokio::"), None).apply(&mut p);
        assert_eq!(k, Kept { stacks: 3, kept: 1 });
        assert_eq!(values(&p), [100]);
    }

    #[test]
    fn focus_and_ignore_both_apply() {
        let mut p = profile();
        filter(Some("tokio"), Some("json"), None).apply(&mut p);
        assert_eq!(values(&p), [1]);
    }

    #[test]
    fn hide_removes_frames_and_keeps_values() {
        let mut p = profile();
        let k = filter(None, None, Some("^(tokio|alloc)::")).apply(&mut p);
        assert_eq!(k, Kept { stacks: 3, kept: 3 });
        assert_eq!(values(&p), [1, 10, 100]);
        let names: Vec<&str> = p.samples[0]
            .stack
            .iter()
            .map(|f| f.function.as_str())
            .collect();
        assert_eq!(names, ["myapp::cache::insert"]);
        assert_eq!(p.samples[1].stack.len(), 1);
        // A stack whose every frame is hidden keeps its value, with no frames.
        let mut p = profile();
        filter(None, None, Some("lang_start")).apply(&mut p);
        assert_eq!(values(&p), [1, 10, 100]);
        assert!(p.samples[2].stack.is_empty());
    }

    #[test]
    fn focus_looks_at_the_stack_before_hide_cuts_it() {
        // pprof's order: a stack focused on a frame that is then hidden is still kept.
        let mut p = profile();
        filter(Some("cache"), None, Some("cache")).apply(&mut p);
        assert_eq!(values(&p), [1]);
        assert_eq!(p.samples[0].stack.len(), 2);
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        let err = parse_regex("a(b").unwrap_err();
        assert!(!err.is_empty());
        assert!(parse_regex("").unwrap_err().contains("empty"));
    }

    #[test]
    fn tag_filters_select_samples_by_label_value() {
        let labelled = |mut p: Profile| {
            p.samples[0].labels = vec![("route".into(), "/audit".into())];
            p.samples[1].labels = vec![("route".into(), "/users/{id}".into())];
            p
        };
        let tags = |focus: &[&str], ignore: &[&str]| Filter {
            tag_focus: focus.iter().map(|t| parse_tag(t).unwrap()).collect(),
            tag_ignore: ignore.iter().map(|t| parse_tag(t).unwrap()).collect(),
            ..Filter::default()
        };
        let mut p = labelled(profile());
        let k = tags(&["route=^/audit$"], &[]).apply(&mut p);
        assert_eq!(k, Kept { stacks: 3, kept: 1 });
        assert_eq!(values(&p), [1]);
        // Unanchored; a sample without the label is never matched, so ignore keeps it.
        let mut p = labelled(profile());
        tags(&[], &["route=users"]).apply(&mut p);
        assert_eq!(values(&p), [1, 100]);
        let mut p = labelled(profile());
        tags(&["route=/"], &["route=audit"]).apply(&mut p);
        assert_eq!(values(&p), [10]);
        assert_eq!(
            tags(&["route=a"], &["thread=w"]).describe(),
            "--tag-focus 'route=a' --tag-ignore 'thread=w'"
        );
        assert!(parse_tag("route").unwrap_err().contains("KEY=REGEX"));
        assert!(parse_tag("=x").unwrap_err().contains("names no label"));
        assert!(parse_tag("route=").unwrap_err().contains("empty"));
    }

    #[test]
    fn describe_names_the_given_filters() {
        assert_eq!(
            filter(Some("a"), None, Some("b|c")).describe(),
            "--focus 'a' --hide 'b|c'"
        );
        assert_eq!(Filter::default().describe(), "");
    }
}
