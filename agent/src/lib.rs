//! `lnst-agent`: the daemon on each test host that `lnst-ctl` drives.
//!
//! Data flow: [`server`] accepts connections (one controller at a time) →
//! [`session`] runs the handshake, heartbeats and the request loop →
//! [`dispatch`] maps each request to its domain module → the domain
//! modules change the host, journaling every change in [`journal`] first so
//! it can be undone.

pub mod config;
pub mod keygen;
