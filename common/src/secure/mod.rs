//! The agent transport over TCP: mutual authentication with static keys and
//! an encrypted channel, or plain TCP when both sides say `--insecure`.
//!
//! Data flow on a new TCP connection, before the protocol preamble
//! ([`crate::handshake`]) and frames ([`crate::codec`]):
//! [`hello`] (mode byte in the clear) → [`noise`] (Noise XX handshake and the
//! agent's verdict) → [`stream`] (`SecureStream`, records of ≤ 64 KiB) →
//! frames, unchanged. [`keys`] holds key pairs, key files and fingerprints.
//! Unix sockets skip all of this: their file mode (0600, root) is the
//! protection.
//!
//! Both ends call one function: [`client_connect`] on the controller,
//! [`server_accept`] on the agent (in a task per connection, so a stalled
//! handshake never blocks the accept loop). docs/SECURITY.md explains the
//! choice of Noise and the threat model.

pub mod error;
pub mod hello;
pub mod keys;
pub mod noise;
pub mod stream;

#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use error::SecureError;
pub use keys::{keygen, Fingerprint, KeyError, KeyPair, PublicKey};
pub use noise::{
    client_handshake, client_handshake_opt, client_plain, server_handshake, server_plain,
};
pub use stream::SecureStream;

/// Default bound on a whole handshake; long enough for a slow lab link,
/// short enough that a stalled peer is dropped quickly.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the controller protects a connection to one agent.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Authenticate: prove `ours`, require the agent's key to be `pinned`
    /// (from the pool file's `key`; `None` fails with the agent's key shown).
    Noise {
        ours: KeyPair,
        pinned: Option<PublicKey>,
    },
    /// `lnst-ctl --insecure`: plain TCP.
    Insecure,
}

/// How the agent protects its TCP listener.
#[derive(Debug, Clone)]
pub enum ServerAuth {
    /// Authenticate: prove `ours`, accept only controllers in `accepted`.
    Noise {
        ours: KeyPair,
        accepted: Vec<PublicKey>,
        /// The configuration file `accepted` came from (the default or
        /// `--config`), named in refusals so the operator edits the
        /// right file.
        config: String,
    },
    /// `lnst-agent --insecure`: plain TCP.
    Insecure,
}

/// A connection after the transport set-up: encrypted or (explicitly)
/// plain. Both read and write frames the same way.
#[derive(Debug)]
pub enum Transport<S> {
    /// Boxed: the Noise state is large and the plain variant is one socket.
    Secure(Box<SecureStream<S>>),
    Plain(S),
}

impl<S> Transport<S> {
    /// Whether the channel is authenticated and encrypted.
    pub fn is_secure(&self) -> bool {
        matches!(self, Transport::Secure(_))
    }

    /// The underlying stream (for `peer_addr` and the like).
    pub fn get_ref(&self) -> &S {
        match self {
            Transport::Secure(s) => s.get_ref(),
            Transport::Plain(s) => s,
        }
    }
}

/// Controller side: sets up the connection to agent `host` (named in
/// messages) as `auth` says. Returns once the agent has accepted us.
pub async fn client_connect<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    auth: &ClientAuth,
    host: &str,
    timeout: Duration,
) -> Result<Transport<S>, SecureError> {
    match auth {
        ClientAuth::Noise { ours, pinned } => {
            client_handshake_opt(s, ours, pinned.as_ref(), host, timeout)
                .await
                .map(|s| Transport::Secure(Box::new(s)))
        }
        ClientAuth::Insecure => client_plain(s, host, timeout).await.map(Transport::Plain),
    }
}

/// Agent side: sets up an accepted connection as `auth` says. Returns the
/// transport and, when authenticated, the controller's key (log its
/// fingerprint). An error is for the agent's log; the peer has been told.
pub async fn server_accept<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    auth: &ServerAuth,
    timeout: Duration,
) -> Result<(Transport<S>, Option<PublicKey>), SecureError> {
    match auth {
        ServerAuth::Noise {
            ours,
            accepted,
            config,
        } => server_handshake(s, ours, accepted, config, timeout)
            .await
            .map(|(s, k)| (Transport::Secure(Box::new(s)), Some(k))),
        ServerAuth::Insecure => server_plain(s, timeout)
            .await
            .map(|s| (Transport::Plain(s), None)),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Transport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Secure(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Transport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Secure(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Secure(s) => Pin::new(s).poll_flush(cx),
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Secure(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
