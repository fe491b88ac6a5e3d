//! The authenticated handshake: `Noise_XX_25519_ChaChaPoly_BLAKE2s` via
//! `snow`, then the agent's verdict.
//!
//! ```text
//! controller (initiator)                     agent (responder)
//!   hello "lnst" 1 'N'  + msg1 (e)     →      ← hello "lnst" 1 'N'
//!                                      ←      msg2 (e, ee, s, es)
//!   check the agent's static key against the pin (or refuse, hang up)
//!   msg3 (s, se)                       →
//!                                             check the controller's key
//!                                      ←      verdict record: 'A' | 'R' reason
//! ```
//!
//! XX lets each side learn the other's static key inside the handshake, so
//! the controller can show both fingerprints on a pin mismatch and the
//! agent can log the fingerprint of a key it refuses. Handshake messages
//! carry a 2-byte length and are bounded to [`MAX_HANDSHAKE_MSG`]; the whole
//! exchange runs under one timeout. The agent reads no application data
//! before its verdict, and the controller sends none before reading it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::hello::{self, Mode};
use super::keys::{KeyPair, PublicKey};
use super::stream::SecureStream;
use super::SecureError;

/// The Noise protocol name both sides use.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Bound on one handshake message (the largest, msg2, is 96 bytes).
pub const MAX_HANDSHAKE_MSG: usize = 1024;
/// Bound on the agent's refusal reason.
const MAX_REASON: usize = 1024;
/// Bound both ends of a session-level prologue to this protocol.
const PROLOGUE: &[u8] = b"lnst transport 1";

const VERDICT_ACCEPT: u8 = b'A';
const VERDICT_REFUSE: u8 = b'R';

fn builder() -> Result<snow::Builder<'static>, SecureError> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e| SecureError::Noise(format!("{NOISE_PARAMS}: {e}")))?;
    snow::Builder::new(params)
        .prologue(PROLOGUE)
        .map_err(|e| SecureError::Noise(e.to_string()))
}

fn noise_err(e: snow::Error) -> SecureError {
    SecureError::Noise(e.to_string())
}

/// Appends `msg` with its 2-byte length to `out`.
fn push_msg(out: &mut Vec<u8>, msg: &[u8]) {
    // Handshake messages are below MAX_HANDSHAKE_MSG, far under u16::MAX.
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Reads one length-prefixed handshake message. `Ok(None)` if the peer
/// hung up first.
async fn read_msg<S: AsyncRead + Unpin>(s: &mut S) -> Result<Option<Vec<u8>>, SecureError> {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(SecureError::io("reading a handshake message")(e)),
    }
    let len = u16::from_be_bytes(len) as usize;
    if len > MAX_HANDSHAKE_MSG {
        return Err(SecureError::Protocol(format!(
            "handshake message of {len} bytes exceeds the limit of {MAX_HANDSHAKE_MSG}"
        )));
    }
    let mut msg = vec![0u8; len];
    match s.read_exact(&mut msg).await {
        Ok(_) => Ok(Some(msg)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(SecureError::io("reading a handshake message")(e)),
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> Result<(), SecureError> {
    s.write_all(bytes)
        .await
        .map_err(SecureError::io("sending a handshake message"))?;
    s.flush()
        .await
        .map_err(SecureError::io("sending a handshake message"))
}

/// Refuses politely: stop writing, then swallow what the peer still sends
/// for a moment, so closing does not reset the connection before the peer
/// has read our last words.
pub(crate) async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    let _ = s.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        let mut total = 0usize;
        while total < 64 * 1024 {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

async fn within<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, SecureError>>,
) -> Result<T, SecureError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(SecureError::Timeout(timeout)))
}

/// Controller side: authenticates agent `host` (named in messages) against
/// `pinned`, proves `ours`, and returns the encrypted stream once the agent
/// has accepted us. Everything must finish within `timeout`.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    ours: &KeyPair,
    pinned: &PublicKey,
    host: &str,
    timeout: Duration,
) -> Result<SecureStream<S>, SecureError> {
    client_handshake_opt(s, ours, Some(pinned), host, timeout).await
}

