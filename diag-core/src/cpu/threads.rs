//! Thread names in CPU profiles: the `thread` label, and rooting stacks at their thread so
//! flamegraphs split by thread.

use crate::names::THREAD_LABEL;
use crate::profile::{Frame, Profile};

/// A copy of `profile` in which every sample's stack ends (outermost) with a frame named after
/// its `thread` label, so folded stacks and flamegraphs split by thread. Samples without the
/// label are left as they are; a profile without any label comes back unchanged.
pub fn thread_rooted(profile: &Profile) -> Profile {
    let mut p = profile.clone();
    for s in &mut p.samples {
        if let Some((_, name)) = s.labels.iter().find(|(k, _)| k == THREAD_LABEL) {
            s.stack.push(Frame::named(format!("[thread {name}]")));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Sample, ValueType, folded};

    #[test]
    fn thread_becomes_the_root_frame() {
        let sample = |thread: Option<&str>, leaf: &str| Sample {
            stack: vec![Frame::named(leaf), Frame::named("main")],
            values: vec![1],
            labels: thread
                .map(|t| vec![(THREAD_LABEL.to_owned(), t.to_owned())])
                .unwrap_or_default(),
        };
        let p = Profile {
            sample_types: vec![ValueType::new("samples", "count")],
            samples: vec![
                sample(Some("tokio-runtime-worker"), "spin"),
                sample(Some("worker-2"), "spin"),
                sample(None, "idle"),
            ],
            ..Profile::default()
        };
        let lines = folded(&thread_rooted(&p), None).unwrap();
        assert_eq!(
            lines,
            [
                "[thread tokio-runtime-worker];main;spin 1",
                "[thread worker-2];main;spin 1",
                "main;idle 1",
            ]
        );
        // The original is untouched.
        assert_eq!(p.samples[0].stack.len(), 2);
    }
}
