//! `usec-perftest`: perftest-compatible RDMA microbenchmarks on every usec provider.
//!
//! ```text
//! usec-perftest write_lat -d soft:demo                 # server
//! usec-perftest write_lat -d soft:demo 127.0.0.1       # client
//! ```
//!
//! The seven tests of linux-rdma perftest (`ib_write_lat`, `ib_read_lat`, `ib_send_lat`,
//! `ib_atomic_lat`, `ib_write_bw`, `ib_read_bw`, `ib_send_bw`) with perftest's options,
//! defaults, output and statistics, over any device `usec-verbs` opens: `soft:<fabric>`
//! between processes of one host, `sim:<name>`, or an ibverbs device such as `rxe0` or
//! `mlx5_0`. Installed (or symlinked) as `usec_write_lat` and so on, the binary takes the
//! test from its name.
//!
//! Layout: [`cli`] and [`settings`] turn the command line into checked settings;
//! [`resources`] opens the device; [`control`] is the TCP side channel; [`run`] holds the
//! loops; [`stats`] computes the figures as perftest does; [`report`] prints them as
//! perftest does.
#![forbid(unsafe_code)]

mod cli;
mod clock;
mod control;
mod cpu_use;
mod report;
mod resources;
mod run;
mod run_info;
mod settings;
mod stats;
mod test_kind;

use std::process::ExitCode;

use clap::error::ErrorKind;

use crate::cli::Args;
use crate::settings::Settings;

fn main() -> ExitCode {
    let args = match Args::parse_from_argv(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(error) if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => return fail("", &first_line(&error.render().to_string())),
    };
    let context = format!(" ({} {})", args.test, if args.host.is_some() { "client" } else { "server" });
    let settings = match Settings::from_args(args) {
        Ok(settings) => settings,
        Err(error) => return fail(&context, &format!("{error:#}")),
    };
    match run::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&context, &format!("{error:#}")),
    }
}

/// Prints the one line of an error and returns the failure status.
fn fail(context: &str, message: &str) -> ExitCode {
    let message = message.replace('\n', " ");
    eprintln!("usec-perftest{context}: {message}");
    ExitCode::FAILURE
}

/// The first line of clap's message, without its `error: ` prefix, and a pointer to help.
fn first_line(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or("invalid command line");
    format!("{} (see --help)", line.strip_prefix("error: ").unwrap_or(line))
}
