//! The profile model shared by the service side and the CLI.
//!
//! A [`Profile`] is a symbolized, self-contained list of stacks with values, the same shape as
//! pprof's `profile.proto` but with strings in place and frames listed innermost first. Every
//! input format (pprof from diag or Go, gzip'd or not, dhat-rs JSON) decodes into it, and every
//! output (pprof, folded stacks, flamegraphs, diffs, top lists) is computed from it.

use serde::Serialize;

/// One value column of a profile, e.g. `inuse_space` measured in `bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ValueType {
    /// What is measured: `alloc_objects`, `inuse_space`, `samples`, `cpu`, ...
    pub ty: String,
    /// Its unit: `count`, `bytes`, `nanoseconds`, ...
    pub unit: String,
}

impl ValueType {
    /// A value type from its two names.
    pub fn new(ty: impl Into<String>, unit: impl Into<String>) -> Self {
        Self {
            ty: ty.into(),
            unit: unit.into(),
        }
    }
}

/// Go's four heap-profile columns, in Go's order: `alloc_objects/count`, `alloc_space/bytes`,
/// `inuse_objects/count`, `inuse_space/bytes`.
pub fn heap_sample_types() -> Vec<ValueType> {
    vec![
        ValueType::new("alloc_objects", "count"),
        ValueType::new("alloc_space", "bytes"),
        ValueType::new("inuse_objects", "count"),
        ValueType::new("inuse_space", "bytes"),
    ]
}

/// One symbolized frame of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Frame {
    /// Demangled function name without the hash suffix (`myapp::handlers::leak`).
    pub function: String,
    /// Source file, when known.
    pub file: Option<String>,
    /// Source line, when known (0 = unknown).
    pub line: u32,
    /// Instruction address, when known (0 = unknown). Frames inlined into one another share it.
    pub address: u64,
}

impl Frame {
    /// A frame that only has a name.
    pub fn named(function: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            file: None,
            line: 0,
            address: 0,
        }
    }

    /// An unsymbolized frame: only its address is known, and it is named by it (`0x55d0...`),
    /// as pprof names a location without lines. Encoded as such a location (its mapping says
    /// it is not symbolized), so `go tool pprof BINARY` or `diag --binary BINARY` can name it.
    pub fn raw(address: u64) -> Self {
        Self {
            function: format!("{address:#x}"),
            file: None,
            line: 0,
            address,
        }
    }

    /// True for the kernel's signal trampoline (`__restore_rt`, `sigreturn`): it heads a
    /// stack captured in a signal handler that could not start it at the interrupted
    /// instruction, and is no part of what the thread was doing.
    pub fn is_signal_trampoline(&self) -> bool {
        self.function.contains("__restore_rt") || self.function.contains("sigreturn")
    }

    /// True for a frame of [`Frame::raw`]'s form: an address not yet named.
    pub fn is_raw(&self) -> bool {
        self.address != 0
            && self.file.is_none()
            && self.line == 0
            && self
                .function
                .strip_prefix("0x")
                .is_some_and(|hex| u64::from_str_radix(hex, 16).is_ok_and(|a| a == self.address))
    }

    /// The frame as one line: `function (file:line)`, `function (file)` or `function`.
    pub fn text(&self) -> String {
        match &self.file {
            Some(file) if self.line > 0 => format!("{} ({file}:{})", self.function, self.line),
            Some(file) => format!("{} ({file})", self.function),
            None => self.function.clone(),
        }
    }
}

/// The comment key (`raw_stacks=...`) of a profile whose stacks are unsymbolized addresses
/// (`?symbolize=0`, `DIAG_SYMBOLIZE=off`): what a symbolizer elsewhere must do once it names
/// them, [`RAW_DROP_TOP_MACHINERY`] or [`RAW_WHOLE`].
pub const RAW_STACKS_COMMENT: &str = "raw_stacks";
/// Heap and blocking stacks: the profiler's own frames at the top (the allocator wrapper, the
/// signal handler) are dropped once named, as the service does when it names them itself.
pub const RAW_DROP_TOP_MACHINERY: &str = "drop_top_machinery";
/// CPU stacks: every frame stays (diag's frames there are CPU that diag's threads used).
pub const RAW_WHOLE: &str = "whole";

/// One stack with its values, one value per [`Profile::sample_types`] entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Frames, innermost (the allocation or on-CPU instruction) first.
    pub stack: Vec<Frame>,
    /// Values, in the order of [`Profile::sample_types`].
    pub values: Vec<i64>,
    /// String labels (`thread` = `tokio-runtime-worker`, ...).
    pub labels: Vec<(String, String)>,
}

/// An executable or shared library loaded at an address range of the profiled process, so
/// tools that resolve addresses (`go tool pprof`) know which binary each frame came from. The
/// main binary comes first, as pprof expects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// First address of the range.
    pub start: u64,
    /// One past its last address.
    pub limit: u64,
    /// Offset in the file of `start`.
    pub offset: u64,
    /// Path of the file mapped there.
    pub file: String,
    /// The file's build id (hex), when known.
    pub build_id: String,
}

impl Mapping {
    /// True if `address` is in this range.
    pub fn contains(&self, address: u64) -> bool {
        (self.start..self.limit).contains(&address)
    }
}

/// A symbolized profile: heap, CPU or blocking time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The value columns.
    pub sample_types: Vec<ValueType>,
    /// The stacks.
    pub samples: Vec<Sample>,
    /// What one period of sampling measures (`space/bytes` for heap, `cpu/nanoseconds`).
    pub period_type: Option<ValueType>,
    /// The sampling period: mean bytes between heap samples, nanoseconds between CPU samples.
    pub period: i64,
    /// When the profile was taken, nanoseconds since the Unix epoch.
    pub time_nanos: i64,
    /// How long the profile covers, in nanoseconds (0 for a point-in-time heap snapshot).
    pub duration_nanos: i64,
    /// The column tools show by default (`inuse_space` for heap).
    pub default_sample_type: Option<String>,
    /// Free-form comments (`pid=123`, `dropped_samples=0`, ...).
    pub comments: Vec<String>,
    /// The binaries the frames' addresses fall in (main binary first); may be empty.
    pub mappings: Vec<Mapping>,
}

impl Profile {
    /// The index of the column named `ty` (e.g. `inuse_space`), if present.
    pub fn sample_index(&self, ty: &str) -> Option<usize> {
        self.sample_types.iter().position(|t| t.ty == ty)
    }

    /// The index of the default column: [`Profile::default_sample_type`] if set and present,
    /// else the last column (pprof's rule).
    pub fn default_index(&self) -> Option<usize> {
        self.default_sample_type
            .as_deref()
            .and_then(|t| self.sample_index(t))
            .or_else(|| self.sample_types.len().checked_sub(1))
    }

    /// The sum of column `index` over all samples.
    pub fn total(&self, index: usize) -> i64 {
        self.samples
            .iter()
            .map(|s| s.values.get(index).copied().unwrap_or(0))
            .fold(0i64, i64::saturating_add)
    }

    /// The value of `key` in a `key=value` comment, if any.
    pub fn comment_value(&self, key: &str) -> Option<&str> {
        self.comments.iter().find_map(|c| {
            c.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim)
        })
    }
}
