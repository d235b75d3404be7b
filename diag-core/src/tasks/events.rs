//! Blocking events: the last [`MAX_EVENTS`] kept in a ring, and every event aggregated by
//! (name, stack) in a bounded table for counts by site and the `/debug/pprof/block` profile.
//! Stacks are kept as raw addresses and symbolized only when read (on the listener's thread).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::wire::{BlockingEvent, BlockingSite};

use crate::profile::{Frame, Profile, Sample, ValueType, sites};

/// Events kept in the ring.
pub(crate) const MAX_EVENTS: usize = 64;
/// Distinct (name, stack) pairs aggregated; past it, events are counted as dropped.
const MAX_STACKS: usize = 1024;

struct Event {
    name: Arc<str>,
    thread: Arc<str>,
    slot: usize,
    word: u64,
    duration_ns: u64,
    ongoing: bool,
    at_unix_ms: u64,
    frames: Arc<[usize]>,
}

#[derive(Default)]
struct Agg {
    count: u64,
    total_ns: u64,
}

#[derive(Default)]
struct State {
    ring: VecDeque<Event>,
    by_stack: HashMap<(Arc<str>, Arc<[usize]>), Agg>,
    total: u64,
    dropped: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(State::default))
}

/// Records a new blocking event (still ongoing: its duration grows until [`close`]).
pub(crate) fn record(
    name: Arc<str>,
    thread: Arc<str>,
    slot: usize,
    word: u64,
    duration_ns: u64,
    frames: Vec<usize>,
) {
    let at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let frames: Arc<[usize]> = frames.into();
    with(|s| {
        s.total += 1;
        let key = (name.clone(), frames.clone());
        if s.by_stack.len() < MAX_STACKS || s.by_stack.contains_key(&key) {
            let a = s.by_stack.entry(key).or_default();
            a.count += 1;
            a.total_ns += duration_ns;
        } else {
            s.dropped += 1;
        }
        if s.ring.len() == MAX_EVENTS {
            s.ring.pop_front();
        }
        s.ring.push_back(Event {
            name,
            thread,
            slot,
            word,
            duration_ns,
            ongoing: true,
            at_unix_ms,
            frames,
        });
    });
}

/// Updates the duration of the event for poll `word` on `slot`; `done` closes it.
pub(crate) fn update(slot: usize, word: u64, duration_ns: u64, done: bool) {
    with(|s| {
        let Some(e) = s
            .ring
            .iter_mut()
            .rev()
            .find(|e| e.slot == slot && e.word == word && e.ongoing)
        else {
            return;
        };
        let delta = duration_ns.saturating_sub(e.duration_ns);
        e.duration_ns = e.duration_ns.max(duration_ns);
        e.ongoing = !done;
        if let Some(a) = s.by_stack.get_mut(&(e.name.clone(), e.frames.clone())) {
            a.total_ns += delta;
        }
    });
}

/// The ongoing events as (slot, word) pairs.
pub(crate) fn ongoing() -> Vec<(usize, u64)> {
    with(|s| {
        s.ring
            .iter()
            .filter(|e| e.ongoing)
            .map(|e| (e.slot, e.word))
            .collect()
    })
}

/// Symbolizes a captured stack. The handler already starts it at the interrupted instruction;
/// if it could not (libgcc's stack without that address), the kernel's signal trampoline
/// (`__restore_rt`) may still head it below diag's own frames, and is dropped.
pub(crate) fn symbolize(frames: &[usize]) -> Vec<Frame> {
    symbolize_all(&[frames]).pop().unwrap_or_default()
}

/// [`symbolize`] for many stacks in one pass of the symbolizer (one opening of the images'
/// debug info, not one per stack: on a big binary each opening is a cold parse).
pub(crate) fn symbolize_all(stacks: &[&[usize]]) -> Vec<Vec<Frame>> {
    let mut all = crate::stack::symbolize_stacks(stacks);
    for out in &mut all {
        if out.first().is_some_and(Frame::is_signal_trampoline) {
            out.remove(0);
        }
    }
    all
}

/// The site of a blocking event: the innermost frame of the application's code (see
/// `profile::sites`; a function the application called from its async code, not the
/// dependency or std function that blocks inside it), with the marked name if there is none.
/// Returns the site's name and its text (with file and line).
pub(crate) fn user_site(stack: &[Frame]) -> Option<(String, String)> {
    sites::SiteRules::for_stacks([stack])
        .with_app_crates(crate::stack::process::app_crates())
        .site_text(stack)
}

/// Everything `/debug/tasks` shows about blocking.
#[derive(Debug)]
pub(crate) struct BlockingView {
    pub(crate) events: Vec<BlockingEvent>,
    pub(crate) sites: Vec<BlockingSite>,
    pub(crate) total: u64,
    pub(crate) dropped_stacks: u64,
    /// Set when the stacks are unsymbolized: the mappings and comments that name them.
    pub(crate) raw: Option<crate::wire::RawStacks>,
}

