//! `lnst-ctl`: runs Rhai recipes against lnst agents. Parses the command
//! line, sets up logging, runs the command, prints an error as `{:#}` and
//! exits with the documented code (see `lnst_ctl::exit`).

use clap::Parser;
use lnst_ctl::commands::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let code = match commands::exec(cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("lnst-ctl: {:#}", f.error);
            f.code
        }
    };
    std::process::exit(code.code());
}
