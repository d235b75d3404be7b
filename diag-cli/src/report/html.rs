//! Rendering a [`Report`] as one self-contained HTML page: CSS, script and SVG inline,
//! nothing fetched from anywhere.

use std::fmt::Write as _;

use diag_core::profile::sites::short_name;
use diag_core::profile::{HeapTrend, SiteTrend, SlopeUnit, Verdict};
use diag_core::wire::Tasks;

use super::Report;
use crate::stats::p_value;
use crate::tasks_view;
use crate::units;

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");
/// Rows of the growth table.
const GROWTH_ROWS: usize = 50;
/// Leak suspects, hottest functions, blocking sites and routes named in the verdict.
const VERDICT_ITEMS: usize = 3;
/// Sites with a sparkline.
const SPARKLINES: usize = 12;

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page.
pub(crate) fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>diag report: {src}</title><style>{CSS}</style></head><body>\n\
         <header><h1>diag report</h1><p class=\"src\">{src}{window}</p></header>\n",
        src = esc(&r.source),
        window = r
            .window_secs
            .map(|s| format!(" &middot; heap window {}", esc(&span(s))))
            .unwrap_or_default(),
    );
    for n in &r.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(n));
    }
    verdict(&mut h, r);
    growth_table(&mut h, r);
    super::labels::section(&mut h, &r.by_label);
    if let Some(svg) = &r.diff_svg {
        h.push_str("<section id=\"growth-flame\"><h2>Where the heap grew</h2>");
        h.push_str(
            "<p class=\"hint\">Differential flamegraph, callers below, allocation sites on top. \
             Runtime and dependency frames are collapsed into <i>[crate/crate: N frames]</i>; \
             the outlined path leads to the top site. Hover for before, after and delta.</p>",
        );
        if r.diff
            .as_ref()
            .is_some_and(|d| d.sites.iter().all(|s| s.delta_bytes <= 0))
        {
            h.push_str(
                "<p class=\"note\">Nothing grew between the first and the last snapshot.</p>",
            );
        }
        flame_box(&mut h, svg);
        h.push_str("</section>\n");
    }
    for (i, cpu) in r.cpu.iter().enumerate() {
        cpu_section(&mut h, i, cpu);
    }
    if let Some(t) = &r.trend {
        trend_section(&mut h, t);
    }
    if let Some(v) = &r.tasks {
        tasks_section(&mut h, v);
    }
    if let Some(s) = &r.routes {
        routes_section(&mut h, s);
    }
    let _ = write!(
        h,
        "<footer>Written by diag {} &middot; self-contained: opens offline</footer>\n\
         <script>{JS}</script></body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn span(secs: f64) -> String {
    units::span(std::time::Duration::from_secs_f64(secs.max(0.0)))
}

/// A trend site's rate, as `+1.2 MiB/s` (or per snapshot).
fn rate(slope: f64, per: SlopeUnit) -> String {
    let per = match per {
        SlopeUnit::Second => "s",
        SlopeUnit::Snapshot => "snapshot",
    };
    units::rate(slope.round() as i64, "bytes", per)
}

