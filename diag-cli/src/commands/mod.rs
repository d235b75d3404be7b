//! One module per subcommand, each with `run(args) -> Result<ExitCode>`.

pub(crate) mod ages;
pub(crate) mod by_label;
pub(crate) mod demo;
pub(crate) mod diff;
pub(crate) mod flamegraph;
pub(crate) mod leaks;
pub(crate) mod list;
pub(crate) mod report;
pub(crate) mod snapshot;
pub(crate) mod symbolize;
pub(crate) mod tasks;
pub(crate) mod top;
pub(crate) mod top_live;
pub(crate) mod trend;
