//! The lnst wire protocol, shared by `lnst-ctl` and `lnst-agent`.
//!
//! Data only: the messages both ends exchange, the types they carry and the
//! one codec that turns them into length-prefixed frames. No netlink, no
//! processes, no runtime.
//!
//! Reading order:
//! - [`handshake`]: the fixed preamble that carries the protocol version;
//! - [`proto`]: the message enums (controller → agent, agent → controller);
//! - [`job`], [`device`], [`host`]: what requests and replies carry;
//! - [`env`]: a host's kernel, CPU and NICs, sent in `Welcome`;
//! - [`error`]: the error type that crosses the wire;
//! - [`codec`]: frames, size limits and the bincode configuration;
//! - [`secure`]: the TCP transport under the frames: keys, the Noise
//!   handshake and the encrypted stream (or plain with `--insecure`);
//! - [`unix`]: the unix-socket transport under the frames (the one piece
//!   that needs tokio's reactor).

pub mod codec;
pub mod device;
pub mod env;
pub mod error;
pub mod handshake;
pub mod host;
pub mod job;
pub mod proto;
pub mod secure;
pub mod unix;

pub use error::{ErrorKind, WireError};
pub use handshake::PROTOCOL_VERSION;
pub use proto::{Event, Request, Response, ToAgent, ToController};
