//! `lnst-agent`: the daemon on each test host that `lnst-ctl` drives.
//!
//! Data flow: [`server`] accepts connections (one controller at a time;
//! in a VM lab guest, [`virtio`] serves the virtio-serial port instead) →
//! [`connection`] exchanges the preamble and turns bytes into frames →
//! [`session`] runs the hello, heartbeats and the request loop →
//! [`dispatch`] checks each request's sizes ([`limits`]) and maps it to
//! its domain module ([`jobs`], [`net`])
//! → the domain modules change the host, recording every change in the
//! [`journal`] first (as an [`undo::UndoEntry`]) so it can be undone when
//! the session ends, the controller is lost or the agent dies.
//!
//! [`blocking`] keeps blocking syscalls from starving the runtime.
//!
//! Beside the daemon: [`config`] (`/etc/lnst/agent.toml`), [`keygen`],
//! [`tools`] (the `capture` and `cpu-stat` helpers that test modules run
//! as jobs), [`time`].

pub mod agent;
pub mod blocking;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod jobs;
pub mod journal;
pub mod keygen;
pub mod limiter;
pub mod limits;
pub mod net;
pub mod server;
pub mod service;
pub mod session;
pub mod time;
pub mod tools;
pub mod undo;
pub mod virtio;

pub use agent::{Agent, AgentConfig};
pub use journal::Journal;
pub use undo::{UndoCtx, UndoEntry};