fn verdict(h: &mut String, r: &Report) {
    h.push_str("<section id=\"verdict\"><h2>Verdict</h2><ul class=\"verdict\">");
    // Leak suspects: growing sites of the trend, else the diff's top growth.
    let mut said = false;
    if let Some(t) = &r.trend {
        for s in t
            .sites
            .iter()
            .filter(|s| s.verdict == Verdict::Growing)
            .take(VERDICT_ITEMS)
        {
            let _ = write!(
                h,
                "<li class=\"bad\"><b>Leak suspect</b> <code>{}</code>: grew {} at {} \
                 (growing over {} snapshots, p {})</li>",
                esc(&short_name(&s.function)),
                esc(&units::signed(s.delta_bytes, "bytes")),
                esc(&rate(s.slope_bytes, t.slope_per)),
                s.bytes.len(),
                esc(&p_value(s.p_growing))
            );
            said = true;
        }
        if !said {
            let _ = write!(
                h,
                "<li class=\"good\">No site keeps growing over {} snapshots (p &lt; {}).</li>",
                t.snapshots.len(),
                t.alpha
            );
            said = true;
        }
    }
    if let Some(d) = &r.diff
        && r.trend.is_none()
    {
        for s in d
            .sites
            .iter()
            .filter(|s| s.delta_bytes > 0)
            .take(VERDICT_ITEMS)
        {
            let per = r
                .window_secs
                .map(|w| {
                    format!(
                        " at {}",
                        units::rate((s.delta_bytes as f64 / w) as i64, &d.unit, "s")
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                h,
                "<li class=\"warn\"><b>Grew</b> <code>{}</code>: {} ({} of the growth){} \
                 (two snapshots: no p-value; three or more give a trend)</li>",
                esc(&short_name(&s.function)),
                esc(&units::signed(s.delta_bytes, &d.unit)),
                esc(&units::percent(s.share)),
                esc(&per)
            );
            said = true;
        }
    }
    if !said {
        h.push_str("<li>No heap comparison (give two or more heap snapshots).</li>");
    }
    super::labels::verdict(h, &r.by_label);
    for cpu in &r.cpu {
        let hot: Vec<String> = super::hot_app_functions(&cpu.app_top)
            .iter()
            .take(VERDICT_ITEMS)
            .map(|(name, p)| format!("<code>{}</code> {}", esc(name), units::percent(*p)))
            .collect();
        if !hot.is_empty() {
            let _ = write!(
                h,
                "<li><b>Hottest application functions</b> (share of the CPU samples, with the \
                 runtime and library code they call): {}</li>",
                hot.join(", ")
            );
        } else if cpu.app_top.total > 0 {
            h.push_str(
                "<li>No CPU sample ran in the application's own code (as far as diag can \
                 tell its crates: a service of several crates names the others with \
                 <code>DIAG_APP_CRATES</code> or <code>--app-crates</code>).</li>",
            );
        }
    }
    if let Some(v) = &r.tasks {
        let sites = blocking_sites(v);
        if sites.is_empty() {
            h.push_str("<li class=\"good\">No blocking events recorded.</li>");
        } else {
            let list: Vec<String> = sites
                .iter()
                .take(VERDICT_ITEMS)
                .map(|(name, ms, site)| {
                    format!(
                        "<code>{}</code> in {} ({})",
                        esc(site),
                        esc(name),
                        units::millis(*ms)
                    )
                })
                .collect();
            let _ = write!(
                h,
                "<li class=\"bad\"><b>Blocking</b> the runtime: {}</li>",
                list.join(", ")
            );
        }
    }
    if let Some(s) = &r.routes {
        let mut by_p99: Vec<_> = s.routes.iter().filter(|r| r.p99_ms.is_some()).collect();
        by_p99.sort_by(|a, b| b.p99_ms.unwrap_or(0.0).total_cmp(&a.p99_ms.unwrap_or(0.0)));
        let slow: Vec<String> = by_p99
            .iter()
            .take(VERDICT_ITEMS)
            .map(|r| {
                format!(
                    "<code>{}</code> p99 {}",
                    esc(&r.route),
                    units::millis(r.p99_ms.unwrap_or(0.0))
                )
            })
            .collect();
        if !slow.is_empty() {
            let _ = write!(h, "<li><b>Slowest routes</b>: {}</li>", slow.join(", "));
        }
        let mut errs: Vec<_> = s.routes.iter().filter(|r| r.error_percent > 0.0).collect();
        errs.sort_by(|a, b| b.error_percent.total_cmp(&a.error_percent));
        let errs: Vec<String> = errs
            .iter()
            .take(VERDICT_ITEMS)
            .map(|r| {
                format!(
                    "<code>{}</code> {} 5xx",
                    esc(&r.route),
                    units::percent(r.error_percent)
                )
            })
            .collect();
        if !errs.is_empty() {
            let _ = write!(
                h,
                "<li class=\"bad\"><b>Errors</b>: {}</li>",
                errs.join(", ")
            );
        }
    }
    h.push_str("</ul></section>\n");
}

/// Blocking events as (name, duration ms, the innermost application frame), newest first.
pub(crate) fn blocking_sites(v: &Tasks) -> Vec<(String, f64, String)> {
    v.blocking_events
        .iter()
        .map(|e| {
            let site = e
                .stack
                .iter()
                .map(|f| f.split(" (").next().unwrap_or(f))
                .find(|f| !tasks_view::is_framework(f))
                .unwrap_or("(no application frame)");
            (e.name.clone(), e.duration_ms as f64, short_name(site))
        })
        .collect()
}

pub(crate) fn th(cols: &[&str]) -> String {
    let cells: Vec<String> = cols
        .iter()
        .map(|c| format!("<th title=\"click to sort\">{}</th>", esc(c)))
        .collect();
    format!("<thead><tr>{}</tr></thead>", cells.concat())
}

/// A table cell sorted by `v`.
pub(crate) fn num(v: f64, text: &str) -> String {
    format!("<td class=\"n\" data-v=\"{v}\">{}</td>", esc(text))
}

/// The ages column of a site: its verdict by the ages of its live bytes, with since when it
/// has been growing (`leak-like, growing since 01:38:31 UTC, +400.0 KiB/s`) or its window.
fn age_cell(a: &diag_core::profile::Ages, function: &str) -> String {
    let Some(s) = a.sites.iter().find(|s| s.site == function) else {
        return String::new();
    };
    let detail = crate::commands::ages::detail(s, a.time_unix_secs);
    if detail.is_empty() {
        s.verdict.as_str().to_owned()
    } else {
        format!("{}, {detail}", s.verdict.as_str())
    }
}

fn growth_table(h: &mut String, r: &Report) {
    let Some(d) = &r.diff else { return };
    let t = &d.totals;
    let _ = write!(
        h,
        "<section id=\"growth\"><h2>Growth by site</h2><p>{}: {} &rarr; {} ({}); {} site{} \
         changed. Click a column to sort.</p>",
        esc(&d.sample_type),
        esc(&units::value(t.before_bytes, &d.unit)),
        esc(&units::value(t.after_bytes, &d.unit)),
        esc(&units::signed(t.delta_bytes, &d.unit)),
        d.sites.len(),
        if d.sites.len() == 1 { "" } else { "s" }
    );
    let trend_of = |f: &str| -> Option<&SiteTrend> {
        r.trend
            .as_ref()
            .and_then(|t| t.sites.iter().find(|s| s.function == f))
    };
    let mut cols = vec!["site", "growth", "share", "before", "after", "objects"];
    if r.trend.is_some() {
        cols.extend(["trend", "rate", "p"]);
    }
    if r.ages.is_some() {
        cols.push("ages");
    }
    cols.push("where");
    let _ = write!(
        h,
        "<table class=\"sortable\" id=\"growth-table\">{}<tbody>",
        th(&cols)
    );
    for s in d.sites.iter().take(GROWTH_ROWS) {
        let _ = write!(
            h,
            "<tr><td class=\"fn\"><code>{}</code>{}</td>{}{}{}{}{}",
            esc(&short_name(&s.function)),
            if s.new {
                " <span class=\"tag\">new</span>"
            } else {
                ""
            },
            num(s.delta_bytes as f64, &units::signed(s.delta_bytes, &d.unit)),
            num(s.share, &units::percent(s.share)),
            num(
                s.before_bytes as f64,
                &units::value(s.before_bytes, &d.unit)
            ),
            num(s.after_bytes as f64, &units::value(s.after_bytes, &d.unit)),
            num(
                s.delta_objects as f64,
                &units::signed(s.delta_objects, "count")
            ),
        );
        if let Some(t) = &r.trend {
            match trend_of(&s.function) {
                Some(x) => {
                    let _ = write!(
                        h,
                        "<td class=\"v-{v}\">{v}</td>{}{}",
                        num(x.slope_bytes, &rate(x.slope_bytes, t.slope_per)),
                        num(x.p_growing, &p_value(x.p_growing)),
                        v = x.verdict.as_str()
                    );
                }
                None => h.push_str("<td></td><td></td><td></td>"),
            }
        }
        if let Some(a) = &r.ages {
            let _ = write!(h, "<td>{}</td>", esc(&age_cell(a, &s.function)));
        }
        let place = match (&s.file, s.line) {
            (Some(f), l) if l > 0 => format!("{}:{l}", units::short_file(f)),
            (Some(f), _) => units::short_file(f),
            _ => String::new(),
        };
        let _ = write!(h, "<td class=\"src\">{}</td></tr>", esc(&place));
    }
    h.push_str("</tbody></table>");
    if d.sites.len() > GROWTH_ROWS {
        let _ = write!(
            h,
            "<p class=\"hint\">{} more sites not shown.</p>",
            d.sites.len() - GROWTH_ROWS
        );
    }
    h.push_str("</section>\n");
}

fn flame_box(h: &mut String, svg: &str) {
    h.push_str(
        "<div class=\"flamebox\"><div class=\"tools\"><input type=\"search\" \
         placeholder=\"search functions (regex)\" aria-label=\"search\"> <button \
         type=\"button\" class=\"reset\">reset zoom</button> <span class=\"finfo\">hover a \
         frame; click to zoom</span></div><div class=\"scroll\">",
    );
    h.push_str(svg);
    h.push_str("</div></div>");
}

fn cpu_section(h: &mut String, i: usize, cpu: &super::CpuPart) {
    let _ = write!(
        h,
        "<section id=\"cpu-{i}\"><h2>CPU: where the time goes</h2><p class=\"src\">{}</p>",
        esc(&cpu.name)
    );
    let unit = cpu.top.sample_type.unit.as_str();
    let _ = write!(
        h,
        "<table class=\"sortable\">{}<tbody>",
        th(&["function", "flat", "flat %", "cum", "cum %"])
    );
    for e in &cpu.top.entries {
        let _ = write!(
            h,
            "<tr><td class=\"fn\"><code>{}</code></td>{}{}{}{}</tr>",
            esc(&e.short),
            num(e.flat as f64, &units::value(e.flat, unit)),
            num(e.flat_percent, &units::percent(e.flat_percent)),
            num(e.cum as f64, &units::value(e.cum, unit)),
            num(e.cum_percent, &units::percent(e.cum_percent)),
        );
    }
    h.push_str("</tbody></table>");
    flame_box(h, &cpu.svg);
    h.push_str("</section>\n");
}

/// A sparkline of `values`.
fn sparkline(values: &[i64], class: &str) -> String {
    let (w, ht) = (160.0, 28.0);
    let lo = values.iter().copied().min().unwrap_or(0) as f64;
    let hi = values.iter().copied().max().unwrap_or(0) as f64;
    let range = (hi - lo).max(1.0);
    let n = values.len().max(2) as f64 - 1.0;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            format!(
                "{:.1},{:.1}",
                2.0 + i as f64 * (w - 4.0) / n,
                ht - 2.0 - (v as f64 - lo) * (ht - 4.0) / range
            )
        })
        .collect();
    format!(
        "<svg class=\"spark {class}\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\">\
         <polyline points=\"{}\" fill=\"none\" stroke-width=\"1.8\"/></svg>",
        points.join(" ")
    )
}

