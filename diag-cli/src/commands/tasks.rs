//! `diag tasks URL`: event-loop lag, runtime busy ratio, the worst routes by slow polls and the
//! recent blocking events with their stacks (the user's frames first, runtime frames folded),
//! from a live service's `/debug/tasks`.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::remote::Remote;
use crate::tasks_view;

/// What `diag tasks` is asked to do.
pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) watch: bool,
    pub(crate) json: bool,
    pub(crate) token: Option<String>,
    pub(crate) timeout: Duration,
}

/// Refresh period of `--watch`.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Runs `diag tasks`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    let remote = Remote::new(&args.url, args.token.clone(), args.timeout)?;
    loop {
        let (v, json) = remote.get_tasks()?;
        let out = io::stdout();
        let mut w = out.lock();
        if args.json {
            w.write_all(&json)?;
            writeln!(w)?;
        } else {
            if args.watch {
                // Clear the screen and home the cursor between refreshes.
                write!(w, "\x1b[2J\x1b[H")?;
            }
            tasks_view::render(&v, &mut w)?;
        }
        w.flush()?;
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        drop(w);
        std::thread::sleep(WATCH_EVERY);
    }
}
