//! `lnst-ctl` as a library: the pieces of the controller, in data-flow order.
//!
//! - [`params`], [`pool`], [`mapper`]: pure inputs — params, pool files, and
//!   the requirements → machines mapping;
//! - [`recipe`]: the Rhai engine, the declaration phase and the script API;
//! - [`client`]: the connection to one agent (handshake, requests, events,
//!   heartbeats, loss detection); [`keygen`]: the controller's key pair for
//!   authenticated TCP;
//! - [`lab`]: the labs that stand in for a pool — the netns lab and the
//!   VM lab (qemu guests with a full kernel);
//! - [`session`]: the connected agents of one run and their teardown;
//! - [`reserve`]: pool machines held for one run — local lock files, or a
//!   shared PostgreSQL queue with leases and fencing tokens;
//! - [`run`]: one recipe's run as a pipeline of named stages, and suites
//!   of recipes (`--jobs`);
//! - [`report`]: summary, JSON, JUnit and the run directory;
//! - [`db`]: which database holds results history and reservations
//!   (`--db`, `LNST_DB`, the embedded default) and opening PostgreSQL;
//! - [`store`]: the results store — every run, result, measurement and
//!   host environment; baselines and change points (`history`, `compare`);
//! - [`modules`]: typed test tools (`ping(#{..})`, iperf, ...) for `h.run`;
//! - [`interact`]: breakpoints, lab shells and what a terminal shows;
//! - [`commands`]: one file per subcommand; [`exit`]: exit codes.

pub mod client;
pub mod commands;
pub mod db;
pub mod exit;
pub mod interact;
pub mod keygen;
pub mod lab;
pub mod mapper;
pub mod modules;
pub mod params;
pub mod pool;
pub mod recipe;
pub mod report;
pub mod reserve;
pub mod run;
pub mod session;
pub mod store;
