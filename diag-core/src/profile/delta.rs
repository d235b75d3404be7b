//! Delta profiles: what changed between two profiles of one process, stack by stack, as Go's
//! `/debug/pprof/heap?seconds=N` serves it. For a heap, the `alloc_*` columns of the delta are
//! what was allocated in between (allocation rate by stack) and the `inuse_*` columns what was
//! retained (negative where memory was given back).

use std::collections::HashMap;

use super::load::sample_type_names;
use super::model::{Frame, Profile, Sample};
use crate::error::{Error, Result};
use crate::names::{AGE_LABEL, AGE_SECS_LABEL};

/// `after - before`, stack by stack (stacks and labels matched exactly: two profiles of one
/// process; the `age` and `age_secs` labels of live heap profiles are left out). Stacks whose every value is unchanged are left out. The result carries `after`'s
/// columns, period and time, covers the time between the two (`duration_nanos`), and names
/// the earlier one in its comments (`delta_from=<time_nanos>`, after a first comment saying
/// it is a delta).
///
/// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if the two do not
/// have the same columns in the same units and order.
pub fn delta(before: &Profile, after: &Profile) -> Result<Profile> {
    if before.sample_types != after.sample_types {
        return Err(Error::invalid(format!(
            "cannot take the difference of profiles with different columns: [{}] and [{}]",
            sample_type_names(before),
            sample_type_names(after)
        )));
    }
    // Ages say how old live bytes are at one moment: a difference has none. Samples are
    // matched without them (a stack's age buckets fold into one).
    type Key<'a> = (&'a [Frame], Vec<(String, String)>);
    let columns = after.sample_types.len();
    let mut sums: HashMap<Key<'_>, Vec<i64>> = HashMap::new();
    let mut order: Vec<Key<'_>> = Vec::new();
    for (sign, p) in [(1i64, after), (-1, before)] {
        for s in &p.samples {
            let labels = s
                .labels
                .iter()
                .filter(|(k, _)| k != AGE_LABEL && k != AGE_SECS_LABEL)
                .cloned()
                .collect();
            let key: Key<'_> = (&s.stack, labels);
            let values = sums.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                vec![0; columns]
            });
            // Wrapping: the sum is then exact whenever the result fits in an i64, however
            // large the terms (saturating would leave a profile less itself non-zero).
            for (sum, v) in values.iter_mut().zip(&s.values) {
                *sum = sum.wrapping_add(v.wrapping_mul(sign));
            }
        }
    }
    let samples = order
        .into_iter()
        .filter_map(|key| {
            let values = sums.remove(&key)?;
            values.iter().any(|&v| v != 0).then(|| Sample {
                stack: key.0.to_vec(),
                values,
                labels: key.1,
            })
        })
        .collect();
    let mut comments = vec![
        "delta profile: values are the change since delta_from; other counters are as of its \
         time"
            .to_owned(),
    ];
    comments.extend(after.comments.iter().cloned());
    comments.push(format!("delta_from={}", before.time_nanos));
    Ok(Profile {
        sample_types: after.sample_types.clone(),
        samples,
        period_type: after.period_type.clone(),
        period: after.period,
        time_nanos: after.time_nanos,
        duration_nanos: after.time_nanos.saturating_sub(before.time_nanos).max(0),
        default_sample_type: after.default_sample_type.clone(),
        comments,
        mappings: after.mappings.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::profile::testutil::{Rng, cpu_profile, heap_profile, random_profile};

    fn values_of<'a>(p: &'a Profile, leaf: &str) -> Option<&'a [i64]> {
        p.samples
            .iter()
            .find(|s| s.stack[0].function == leaf)
            .map(|s| s.values.as_slice())
    }

    #[test]
    fn stack_by_stack_with_new_and_gone_stacks() {
        let mut before = heap_profile(&[
            (&["myapp::leak", "myapp::main"], 1000),
            (&["myapp::steady", "myapp::main"], 500),
            (&["myapp::gone", "myapp::main"], 300),
        ]);
        let mut after = heap_profile(&[
            (&["myapp::leak", "myapp::main"], 4000),
            (&["myapp::steady", "myapp::main"], 500),
            (&["myapp::new", "myapp::main"], 64),
        ]);
        before.time_nanos = 1_000_000_000;
        after.time_nanos = 31_000_000_000;
        let d = delta(&before, &after).unwrap();
        assert_eq!(d.sample_types, after.sample_types);
        let inuse = d.sample_index("inuse_space").unwrap();
        assert_eq!(values_of(&d, "myapp::leak").unwrap()[inuse], 3000);
        assert_eq!(values_of(&d, "myapp::new").unwrap()[inuse], 64);
        assert_eq!(values_of(&d, "myapp::gone").unwrap()[inuse], -300);
        assert!(
            values_of(&d, "myapp::steady").is_none(),
            "unchanged stacks are left out"
        );
        assert_eq!(d.duration_nanos, 30_000_000_000);
        assert_eq!(d.time_nanos, after.time_nanos);
        assert_eq!(d.comment_value("delta_from"), Some("1000000000"));
    }

    #[test]
    fn a_profile_less_itself_is_empty() {
        let mut rng = Rng::new(11);
        for _ in 0..50 {
            let p = random_profile(&mut rng);
            let d = delta(&p, &p).unwrap();
            assert!(d.samples.is_empty(), "{:?}", d.samples);
        }
    }

    #[test]
    fn huge_values_cancel_exactly() {
        // Found by the fuzzer: two samples of one stack near i64::MAX.
        let mut p = heap_profile(&[(&["myapp::a"], 1), (&["myapp::a"], 1)]);
        for s in &mut p.samples {
            s.values[0] = i64::MAX - 3;
        }
        assert!(delta(&p, &p).unwrap().samples.is_empty());
    }

    #[test]
    fn labels_keep_stacks_apart() {
        let mut a = cpu_profile(&[(&["myapp::work"], 1), (&["myapp::work"], 1)]);
        a.samples[0].labels = vec![("thread".into(), "a".into())];
        a.samples[1].labels = vec![("thread".into(), "b".into())];
        let mut b = a.clone();
        b.samples[1].values = vec![5, 50_000_000];
        let d = delta(&a, &b).unwrap();
        assert_eq!(d.samples.len(), 1);
        assert_eq!(d.samples[0].labels, [("thread".to_owned(), "b".to_owned())]);
        assert_eq!(d.samples[0].values, [4, 40_000_000]);
    }

    #[test]
    fn different_columns_are_refused() {
        let heap = heap_profile(&[(&["myapp::a"], 1)]);
        let cpu = cpu_profile(&[(&["myapp::a"], 1)]);
        let e = delta(&heap, &cpu).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("different columns"), "{e}");
    }
}
