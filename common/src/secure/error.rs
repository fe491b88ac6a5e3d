//! Why a secure (or deliberately insecure) connection was not set up.
//!
//! Every refusal names what happened and what to do about it, on the side
//! that sees it: the agent logs the controller's fingerprint and where to
//! accept it; the controller names the agent and both fingerprints on a pin
//! mismatch.

use std::time::Duration;

use super::keys::{Fingerprint, KeyError, PublicKey};

/// What can go wrong before a [`super::Transport`] carries frames.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("{stage}: {error}")]
    Io {
        stage: &'static str,
        error: std::io::Error,
    },
    #[error("handshake did not complete within {0:?}")]
    Timeout(Duration),
    #[error("peer is not an lnst transport endpoint (first bytes {0:02x?}); is something else listening on that port?")]
    NotLnst(Vec<u8>),
    #[error("peer speaks lnst transport version {peer}, this side speaks {ours}; install matching lnst-ctl and lnst-agent builds")]
    TransportVersion { ours: u8, peer: u8 },
    /// Controller side: the agent demands keys, we ran with `--insecure`.
    #[error("agent {host} requires authentication; run lnst-ctl without --insecure and pin the agent's key in the pool file (key = \"lnst1:…\")")]
    AgentRequiresAuth { host: String },
    /// Controller side: the agent runs `--insecure`, we wanted keys.
    #[error("agent {host} was started with --insecure (no authentication); refusing to drive it unauthenticated: start the agent with a key, or pass --insecure to lnst-ctl as well")]
    AgentInsecure { host: String },
    /// Agent side: the controller connected in plain text, we need keys.
    #[error("controller connected without authentication but this agent was not started with --insecure")]
    ControllerInsecure,
    /// Agent side: the controller wants keys, we run `--insecure`.
    #[error("controller requires authentication but this agent was started with --insecure; restart it with a key file and accepted_keys")]
    ControllerRequiresAuth,
    /// Controller side: the agent's static key is not the pinned one.
    #[error("agent {host} presented key {presented} but the pool file pins {pinned}: possible man in the middle (or the agent's key was regenerated; if so, update `key` in its pool file)")]
    PinMismatch {
        host: String,
        presented: Fingerprint,
        pinned: Fingerprint,
    },
    /// Controller side: the pool file pins no key for this agent.
    #[error("the pool file pins no key for agent {host}; it presented {presented} (fingerprint {}): if that is the key `lnst-agent keygen` printed on that machine, add key = \"{presented}\" to its pool file", presented.fingerprint())]
    NoPin { host: String, presented: PublicKey },
    /// Controller side: the agent did not accept our key; `reason` is the
    /// agent's own words.
    #[error("agent {host} refused this controller's key {ours}: {reason}")]
    Refused {
        host: String,
        ours: Fingerprint,
        reason: String,
    },
    /// Agent side: the controller's key is not in `accepted_keys`.
    #[error("refused controller key {key} (fingerprint {}): not among the accepted keys; add it to accepted_keys in {config} if you trust it", key.fingerprint())]
    UnknownController { key: PublicKey, config: String },
    /// Agent side: no controller key is accepted at all.
    #[error("refused controller key {key} (fingerprint {}): this agent accepts no controller keys; add controller keys (printed by `lnst-ctl keygen`) to accepted_keys in {config}", key.fingerprint())]
    NoAcceptedKeys { key: PublicKey, config: String },
    /// Agent side: the controller hung up during the handshake, usually
    /// because it did not trust our key.
    #[error("controller closed the connection during the handshake (does its pool file pin this agent's key {ours}?)")]
    ClosedByController { ours: Fingerprint },
    /// Controller side: the agent hung up during the handshake.
    #[error("agent {host} closed the connection during the handshake")]
    ClosedByAgent { host: String },
    #[error("handshake failed: {0} (garbage or tampering on the connection?)")]
    Noise(String),
    #[error("handshake protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl SecureError {
    pub(crate) fn io(stage: &'static str) -> impl FnOnce(std::io::Error) -> SecureError {
        move |error| SecureError::Io { stage, error }
    }
}