/// Newest first, symbolized.
pub(crate) fn view() -> BlockingView {
    let (raw_events, aggs, total, dropped) = with(|s| {
        let raw_events: Vec<_> = s
            .ring
            .iter()
            .rev()
            .map(|e| {
                (
                    e.name.clone(),
                    e.thread.clone(),
                    e.duration_ns,
                    e.ongoing,
                    e.at_unix_ms,
                    e.frames.clone(),
                )
            })
            .collect();
        let aggs: Vec<_> = s
            .by_stack
            .iter()
            .map(|((_, f), a)| (f.clone(), a.count, a.total_ns))
            .collect();
        (raw_events, aggs, s.total, s.dropped)
    });
    // Every stack named in one pass.
    let stacks: Vec<&[usize]> = raw_events
        .iter()
        .map(|r| &r.5[..])
        .chain(aggs.iter().map(|a| &a.0[..]))
        .collect();
    let mut named = symbolize_all(&stacks).into_iter();
    let raw = crate::stack::resolve::naming() == crate::stack::resolve::Naming::Raw;
    let events = raw_events
        .into_iter()
        .zip(named.by_ref())
        .map(
            |((name, thread, ns, ongoing, at, _), stack)| BlockingEvent {
                name: name.to_string(),
                thread: thread.to_string(),
                duration_ms: ns / 1_000_000,
                duration_ns: ns,
                ongoing,
                at_unix_ms: at,
                // Addresses name no site: the client names the stack and finds it.
                site: if raw {
                    None
                } else {
                    user_site(&stack).map(|(_, text)| text)
                },
                stack: stack.iter().map(Frame::text).collect(),
            },
        )
        .collect();
    // By site; with unsymbolized stacks by stack, each carried for the client to name.
    let mut by_site: HashMap<(String, Vec<String>), (u64, u64)> = HashMap::new();
    for ((_, count, ns), stack) in aggs.into_iter().zip(named) {
        let key = if raw {
            let texts: Vec<String> = stack.iter().map(Frame::text).collect();
            let site = texts
                .first()
                .cloned()
                .unwrap_or_else(|| sites::UNKNOWN_SITE.to_owned());
            (site, texts)
        } else {
            let site = user_site(&stack)
                .map(|(name, _)| name)
                .unwrap_or_else(|| sites::UNKNOWN_SITE.to_owned());
            (site, Vec::new())
        };
        let e = by_site.entry(key).or_default();
        e.0 += count;
        e.1 += ns;
    }
    let mut sites: Vec<BlockingSite> = by_site
        .into_iter()
        .map(|((site, stack), (count, ns))| BlockingSite {
            site,
            count,
            total_ms: ns / 1_000_000,
            stack,
        })
        .collect();
    sites.sort_by(|a, b| b.total_ms.cmp(&a.total_ms).then(b.count.cmp(&a.count)));
    BlockingView {
        events,
        sites,
        total,
        dropped_stacks: dropped,
        raw: raw.then(raw_stacks),
    }
}

/// What naming the view's unsymbolized stacks elsewhere takes: the loaded images and the
/// comments the block profile of the same stacks carries.
fn raw_stacks() -> crate::wire::RawStacks {
    crate::wire::RawStacks {
        mappings: crate::stack::process::mappings()
            .into_iter()
            .map(|m| crate::wire::RawMapping {
                start: m.start,
                limit: m.limit,
                offset: m.offset,
                file: m.file,
                build_id: m.build_id,
            })
            .collect(),
        comments: crate::stack::resolve::raw_comment(true),
    }
}

/// All events so far as a pprof-shaped profile: `contentions/count` and `delay/nanoseconds`
/// (time blocked) per (name, stack), labelled with the route or task name.
pub(crate) fn block_profile() -> Profile {
    let aggs: Vec<_> = with(|s| {
        s.by_stack
            .iter()
            .map(|((n, f), a)| (n.clone(), f.clone(), a.count, a.total_ns))
            .collect()
    });
    let stacks: Vec<&[usize]> = aggs.iter().map(|a| &a.1[..]).collect();
    let named = symbolize_all(&stacks);
    let samples = aggs
        .into_iter()
        .zip(named)
        .map(|((name, _, count, ns), stack)| Sample {
            stack,
            values: vec![count as i64, ns.min(i64::MAX as u64) as i64],
            labels: vec![("task".to_owned(), name.to_string())],
        })
        .collect();
    Profile {
        sample_types: vec![
            ValueType::new("contentions", "count"),
            ValueType::new("delay", "nanoseconds"),
        ],
        samples,
        period_type: Some(ValueType::new("contentions", "count")),
        mappings: crate::stack::process::mappings(),
        period: 1,
        time_nanos: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0),
        duration_nanos: 0,
        default_sample_type: Some("delay".to_owned()),
        comments: std::iter::once(format!(
            "blocking polls longer than {} ms",
            super::slots::THRESHOLD_NS.load(std::sync::atomic::Ordering::Relaxed) / 1_000_000
        ))
        .chain(crate::stack::resolve::raw_comment(true))
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_durations_update() {
        for i in 0..(MAX_EVENTS + 5) {
            record("r".into(), "t".into(), 999, i as u64, 100, vec![]);
        }
        update(999, (MAX_EVENTS + 4) as u64, 250, true);
        let v = view();
        assert_eq!(v.events.len(), MAX_EVENTS);
        assert_eq!(v.events[0].duration_ns, 250);
        assert!(!v.events[0].ongoing);
        assert!(v.events[1].ongoing);
        assert_eq!(v.total, (MAX_EVENTS + 5) as u64);
        let p = block_profile();
        assert_eq!(p.total(0), (MAX_EVENTS + 5) as i64);
        assert_eq!(p.total(1), (100 * (MAX_EVENTS + 5) + 150) as i64);
    }
}
