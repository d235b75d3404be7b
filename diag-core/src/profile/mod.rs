//! The profile model and everything computed from it: pprof encode/decode, dhat import, diffs,
//! delta profiles, leak trends, top lists, folded stacks and flamegraphs. Pure functions over readers and
//! writers; used by the service (to serve snapshots) and by the `diag` CLI.

pub mod ages;
mod by_label;
mod delta;
pub mod dhat;
mod diff;
mod flamegraph;
mod flamesvg;
mod flametree;
mod folded;
pub mod go_text;
mod load;
mod model;
mod own;
pub mod pprof_codec;
pub mod proto;
pub mod sites;
#[cfg(test)]
mod testutil;
mod top;
mod trend;

pub use ages::{
    AGE_BUCKETS, AGE_LABEL, AGE_SECS_LABEL, AgeVerdict, Ages, AgesOptions, SiteAges,
    UPTIME_COMMENT, age_bucket, ages,
};
pub use by_label::{
    DiffByLabel, GroupDiff, GroupTrend, NO_LABEL_VALUE, TrendByLabel, diff_by_label, label,
    label_keys, label_rooted, require_label, split_by_label, trend_by_label,
};
pub use delta::delta;
pub use diff::{DEFAULT_DIFF_SAMPLE_TYPE, DiffOptions, DiffTotals, HeapDiff, SiteDelta, diff};
pub use flamegraph::{DEFAULT_MIN_WIDTH, FlameOptions, diff_flamegraph, diff_tree, flamegraph};
pub use flamesvg::SvgOptions;
pub use flametree::{FlameNode, FlameTree};
pub use folded::{folded, folded_map, write_folded};
pub use load::{load, sample_type_names, select_sample};
pub use model::{
    Frame, Mapping, Profile, RAW_DROP_TOP_MACHINERY, RAW_STACKS_COMMENT, RAW_WHOLE, Sample,
    ValueType, heap_sample_types,
};
pub use own::{DIAG_THREAD_PREFIX, DiagShare, is_diag_sample, remove_diag_samples};
pub use top::{Attribution, Top, TopEntry, TopOptions, top};
pub use trend::{
    DEFAULT_TREND_ALPHA, HeapTrend, MAX_TREND_SNAPSHOTS, MIN_TREND_SNAPSHOTS, SeriesClassifier,
    SeriesTrend, SiteTrend, SlopeUnit, SnapshotPoint, TrendOptions, Verdict, thin, trend,
};