/// [`client_handshake`] where the pool file may pin no key: then the
/// handshake stops after learning the agent's key and the error shows it
/// ([`SecureError::NoPin`]), so the admin can compare and pin it.
pub async fn client_handshake_opt<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    ours: &KeyPair,
    pinned: Option<&PublicKey>,
    host: &str,
    timeout: Duration,
) -> Result<SecureStream<S>, SecureError> {
    within(timeout, client_inner(s, ours, pinned, host)).await
}

async fn client_inner<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    ours: &KeyPair,
    pinned: Option<&PublicKey>,
    host: &str,
) -> Result<SecureStream<S>, SecureError> {
    let closed = || SecureError::ClosedByAgent {
        host: host.to_string(),
    };
    let mut hs = builder()?
        .local_private_key(ours.private_bytes())
        .map_err(noise_err)?
        .build_initiator()
        .map_err(noise_err)?;
    let mut buf = [0u8; MAX_HANDSHAKE_MSG];

    // Hello and msg1 leave together.
    let mut out = hello::encode(Mode::Noise).to_vec();
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    push_msg(&mut out, &buf[..n]);
    send(&mut s, &out).await?;

    match hello::read(&mut s).await? {
        None => return Err(closed()),
        Some(Mode::Plain) => {
            return Err(SecureError::AgentInsecure {
                host: host.to_string(),
            })
        }
        Some(Mode::Noise) => {}
    }

    let msg2 = read_msg(&mut s).await?.ok_or_else(closed)?;
    hs.read_message(&msg2, &mut buf).map_err(noise_err)?;
    let presented = hs
        .get_remote_static()
        .and_then(PublicKey::from_slice)
        .ok_or_else(|| SecureError::Noise("agent sent no static key".into()))?;
    match pinned {
        None => {
            return Err(SecureError::NoPin {
                host: host.to_string(),
                presented,
            })
        }
        Some(p) if *p != presented => {
            return Err(SecureError::PinMismatch {
                host: host.to_string(),
                presented: presented.fingerprint(),
                pinned: p.fingerprint(),
            })
        }
        Some(_) => {}
    }

    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    let mut out = Vec::with_capacity(n + 2);
    push_msg(&mut out, &buf[..n]);
    send(&mut s, &out).await?;

    let transport = hs.into_transport_mode().map_err(noise_err)?;
    let mut ss = SecureStream::new(s, transport, &[]);
    let verdict = ss
        .read_record()
        .await
        .map_err(SecureError::io("reading the agent's verdict"))?
        .ok_or_else(closed)?;
    match verdict.split_first() {
        Some((&VERDICT_ACCEPT, _)) => Ok(ss),
        Some((&VERDICT_REFUSE, reason)) => Err(SecureError::Refused {
            host: host.to_string(),
            ours: ours.public().fingerprint(),
            reason: String::from_utf8_lossy(&reason[..reason.len().min(MAX_REASON)]).into_owned(),
        }),
        _ => Err(SecureError::Protocol(format!(
            "agent {host} sent an unknown verdict {verdict:02x?}"
        ))),
    }
}

/// Agent side: proves `ours`, authenticates the controller against
/// `accepted`, tells it the verdict, and returns the encrypted stream and
/// the controller's key. A refused controller gets the reason (encrypted)
/// before the connection closes, and this returns the refusal as the error
/// for the agent's log; no application byte has been read.
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    ours: &KeyPair,
    accepted: &[PublicKey],
    config: &str,
    timeout: Duration,
) -> Result<(SecureStream<S>, PublicKey), SecureError> {
    within(timeout, server_inner(s, ours, accepted, config)).await
}

