//! Accepting connections: a unix socket and any number of TCP listeners,
//! one task per connection ([`crate::session::run`]), until shutdown; then
//! waits for every session to finish its teardown.
//!
//! A TCP connection first goes through the transport set-up
//! (`lnst_common::secure::server_accept`: the Noise handshake and the
//! verdict on the controller's key, or the plain hello of `--insecure`) in
//! its own task, under a timeout, so a stalled or garbage connection never
//! delays the accept loop or other controllers. No protocol byte is read
//! before the controller is accepted. Unix sockets are plain: their file
//! mode (0600, root) is the protection (and they are polled for
//! readability only: `lnst_common::unix`). TCP streams get `TCP_NODELAY` (a
//! frame is one write; delaying it costs 40 ms). Connections that have not
//! authenticated are capped and evicted oldest first ([`crate::limiter`]),
//! and their failures are logged at a bounded rate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lnst_common::secure::{server_accept, ServerAuth};
use lnst_common::unix::UnixConn;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::agent::Agent;
use crate::limiter::{self, Gate, Permit, HANDSHAKE_WARNINGS};
use crate::session;

/// Binds a unix socket at `path`, mode 0600. A stale socket file (no agent
/// answering) is replaced; a live one is an error.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running agent", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Create the socket file 0600 from the start (no window with a wider
    // mode); the umask is process-wide, but nothing else creates files
    // while the agent starts.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    l
}

/// How TCP connections are set up before their session.
#[derive(Debug, Clone)]
pub struct TcpAuth {
    /// Noise with the agent's key and the accepted controller keys, or
    /// plain (`--insecure`). Shared by every connection task.
    pub auth: Arc<ServerAuth>,
    /// Bound on one connection's whole transport set-up.
    pub timeout: Duration,
}

/// Serves connections from `unix` and `tcp` (either may be absent) until
/// `shutdown` turns true, then waits for the sessions to end.
pub async fn serve(
    agent: Arc<Agent>,
    unix: Option<UnixListener>,
    tcp: Vec<TcpListener>,
    tcp_auth: TcpAuth,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    let mut conns = JoinSet::new();
    let gate = Gate::new(limiter::cap_for(limiter::raise_nofile()));
    // Each TCP listener accepts on its own task; accepted sockets come
    // here so that every session is in `conns` for the shutdown wait.
    let (tcp_tx, mut tcp_rx) = mpsc::channel::<(TcpStream, String)>(64);
    let mut acceptors = JoinSet::new();
    for l in tcp {
        let tx = tcp_tx.clone();
        acceptors.spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, a)) => {
                        if tx.send((s, a.to_string())).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "tcp accept failed");
                        // EMFILE and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    drop(tcp_tx);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = accept_unix(unix.as_ref()) => match r {
                Ok((s, peer)) => match UnixConn::new(s) {
                    Ok(s) => {
                        conns.spawn(session::run(agent.clone(), s, peer, shutdown.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, %peer, "cannot register a unix connection"),
                },
                Err(e) => tracing::warn!(error = %e, "unix accept failed"),
            },
            Some((s, peer)) = tcp_rx.recv() => {
                if let Err(e) = s.set_nodelay(true) {
                    tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                }
                let permit = gate.enter();
                conns.spawn(serve_tcp(agent.clone(), s, peer, tcp_auth.clone(), permit, shutdown.clone()));
            }
        }
    }
    acceptors.abort_all();
    while conns.join_next().await.is_some() {}
}

/// One TCP connection: the transport set-up, then the session. A refusal
/// is logged with the controller's key and fingerprint (the controller
/// has been told why); shutdown abandons a set-up still running.
async fn serve_tcp(
    agent: Arc<Agent>,
    s: TcpStream,
    peer: String,
    tcp_auth: TcpAuth,
    mut permit: Permit,
    shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("tcp", %peer);
    let mut stop = shutdown.clone();
    let window = permit.gate().window(tcp_auth.timeout);
    let set_up = async {
        tokio::select! {
            r = server_accept(s, &tcp_auth.auth, window) => Some(r),
            _ = stop.wait_for(|s| *s) => None,
            _ = &mut permit.evicted => {
                if let Some(dropped) = HANDSHAKE_WARNINGS.allow() {
                    tracing::warn!(pending = permit.gate().max(), suppressed = dropped,
                        "too many connections waiting for their handshake; closing the oldest");
                }
                None
            }
        }
    }
    .instrument(span.clone())
    .await;
    match set_up {
        None => {}
        Some(Ok((t, key))) => {
            // Authenticated: its place goes to the next stranger. An
            // --insecure connection never authenticates and keeps it.
            let _permit = match key {
                Some(_) => {
                    drop(permit);
                    None
                }
                None => Some(permit),
            };
            let peer = match key {
                Some(k) => {
                    span.in_scope(|| {
                        tracing::info!(key = %k, fingerprint = %k.fingerprint(), "controller authenticated")
                    });
                    format!("{peer} (key {})", k.fingerprint())
                }
                None => format!("{peer} (unauthenticated, --insecure)"),
            };
            session::run(agent, t, peer, shutdown).await;
        }
        Some(Err(e)) => {
            if let Some(dropped) = HANDSHAKE_WARNINGS.allow() {
                span.in_scope(|| {
                    tracing::warn!(error = %e, suppressed = dropped,
                        "transport set-up failed; connection closed before any request")
                })
            }
        }
    }
}

async fn accept_unix(
    l: Option<&UnixListener>,
) -> std::io::Result<(tokio::net::UnixStream, String)> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    let (s, _) = l.accept().await?;
    let peer = match s.peer_cred() {
        Ok(c) => format!(
            "unix socket (pid {}, uid {})",
            c.pid().map_or("?".to_string(), |p| p.to_string()),
            c.uid()
        ),
        Err(_) => "unix socket".to_string(),
    };
    Ok((s, peer))
}
