//! The leak alarm's metrics: `diag_leak_suspects`, `diag_leak_growth_bytes_per_second{site,
//! route}` and `diag_leak_checks_total`, read from [`crate::heap::leaks`] at scrape time.
//!
//! The growth family has one series per site and route (its suspect stacks summed), at most
//! [`MAX_LEAK_SERIES`]: the fastest ones; the others are summed into one series whose labels are both
//! [`OVERFLOW`](crate::names::OVERFLOW), so the label set stays bounded however many stacks
//! grow.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::names::OVERFLOW;
use crate::wire::LeakSuspect;

/// Most `diag_leak_growth_bytes_per_second` series; more suspects are summed into one
/// `(other)` series.
pub const MAX_LEAK_SERIES: usize = 20;

/// The labels of one growth series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LeakLabels {
    pub(crate) site: String,
    pub(crate) route: String,
}

/// The growth series for `suspects` (fastest first): one per site and route, the rates of
/// that site's suspect stacks in that route summed (two stacks often share a site: one
/// function reached from two callers, or every frame unnamed in a stripped build, and two
/// series with one label set are one series to Prometheus, which keeps the first and counts
/// the rest as duplicates); the fastest [`MAX_LEAK_SERIES`] as they are, the rest summed into
/// one series labelled [`OVERFLOW`]. A suspect's `route` is its route or task label, empty if
/// it has none.
pub(crate) fn growth_series(suspects: &[LeakSuspect]) -> Vec<(LeakLabels, f64)> {
    let mut out: Vec<(LeakLabels, f64)> = Vec::new();
    for s in suspects {
        let labels = LeakLabels {
            site: s.short.clone(),
            route: crate::heap::poll_label(s).unwrap_or("").to_owned(),
        };
        match out.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, rate)) => *rate += s.rate_bytes_per_sec,
            None => out.push((labels, s.rate_bytes_per_sec)),
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    if out.len() > MAX_LEAK_SERIES {
        let rest: f64 = out.drain(MAX_LEAK_SERIES..).map(|(_, rate)| rate).sum();
        out.push((
            LeakLabels {
                site: OVERFLOW.to_owned(),
                route: OVERFLOW.to_owned(),
            },
            rest,
        ));
    }
    out
}

#[derive(Debug)]
pub(crate) struct LeakCollector;

impl Collector for LeakCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let _ignore = crate::alloc_state::IgnoreAllocs::new();
        let leaks = crate::heap::leaks();
        enc.encode_descriptor(
            "diag_leak_suspects",
            "Stacks whose in-use bytes grow steadily over the heap history (trend test at p < DIAG_LEAK_ALPHA, at least DIAG_LEAK_MIN_RATE); see GET /debug/leaks",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(leaks.suspects.len() as f64))?;
        {
            let mut family = enc.encode_descriptor(
                "diag_leak_growth_bytes_per_second",
                "Growth rate of each leak suspect (Theil-Sen slope over the heap history), by site and route or task; past 20 suspects the rest are summed under (other)",
                None,
                MetricType::Gauge,
            )?;
            for (labels, v) in growth_series(&leaks.suspects) {
                family.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        enc.encode_descriptor(
            "diag_leak_checks",
            "Leak checks run (one per heap history point once three are held)",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, u64, f64>(&leaks.checks, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suspect(i: usize, route: Option<&str>) -> LeakSuspect {
        LeakSuspect {
            stack_id: i as u32,
            short: format!("myapp::leak{i}"),
            rate_bytes_per_sec: 100.0 - i as f64,
            labels: route
                .map(|r| [("route".to_owned(), r.to_owned())].into())
                .unwrap_or_default(),
            ..LeakSuspect::default()
        }
    }

    #[test]
    fn growth_series_are_capped_with_one_overflow() {
        let few = [suspect(0, Some("/users/{id}")), suspect(1, None)];
        let g = growth_series(&few);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0.site, "myapp::leak0");
        assert_eq!(g[0].0.route, "/users/{id}");
        assert_eq!(g[1].0.route, "");
        let many: Vec<LeakSuspect> = (0..25).map(|i| suspect(i, None)).collect();
        let g = growth_series(&many);
        assert_eq!(g.len(), MAX_LEAK_SERIES + 1);
        let last = g.last().unwrap();
        assert_eq!(
            (last.0.site.as_str(), last.0.route.as_str()),
            (OVERFLOW, OVERFLOW)
        );
        assert_eq!(last.1, (20..25).map(|i| 100.0 - i as f64).sum::<f64>());
        // Two stacks of one site in one route are one series, their rates summed; in another
        // route, a series of its own.
        let mut same = [
            suspect(0, Some("/a")),
            suspect(1, Some("/a")),
            suspect(2, Some("/b")),
        ];
        for s in &mut same {
            s.short = "myapp::leak".to_owned();
        }
        let g = growth_series(&same);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!((g[0].0.route.as_str(), g[0].1), ("/a", 100.0 + 99.0));
        assert_eq!((g[1].0.route.as_str(), g[1].1), ("/b", 98.0));
        let text = crate::metrics::render();
        assert!(text.contains("# TYPE diag_leak_suspects gauge"), "{text}");
        assert!(text.contains("diag_leak_checks_total"), "{text}");
    }
}
