//! The page's growth by label: when the heap snapshots carry `route` or `task` labels (diag's
//! layer and `diag_core::spawn`), which endpoint or task holds the growth, with its top site.

use std::fmt::Write as _;

use diag_core::profile::sites::short_name;
use diag_core::profile::{self, DiffByLabel, DiffOptions, NO_LABEL_VALUE, Profile};

use super::html::{esc, num, th};
use crate::units;

/// The labels the page groups the growth by, when the snapshots carry them.
pub(crate) const KEYS: [&str; 2] = [diag_core::cpu::ROUTE_LABEL, diag_core::cpu::TASK_LABEL];

/// The growth from `first` to `last` by each of [`KEYS`] the snapshots carry.
pub(crate) fn growth_by_label(
    first: &Profile,
    last: &Profile,
    opts: &DiffOptions,
) -> anyhow::Result<Vec<DiffByLabel>> {
    let carried = profile::label_keys([first, last]);
    let mut out = Vec::new();
    for key in KEYS {
        if carried.contains(key) {
            out.push(profile::diff_by_label(first, last, key, opts)?);
        }
    }
    Ok(out)
}

fn value(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or(NO_LABEL_VALUE)
}

/// The verdict's line: the route or task holding the most growth, if one holds any.
pub(crate) fn verdict(h: &mut String, by: &[DiffByLabel]) {
    for d in by {
        let Some(g) = d
            .groups
            .iter()
            .find(|g| g.value.is_some() && g.delta_bytes > 0)
        else {
            continue;
        };
        let _ = write!(
            h,
            "<li class=\"warn\"><b>Most growth in {} <code>{}</code></b>: {} ({} of the \
             growth){}</li>",
            esc(&d.by),
            esc(value(&g.value)),
            esc(&units::signed(g.delta_bytes, &d.unit)),
            esc(&units::percent(g.share)),
            g.sites
                .first()
                .map(|s| format!(", at <code>{}</code>", esc(&short_name(&s.function))))
                .unwrap_or_default()
        );
    }
}

/// The section: one sortable table per label.
pub(crate) fn section(h: &mut String, by: &[DiffByLabel]) {
    if by.is_empty() {
        return;
    }
    h.push_str(
        "<section id=\"by-label\"><h2>Growth by route and task</h2><p class=\"hint\">From the \
         pprof labels of the heap samples: <i>route</i> inside a request under diag's layer, \
         <i>task</i> inside <code>diag_core::spawn(name, ..)</code>; (none) is everything \
         else. Click a column to sort.</p>",
    );
    for d in by {
        let _ = write!(
            h,
            "<table class=\"sortable\" id=\"by-{}\">{}<tbody>",
            esc(&d.by),
            th(&[
                &d.by, "growth", "share", "before", "after", "objects", "top site"
            ])
        );
        for g in &d.groups {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td>{}{}{}{}{}<td class=\"fn\"><code>{}</code></td></tr>",
                esc(value(&g.value)),
                num(g.delta_bytes as f64, &units::signed(g.delta_bytes, &d.unit)),
                num(g.share, &units::percent(g.share)),
                num(
                    g.before_bytes as f64,
                    &units::value(g.before_bytes, &d.unit)
                ),
                num(g.after_bytes as f64, &units::value(g.after_bytes, &d.unit)),
                num(
                    g.delta_objects as f64,
                    &units::signed(g.delta_objects, "count")
                ),
                esc(&g
                    .sites
                    .first()
                    .map(|s| short_name(&s.function))
                    .unwrap_or_default())
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>\n");
}
