#![forbid(unsafe_code)]
//! The `diag` command: diff, top and flamegraph for heap and CPU profiles of services that
//! embed diag-core.

mod captures;
mod cli;
mod commands;
mod filter;
mod history;
mod input;
mod prom;
mod remote;
mod report;
mod scrape;
mod stats;
mod symbols;
mod table;
mod tasks_view;
mod units;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

/// Exit code for any error.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    symbols::Symbols::from(cli.symbols).install();
    match cli.command.run() {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let mut msg = String::from("diag: error: ");
            for (i, cause) in err.chain().enumerate() {
                if i > 0 {
                    msg.push_str(": ");
                }
                msg.push_str(&cause.to_string());
            }
            let _ = writeln!(io::stderr().lock(), "{msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// True if the error comes from writing to a closed pipe (`diag top x | head`).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
