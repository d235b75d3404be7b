//! The heap capture's metrics (`DIAG_CAPTURE_DIR`, see [`crate::heap::set_capture`]):
//! `diag_captures_total{reason}`, `diag_capture_failures_total` and
//! `diag_capture_skipped_total{reason}`, read from [`crate::heap::capture_stats`] at scrape
//! time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// The `reason` label: `suspect` or `memory_limit`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug)]
pub(crate) struct CaptureCollector;

impl Collector for CaptureCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = crate::heap::capture_stats();
        {
            let mut family = enc.encode_descriptor(
                "diag_captures",
                "Heap captures written to DIAG_CAPTURE_DIR, by reason (suspect: a site became a leak suspect; memory_limit: usage reached DIAG_CAPTURE_AT_PERCENT of the limit)",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in [("suspect", s.suspect), ("memory_limit", s.memory_limit)] {
                family
                    .encode_family(&ReasonLabel { reason })?
                    .encode_counter::<NoLabelSet, u64, f64>(&n, None)?;
            }
        }
        enc.encode_descriptor(
            "diag_capture_failures",
            "Heap captures that could not be written (missing or read-only directory, full disk); each is a warning event, target diag",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, u64, f64>(&s.failures, None)?;
        let mut family = enc.encode_descriptor(
            "diag_capture_skipped",
            "Reasons to capture that came within 10 minutes of the last capture, by reason: counted, not written",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("suspect", s.skipped_suspect),
            ("memory_limit", s.skipped_memory_limit),
        ] {
            family
                .encode_family(&ReasonLabel { reason })?
                .encode_counter::<NoLabelSet, u64, f64>(&n, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_capture_counters_are_exposed() {
        let text = crate::metrics::render();
        for line in [
            "# TYPE diag_captures_total counter",
            "diag_captures_total{reason=\"memory_limit\"} 0",
            "diag_capture_failures_total 0",
            "diag_capture_skipped_total{reason=\"suspect\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