fn trend_section(h: &mut String, t: &HeapTrend) {
    let _ = write!(
        h,
        "<section id=\"trend\"><h2>Trend over {} snapshots</h2><p class=\"hint\">growing: the \
         levels rise (Mann-Kendall) and the steps rise (sign test), one-sided p &lt; {}; rate: \
         Theil-Sen slope.</p><table class=\"sortable\">{}<tbody>",
        t.snapshots.len(),
        t.alpha,
        th(&["site", "trend", "series", "rate", "p", "change"])
    );
    for s in t.sites.iter().take(SPARKLINES) {
        let _ = write!(
            h,
            "<tr><td class=\"fn\"><code>{}</code></td><td class=\"v-{v}\">{v}</td><td>{}</td>{}{}{}</tr>",
            esc(&short_name(&s.function)),
            sparkline(&s.bytes, s.verdict.as_str()),
            num(s.slope_bytes, &rate(s.slope_bytes, t.slope_per)),
            num(s.p_growing, &p_value(s.p_growing)),
            num(s.delta_bytes as f64, &units::signed(s.delta_bytes, "bytes")),
            v = s.verdict.as_str()
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn tasks_section(h: &mut String, v: &Tasks) {
    h.push_str("<section id=\"blocking\"><h2>Runtime health and blocking events</h2>");
    let mut text = Vec::new();
    let _ = tasks_view::render(v, &mut text);
    let _ = writeln!(
        h,
        "<pre class=\"tasks\">{}</pre></section>",
        esc(&String::from_utf8_lossy(&text))
    );
}

fn routes_section(h: &mut String, s: &crate::scrape::Sample) {
    let _ = write!(
        h,
        "<section id=\"routes\"><h2>Routes</h2><p class=\"hint\">Over {} (from /metrics); \
         slowest p99 first.</p>",
        esc(&span(s.interval_seconds))
    );
    if s.routes.is_empty() {
        h.push_str("<p>No requests in the window.</p></section>\n");
        return;
    }
    let mut routes: Vec<_> = s.routes.iter().collect();
    routes.sort_by(|a, b| b.p99_ms.unwrap_or(0.0).total_cmp(&a.p99_ms.unwrap_or(0.0)));
    let _ = write!(
        h,
        "<table class=\"sortable\">{}<tbody>",
        th(&["route", "requests", "rps", "p50", "p95", "p99", "5xx %"])
    );
    let ms = |v: Option<f64>| match v {
        Some(x) => num(x, &units::millis(x)),
        None => "<td></td>".to_owned(),
    };
    for r in routes {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td>{}{}{}{}{}{}</tr>",
            esc(&r.route),
            num(r.requests, &format!("{:.0}", r.requests)),
            num(r.rps, &format!("{:.1}", r.rps)),
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            num(r.error_percent, &format!("{:.1}", r.error_percent)),
        );
    }
    h.push_str("</tbody></table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_sites_name_the_innermost_application_frame() {
        let v: Tasks = serde_json::from_value(serde_json::json!({"blocking_events": [
            {"name": "/sleep", "duration_ms": 303, "stack": [
                "clock_nanosleep", "std::thread::sleep (x.rs:1)",
                "app::slow_io (app.rs:3)", "app::handler::{{closure}} (app.rs:9)",
                "tokio::runtime::a"]},
            {"name": "worker", "duration_ms": 120, "stack": ["tokio::runtime::b"]}
        ]}))
        .unwrap();
        assert_eq!(
            blocking_sites(&v),
            [
                ("/sleep".to_owned(), 303.0, "app::slow_io".to_owned()),
                (
                    "worker".to_owned(),
                    120.0,
                    "(no application frame)".to_owned()
                )
            ]
        );
        assert!(blocking_sites(&Tasks::default()).is_empty());
    }

    #[test]
    fn text_is_escaped_and_sparklines_scale() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        let s = sparkline(&[0, 5, 10], "growing");
        assert!(s.contains("points=\"2.0,26.0 80.0,14.0 158.0,2.0\""), "{s}");
        // A flat series does not divide by zero.
        assert!(sparkline(&[7, 7], "steady").contains("2.0,26.0 158.0,26.0"));
    }
}
