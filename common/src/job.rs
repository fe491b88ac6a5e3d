//! Jobs: what a controller asks an agent to run and what it gets back.

use serde::{Deserialize, Serialize};

/// Job ids are unique per agent process, starting at 1.
pub type JobId = u64;

/// Largest amount of each stream the agent keeps per job; beyond it the
/// output is cut and [`TRUNCATION_MARKER`] appended.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Appended to a stream cut at [`MAX_OUTPUT_BYTES`].
pub const TRUNCATION_MARKER: &str = "\n[lnst: output truncated]\n";

/// A shell command to run with `sh -c`, in its own process group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub command: String,
    /// Named network namespace (as in `ip netns`); `None`: the agent's own.
    pub netns: Option<String>,
    pub cwd: Option<String>,
    /// Added to the agent's environment.
    pub env: Vec<(String, String)>,
    /// Kill the job (TERM, then KILL after a short grace) after this long.
    pub timeout_ms: Option<u64>,
    /// Reply only when the job ended (foreground), not when it started.
    pub wait: bool,
}

impl JobSpec {
    /// A foreground-less command with no options.
    pub fn shell(command: impl Into<String>) -> Self {
        JobSpec {
            command: command.into(),
            netns: None,
            cwd: None,
            env: Vec::new(),
            timeout_ms: None,
            wait: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobExit {
    pub id: JobId,
    /// Exit code when it exited, `None` when a signal killed it.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Killed because its timeout ran out.
    pub timed_out: bool,
    /// Seconds from spawn to exit.
    pub duration: f64,
    /// The signal a `JobKill` delivered while the job's shell still ran;
    /// `None` when it ended on its own (before any kill reached it), so a
    /// job that already failed is judged by how it ended.
    pub stopped: Option<i32>,
}

/// A job's state and full (bounded) output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: JobId,
    /// `None` while the job runs.
    pub exit: Option<JobExit>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}
