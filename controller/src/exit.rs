//! Exit codes of `lnst-ctl`, in one place (RECIPES.md §9).
//!
//! Commands work with `anyhow` internally and classify an error once, where
//! its class is known, with [`Classify::usage`] / [`Classify::infra`]. `main`
//! prints the error with `{:#}` and exits with [`Failure::code`].

use std::fmt;

/// The documented exit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Every result passed.
    Pass = 0,
    /// The test phase ran and some result failed, or it raised an error.
    Fail = 1,
    /// Nothing ran: usage, recipe syntax, param or mapping error.
    Usage = 2,
    /// Infrastructure: an agent lost or unreachable, the lab could not be built.
    Infra = 3,
    /// Interrupted by Ctrl-C (after cleanup).
    Interrupted = 130,
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Text for `--help`.
pub const EXIT_HELP: &str = "\
Exit status:
  0    every result PASSed
  1    the test phase ran and some result FAILed or it raised an error
  2    nothing ran: usage, recipe syntax, param or mapping error
  3    infrastructure error: an agent lost or unreachable, the lab could not be built
  130  interrupted with Ctrl-C (cleanup ran)";

/// An error together with the exit status it maps to.
pub struct Failure {
    pub code: ExitCode,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: ExitCode, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:#})", self.code, self.error)
    }
}

impl From<anyhow::Error> for Failure {
    /// An unclassified error is an infrastructure problem: the recipe and its
    /// params were fine, something around them was not.
    fn from(error: anyhow::Error) -> Self {
        Failure::new(ExitCode::Infra, error)
    }
}

/// Attaches an exit class to a `Result`'s error.
pub trait Classify<T> {
    /// Exit 2: the user's input (recipe, params, pool, command line) is wrong.
    fn usage(self) -> Result<T, Failure>;
    /// Exit 3: an agent or the lab failed.
    fn infra(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> Classify<T> for Result<T, E> {
    fn usage(self) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(ExitCode::Usage, e))
    }
    fn infra(self) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(ExitCode::Infra, e))
    }
}
