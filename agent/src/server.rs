//! Accepting connections: a unix socket and/or a TCP listener, one task per
//! connection ([`crate::session::run`]), until shutdown; then waits for
//! every session to finish its teardown.
//!
//! TCP streams get `TCP_NODELAY` (a frame is one write; delaying it costs
//! 40 ms). Authentication will wrap the TCP stream here, before the
//! session, which only needs `AsyncRead + AsyncWrite`.

use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::agent::Agent;
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

/// Serves connections from `unix` and `tcp` (either may be absent) until
/// `shutdown` turns true, then waits for the sessions to end.
pub async fn serve(
    agent: Arc<Agent>,
    unix: Option<UnixListener>,
    tcp: Option<TcpListener>,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = accept_unix(unix.as_ref()) => match r {
                Ok((s, peer)) => {
                    conns.spawn(session::run(agent.clone(), s, peer, shutdown.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "unix accept failed"),
            },
            r = accept_tcp(tcp.as_ref()) => match r {
                Ok((s, peer)) => {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                    }
                    conns.spawn(session::run(agent.clone(), s, peer, shutdown.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "tcp accept failed"),
            },
        }
    }
    while conns.join_next().await.is_some() {}
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

async fn accept_tcp(l: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, String)> {
    let Some(l) = l else {
        return std::future::pending().await;
    };
    let (s, a) = l.accept().await?;
    Ok((s, a.to_string()))
}
