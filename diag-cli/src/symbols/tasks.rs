//! Naming a `/debug/tasks` answer whose blocking stacks are addresses (the service runs with
//! `DIAG_SYMBOLIZE=off` or was asked `?symbolize=0`): its stacks go through the same naming
//! as a raw profile's ([`super::name`]), then each event's site and the counts by site are
//! found with the rules the service uses when it names them itself
//! (`SiteRules::site_text`).

use std::collections::HashMap;

use anyhow::Result;
use diag_core::profile::sites::{SiteRules, UNKNOWN_SITE};
use diag_core::profile::{Frame, Mapping, Profile, Sample, ValueType};
use diag_core::wire::{BlockingSite, Tasks};

/// Names `tasks`' stacks in place if the service left them unsymbolized (`raw` set), and
/// clears `raw`. `what` names the source in messages. An error when nothing could be named
/// (as for a raw profile).
pub(crate) fn name_tasks(tasks: &mut Tasks, what: &str) -> Result<()> {
    let Some(raw) = tasks.raw.take() else {
        return Ok(());
    };
    let stacks = tasks
        .blocking_events
        .iter()
        .map(|e| &e.stack)
        .chain(tasks.blocking_sites.iter().map(|s| &s.stack));
    let mut profile = Profile {
        sample_types: vec![ValueType::new("events", "count")],
        samples: stacks
            .map(|stack| Sample {
                stack: stack.iter().map(|f| parse_frame(f)).collect(),
                values: vec![1],
                labels: Vec::new(),
            })
            .collect(),
        mappings: raw
            .mappings
            .iter()
            .map(|m| Mapping {
                start: m.start,
                limit: m.limit,
                offset: m.offset,
                file: m.file.clone(),
                build_id: m.build_id.clone(),
            })
            .collect(),
        comments: raw.comments.clone(),
        ..Profile::default()
    };
    super::name(&mut profile, what)?;
    let rules = SiteRules::for_profile(&profile);
    let mut named = profile.samples.into_iter().map(|mut s| {
        // Dropped as the service drops it when it names the stack itself.
        if s.stack.first().is_some_and(Frame::is_signal_trampoline) {
            s.stack.remove(0);
        }
        s.stack
    });
    for (event, stack) in tasks.blocking_events.iter_mut().zip(named.by_ref()) {
        event.site = rules.site_text(&stack).map(|(_, text)| text);
        event.stack = stack.iter().map(Frame::text).collect();
    }
    // One entry per stack came in; one per site goes out, as a naming service counts them.
    let mut by_site: HashMap<String, (u64, u64)> = HashMap::new();
    for (site, stack) in tasks.blocking_sites.iter().zip(named) {
        let name = rules
            .site_text(&stack)
            .map(|(name, _)| name)
            .unwrap_or_else(|| UNKNOWN_SITE.to_owned());
        let e = by_site.entry(name).or_default();
        e.0 += site.count;
        e.1 += site.total_ms;
    }
    let mut sites: Vec<BlockingSite> = by_site
        .into_iter()
        .map(|(name, (count, total_ms))| {
            let mut s = BlockingSite::default();
            s.site = name;
            s.count = count;
            s.total_ms = total_ms;
            s
        })
        .collect();
    sites.sort_by(|a, b| b.total_ms.cmp(&a.total_ms).then(b.count.cmp(&a.count)));
    tasks.blocking_sites = sites;
    Ok(())
}

/// A frame of the answer: `0x...` is an address to name; anything else is kept as named.
fn parse_frame(text: &str) -> Frame {
    match text
        .strip_prefix("0x")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
    {
        Some(address) => Frame::raw(address),
        None => Frame::named(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_as_addresses_or_names() {
        assert!(parse_frame("0x55d0a1b2c3").is_raw());
        assert_eq!(parse_frame("0x55d0a1b2c3").address, 0x55d0a1b2c3);
        let named = parse_frame("app::f (src/a.rs:3)");
        assert!(!named.is_raw());
        assert_eq!(named.function, "app::f (src/a.rs:3)");
        assert!(!parse_frame("0xnothex").is_raw());
    }

    #[test]
    fn an_answer_without_raw_is_left_alone() {
        let mut t: Tasks = serde_json::from_value(serde_json::json!({
            "blocking_events": [{"name": "/a", "stack": ["app::f (a.rs:1)"], "site": "app::f (a.rs:1)"}],
        }))
        .unwrap();
        let before = t.clone();
        name_tasks(&mut t, "test").unwrap();
        assert_eq!(t, before);
    }
}
