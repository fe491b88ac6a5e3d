//! `lnst-ctl`: runs Rhai recipes against lnst agents.
//!
//! - [`client`]: the connection to one agent (handshake, requests, events,
//!   heartbeats, loss detection).

pub mod client;
pub mod modules;
