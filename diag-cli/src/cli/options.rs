//! The parsed flags turned into the plain options each command takes (ripgrep's low-level to
//! high-level arguments): `commands/` never sees a clap type, and a command can be driven
//! from code (`diag demo` takes snapshots with `snapshot::Options`).

use std::time::Duration;

use super::{
    DemoArgs, DiffArgs, FailOn, FilterArgs, FlamegraphArgs, FlatArgs, LeaksArgs, ListArgs,
    NamesArgs, RemoteArgs, ReportArgs, SnapshotArgs, SymbolArgs, SymbolizeArgs, TasksArgs, TopArgs,
    TrendArgs,
};
use crate::commands::{
    Flat, Names, demo, diff, flamegraph, leaks, list, report, snapshot, symbolize, tasks, top,
    trend,
};
use crate::filter::Filter;
use crate::symbols::Symbols;

/// `--timeout SECS` as a duration, at least one second.
fn timeout(r: &RemoteArgs) -> Duration {
    Duration::from_secs(r.timeout.max(1))
}

impl From<NamesArgs> for Names {
    fn from(a: NamesArgs) -> Self {
        Self {
            app_crates: a.app_crates,
            full_names: a.full_names,
        }
    }
}

impl From<FlatArgs> for Flat {
    fn from(a: FlatArgs) -> Self {
        Self {
            sample: a.sample,
            sites: a.sites,
            leaf: a.leaf,
        }
    }
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Self {
        Self {
            focus: a.focus,
            ignore: a.ignore,
            hide: a.hide,
            tag_focus: a.tag_focus,
            tag_ignore: a.tag_ignore,
        }
    }
}

impl From<SymbolArgs> for Symbols {
    fn from(a: SymbolArgs) -> Self {
        Self {
            binaries: a.binaries,
            debug_dirs: a.debug_dirs,
        }
    }
}

impl From<DemoArgs> for demo::Options {
    fn from(a: DemoArgs) -> Self {
        Self {
            out: a.out,
            requests: a.requests as usize,
            kb: a.kb as usize,
        }
    }
}

impl From<SnapshotArgs> for snapshot::Options {
    fn from(a: SnapshotArgs) -> Self {
        Self {
            timeout: timeout(&a.remote),
            url: a.url,
            output: a.output,
            allocs: a.allocs,
            seconds: a.seconds.unwrap_or(0),
            token: a.remote.token,
        }
    }
}

impl From<DiffArgs> for diff::Options {
    fn from(a: DiffArgs) -> Self {
        Self {
            timeout: timeout(&a.remote),
            before: a.before,
            after: a.after,
            since: a.since,
            out: a.out,
            top: a.top,
            json: a.json,
            svg: a.svg,
            all_frames: a.all_frames,
            sample: a.sample,
            by: a.by,
            fail_above: a.fail_above,
            names: a.names.into(),
            filter: a.filter.into(),
            token: a.remote.token,
        }
    }
}

impl From<TrendArgs> for trend::Options {
    fn from(a: TrendArgs) -> Self {
        Self {
            timeout: timeout(&a.remote),
            inputs: a.inputs,
            history: a.history,
            every: a.every,
            count: a.count,
            out: a.out,
            top: a.top,
            json: a.json,
            sample: a.sample,
            by: a.by,
            alpha: a.alpha,
            fail_on_growing: a.fail_on == Some(FailOn::Growing),
            names: a.names.into(),
            filter: a.filter.into(),
            token: a.remote.token,
        }
    }
}

impl From<TopArgs> for top::Options {
    fn from(a: TopArgs) -> Self {
        Self {
            timeout: timeout(&a.remote),
            include_diag: a.include_diag,
            file: a.file,
            top: a.top,
            flat: a.flat.into(),
            lines: a.lines,
            base: a.base,
            json: a.json,
            by: a.by,
            profile: a.profile,
            seconds: a.seconds,
            interval: a.interval,
            once: a.once,
            names: a.names.into(),
            filter: a.filter.into(),
            token: a.remote.token,
        }
    }
}

impl From<ListArgs> for list::Options {
    fn from(a: ListArgs) -> Self {
        Self {
            regex: a.regex,
            file: a.file,
            flat: a.flat.into(),
            context: a.context,
            source_path: a.source_path,
            top: a.top,
            base: a.base,
            filter: a.filter.into(),
        }
    }
}

impl From<FlamegraphArgs> for flamegraph::Options {
    fn from(a: FlamegraphArgs) -> Self {
        Self {
            include_diag: a.include_diag,
            file: a.file,
            output: a.output,
            sample: a.sample,
            title: a.title,
            reverse: a.reverse,
            by: a.by,
            min_width: a.min_width,
            full_names: a.full_names,
            all_frames: a.all_frames,
            filter: a.filter.into(),
            seconds: a.seconds,
            frequency: a.frequency,
            token: a.token,
        }
    }
}

impl From<TasksArgs> for tasks::Options {
    fn from(a: TasksArgs) -> Self {
        Self {
            timeout: timeout(&a.remote),
            url: a.url,
            watch: a.watch,
            json: a.json,
            token: a.remote.token,
        }
    }
}

impl From<LeaksArgs> for leaks::Options {
    fn from(a: LeaksArgs) -> Self {
        Self {
            timeout: timeout(&a.remote),
            url: a.url,
            json: a.json,
            stacks: a.stacks,
            full_names: a.names.full_names,
            app_crates: a.names.app_crates,
            token: a.remote.token,
        }
    }
}

impl From<ReportArgs> for report::Options {
    fn from(a: ReportArgs) -> Self {
        Self {
            timeout: timeout(&a.remote),
            inputs: a.inputs,
            output: a.output,
            seconds: a.seconds,
            since: a.since,
            app_crates: a.app_crates,
            include_diag: a.include_diag,
            token: a.remote.token,
        }
    }
}

impl From<SymbolizeArgs> for symbolize::Options {
    fn from(a: SymbolizeArgs) -> Self {
        Self {
            inputs: a.inputs,
            output: a.output,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args).expect("parses").command
    }

    #[test]
    fn shared_flags_reach_the_options() {
        let Command::Diff(a) = parse(&[
            "diag",
            "diff",
            "http://h:1",
            "--since",
            "1h",
            "--timeout",
            "0",
            "--token",
            "t",
            "--focus",
            "app",
            "--app-crates",
            "a,b",
            "--full-names",
            "--fail-above",
            "1KiB",
        ]) else {
            panic!("not diff");
        };
        let o = diff::Options::from(a);
        assert_eq!(
            o.timeout,
            Duration::from_secs(1),
            "--timeout 0 is one second"
        );
        assert_eq!(o.token.as_deref(), Some("t"));
        assert_eq!(o.since.as_deref(), Some("1h"));
        assert_eq!(o.fail_above, Some(1024));
        assert_eq!(o.names.app_crates, ["a", "b"]);
        assert!(o.names.full_names);
        assert!(o.filter.is_active());
    }

    #[test]
    fn trend_fails_on_growing_only_when_asked() {
        let Command::Trend(a) = parse(&["diag", "trend", "a", "b", "c", "--fail-on", "growing"])
        else {
            panic!("not trend");
        };
        assert!(trend::Options::from(a).fail_on_growing);
        let Command::Trend(a) = parse(&["diag", "trend", "a", "b", "c"]) else {
            panic!("not trend");
        };
        let o = trend::Options::from(a);
        assert!(!o.fail_on_growing);
        assert_eq!((o.every.as_str(), o.count), ("30s", 10));
    }
}
