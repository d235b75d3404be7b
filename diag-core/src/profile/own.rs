//! diag's own samples: the work of diag's threads (`diag-http`, `diag-blocking`,
//! `diag-cpu`, ...), told apart by the `thread` label's name rule, [`DIAG_THREAD_PREFIX`].
//! The CLI leaves them out of `top`, flamegraphs and the report unless asked
//! (`--include-diag`), and says how much they were.

use super::by_label::label;
use super::model::{Profile, Sample};
use crate::names::THREAD_LABEL;

pub use crate::names::DIAG_THREAD_PREFIX;

/// True for a sample taken on one of diag's own threads (its `thread` label starts with
/// [`DIAG_THREAD_PREFIX`]).
pub fn is_diag_sample(s: &Sample) -> bool {
    label(s, THREAD_LABEL).is_some_and(|t| t.starts_with(DIAG_THREAD_PREFIX))
}

/// What [`remove_diag_samples`] took out of a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiagShare {
    /// Samples removed.
    pub samples: usize,
    /// Per sample type (the profile's columns): the value removed.
    pub removed: Vec<i64>,
    /// Per sample type: the profile's total before removing.
    pub total: Vec<i64>,
}

impl DiagShare {
    /// The removed share of column `i` of the total, in percent (0 for an empty column).
    pub fn percent(&self, i: usize) -> f64 {
        match (self.removed.get(i), self.total.get(i)) {
            (Some(&r), Some(&t)) if t > 0 => r as f64 * 100.0 / t as f64,
            _ => 0.0,
        }
    }
}

/// Removes the samples of diag's own threads from `p` and says how much they were.
pub fn remove_diag_samples(p: &mut Profile) -> DiagShare {
    let columns = p.sample_types.len();
    let mut share = DiagShare {
        samples: 0,
        removed: vec![0; columns],
        total: vec![0; columns],
    };
    p.samples.retain(|s| {
        let own = is_diag_sample(s);
        for (i, v) in s.values.iter().enumerate().take(columns) {
            share.total[i] = share.total[i].saturating_add(*v);
            if own {
                share.removed[i] = share.removed[i].saturating_add(*v);
            }
        }
        share.samples += usize::from(own);
        !own
    });
    share
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Frame, ValueType};

    #[test]
    fn samples_of_diag_threads_are_removed_and_counted() {
        let sample = |thread: Option<&str>, v: i64| Sample {
            stack: vec![Frame::named("f")],
            values: vec![v, v * 10],
            labels: thread
                .map(|t| vec![(THREAD_LABEL.to_owned(), t.to_owned())])
                .unwrap_or_default(),
        };
        let mut p = Profile {
            sample_types: vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            samples: vec![
                sample(Some("tokio-runtime-worker"), 6),
                sample(Some("diag-blocking"), 3),
                sample(Some("diag-http"), 1),
                sample(Some("my-diag-worker"), 5),
                sample(None, 5),
            ],
            ..Profile::default()
        };
        let share = remove_diag_samples(&mut p);
        assert_eq!(share.samples, 2);
        assert_eq!(share.removed, vec![4, 40]);
        assert_eq!(share.total, vec![20, 200]);
        assert!((share.percent(1) - 20.0).abs() < 1e-9);
        assert_eq!(p.samples.len(), 3);
        assert!(!p.samples.iter().any(is_diag_sample));
    }
}