async fn server_inner<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    ours: &KeyPair,
    accepted: &[PublicKey],
    config: &str,
) -> Result<(SecureStream<S>, PublicKey), SecureError> {
    let closed = || SecureError::ClosedByController {
        ours: ours.public().fingerprint(),
    };
    send(&mut s, &hello::encode(Mode::Noise)).await?;
    match hello::read(&mut s).await {
        Ok(Some(Mode::Noise)) => {}
        Ok(Some(Mode::Plain)) => {
            linger_close(&mut s).await;
            return Err(SecureError::ControllerInsecure);
        }
        Ok(None) => return Err(closed()),
        Err(e) => return Err(e),
    }

    let mut hs = builder()?
        .local_private_key(ours.private_bytes())
        .map_err(noise_err)?
        .build_responder()
        .map_err(noise_err)?;
    let mut buf = [0u8; MAX_HANDSHAKE_MSG];

    let msg1 = read_msg(&mut s).await?.ok_or_else(closed)?;
    hs.read_message(&msg1, &mut buf).map_err(noise_err)?;
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    let mut out = Vec::with_capacity(n + 2);
    push_msg(&mut out, &buf[..n]);
    send(&mut s, &out).await?;

    let msg3 = read_msg(&mut s).await?.ok_or_else(closed)?;
    hs.read_message(&msg3, &mut buf).map_err(noise_err)?;
    let peer = hs
        .get_remote_static()
        .and_then(PublicKey::from_slice)
        .ok_or_else(|| SecureError::Noise("controller sent no static key".into()))?;
    let transport = hs.into_transport_mode().map_err(noise_err)?;
    let mut ss = SecureStream::new(s, transport, &[]);

    let refusal = if accepted.is_empty() {
        Some((
            SecureError::NoAcceptedKeys {
                key: peer,
                config: config.to_string(),
            },
            format!(
                "this agent accepts no controller keys yet; add this controller's key \
                 (`lnst-ctl keygen` prints it) to accepted_keys in {config} on the agent"
            ),
        ))
    } else if !accepted.contains(&peer) {
        Some((
            SecureError::UnknownController {
                key: peer,
                config: config.to_string(),
            },
            format!(
                "the key is not among its accepted keys; add {peer} to accepted_keys \
                 in {config} on the agent if you trust it"
            ),
        ))
    } else {
        None
    };
    match refusal {
        None => {
            ss.write_all(&[VERDICT_ACCEPT])
                .await
                .map_err(SecureError::io("sending the verdict"))?;
            ss.flush()
                .await
                .map_err(SecureError::io("sending the verdict"))?;
            Ok((ss, peer))
        }
        Some((err, reason)) => {
            let mut v = vec![VERDICT_REFUSE];
            v.extend_from_slice(reason.as_bytes());
            let _ = ss.write_all(&v).await;
            let _ = ss.flush().await;
            linger_close(&mut ss).await;
            Err(err)
        }
    }
}

/// Controller side of `--insecure`: exchanges hellos in plain mode and
/// hands the stream back unchanged.
pub async fn client_plain<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    timeout: Duration,
) -> Result<S, SecureError> {
    within(timeout, async {
        send(&mut s, &hello::encode(Mode::Plain)).await?;
        match hello::read(&mut s).await? {
            Some(Mode::Plain) => Ok(s),
            Some(Mode::Noise) => Err(SecureError::AgentRequiresAuth {
                host: host.to_string(),
            }),
            None => Err(SecureError::ClosedByAgent {
                host: host.to_string(),
            }),
        }
    })
    .await
}

/// Agent side of `--insecure`: exchanges hellos in plain mode and hands the
/// stream back unchanged.
pub async fn server_plain<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    timeout: Duration,
) -> Result<S, SecureError> {
    within(timeout, async {
        send(&mut s, &hello::encode(Mode::Plain)).await?;
        match hello::read(&mut s).await? {
            Some(Mode::Plain) => Ok(s),
            Some(Mode::Noise) => {
                linger_close(&mut s).await;
                Err(SecureError::ControllerRequiresAuth)
            }
            None => Err(SecureError::Protocol(
                "controller closed the connection before its transport hello".into(),
            )),
        }
    })
    .await
}
