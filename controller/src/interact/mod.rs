//! The interactive side of `lnst-ctl` (issue 14): what a person at a
//! terminal sees and does while a run is going on, kept out of the run
//! pipeline so that `commands/run.rs` only calls in.
//!
//! - [`breakpoint`]: `m.breakpoint(why)` and `run --pause-on-fail`
//!   (RECIPES.md §4, §9): the pause, how to enter each host, the prompt;
//! - [`progress`]: the status line and the coloured summary;
//! - [`enter`]: how a host of a lab or pool is entered (`lnst-ctl shell`,
//!   `ip netns exec`, a machine's address).

pub mod breakpoint;
pub mod enter;
pub mod progress;

use std::io::IsTerminal;

/// Whether a person can answer a prompt: stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}
