//! The controller's connection to one agent.
//!
//! [`AgentClient::connect_with`] opens a TCP or unix socket, sets up the
//! transport on TCP (`lnst_common::secure::client_connect`: the Noise
//! handshake against the pool file's pinned agent key, or the plain hello
//! of `--insecure`; nothing is sent before the agent accepts our key),
//! exchanges the version preamble and `Hello`/`Welcome`, then runs three tasks: a reader
//! (replies to their waiting requests, events to a broadcast channel), a
//! writer (one frame per write, fed by a channel so any task can send) and
//! a heartbeat. Silence from the agent for the heartbeat timeout, a closed
//! socket or a bad frame marks the agent *lost*: every pending and later
//! request fails with [`ClientError::Lost`] naming the host, and
//! [`AgentClient::lost`] resolves so a run can fail fast.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnst_common::codec::{self, HEADER_LEN};
use lnst_common::handshake::{Preamble, PreambleError, PREAMBLE_LEN};
use lnst_common::proto::{Welcome, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS};
use lnst_common::secure::{client_connect, ClientAuth, Fingerprint, SecureError};
use lnst_common::{Event, Request, Response, ToAgent, ToController, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::Instrument;

/// Where an agent listens: `"192.0.2.10:9999"` or `"unix:/run/lnst/agent.sock"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for AgentAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("empty unix socket path in \"unix:\"".into());
            }
            return Ok(AgentAddr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(AgentAddr::Tcp).map_err(|_| {
            format!("bad agent address {s:?}: expected ADDR:PORT (\"192.0.2.10:9999\", \"[fd00::1]:9999\") or unix:PATH")
        })
    }
}

impl fmt::Display for AgentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentAddr::Tcp(a) => write!(f, "{a}"),
            AgentAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Everything that can go wrong talking to an agent. Each message names
/// the host and, where it helps, what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to agent {host} at {addr}: {message} (is lnst-agent running there?)")]
    Connect {
        host: String,
        addr: String,
        message: String,
    },
    /// The transport set-up failed: the agent refused our key, its key
    /// does not match the pin, one side runs `--insecure`, no key is
    /// configured, or the handshake broke. `message` names the host.
    #[error("{message}")]
    Auth { host: String, message: String },
    #[error("agent {host} refused the session: {reason}")]
    Refused { host: String, reason: String },
    #[error("agent {host}: {message}")]
    Version { host: String, message: String },
    #[error("lost agent {host}: {why}")]
    Lost { host: String, why: String },
    #[error("agent {host}: {error}")]
    Remote { host: String, error: WireError },
    #[error("agent {host}: protocol error: {message}")]
    Protocol { host: String, message: String },
}

impl ClientError {
    /// The wire error behind a `Remote` failure, for callers that act on
    /// its kind (a recipe catching `Unsupported`).
    pub fn remote(&self) -> Option<&WireError> {
        match self {
            ClientError::Remote { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Heartbeat period and loss timeout. `LNST_HEARTBEAT_MS` (interval; the
/// timeout is three intervals) overrides the defaults, for tests; the agent
/// reads the same variable.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Timing {
    pub fn from_env() -> Self {
        match std::env::var("LNST_HEARTBEAT_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(ms) if ms > 0 => Timing {
                interval: Duration::from_millis(ms),
                timeout: Duration::from_millis(ms * 3),
            },
            _ => Timing {
                interval: Duration::from_millis(HEARTBEAT_INTERVAL_MS),
                timeout: Duration::from_millis(HEARTBEAT_TIMEOUT_MS),
            },
        }
    }
}

/// How the connection to an agent is protected, for `pool check` and the
/// run log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// A unix socket: its file mode (0600, root) is the protection.
    UnixSocket,
    /// Noise over TCP; the agent's key (matching the pin) has this
    /// fingerprint.
    Authenticated { agent: Fingerprint },
    /// Plain TCP, `--insecure`.
    Insecure,
    /// A stream handed to [`AgentClient::handshake`] by the caller.
    Stream,
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protection::UnixSocket => write!(f, "unix socket"),
            Protection::Authenticated { agent } => write!(f, "authenticated, agent key {agent}"),
            Protection::Insecure => write!(f, "INSECURE (no authentication)"),
            Protection::Stream => write!(f, "caller's stream"),
        }
    }
}

/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Pending = HashMap<u64, oneshot::Sender<Result<Response, WireError>>>;

/// A connected agent. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct AgentClient {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    welcome: Welcome,
    protection: Protection,
    next_id: AtomicU64,
    sent: AtomicU64,
    /// std Mutex: held only to insert/remove, never across an await.
    pending: Mutex<Pending>,
    frames: mpsc::UnboundedSender<Vec<u8>>,
    events: broadcast::Sender<Event>,
    /// `Some(why)` once the agent is lost (or the session closed).
    lost: watch::Sender<Option<String>>,
    /// The silence after which the agent is lost, in ms (atomic: a lab
    /// whose agents run in slow guests lengthens it after connecting).
    silence_ms: AtomicU64,
}

/// Buffered events per subscriber; a slow reader that falls this far behind
/// sees `Lagged` rather than holding memory without bound.
const EVENT_CAPACITY: usize = 16 * 1024;

impl AgentClient {
    /// Connects to the agent at a unix socket address. A TCP address needs
    /// [`AgentClient::connect_with`] and a [`ClientAuth`]: this refuses it
    /// rather than talk to a root daemon unauthenticated by default.
    pub async fn connect(host: &str, addr: &AgentAddr) -> Result<AgentClient, ClientError> {
        Self::connect_with(host, addr, None).await
    }

    /// Connects to the agent at `addr`. `host` names it in every error
    /// (the recipe's host name, or the pool machine id). Over TCP, `auth`
    /// says how: Noise with our key and the pinned agent key, or
    /// `--insecure`; `None` is an error naming what to configure. A unix
    /// socket ignores `auth`.
    pub async fn connect_with(
        host: &str,
        addr: &AgentAddr,
        auth: Option<&ClientAuth>,
    ) -> Result<AgentClient, ClientError> {
        Self::connect_fenced(host, addr, auth, None).await
    }

    /// [`Self::connect_with`], saying in the hello that we hold shared-pool
    /// reservation `fence` (`HelloFenced`): an agent that has served a
    /// newer reservation refuses us.
    pub async fn connect_fenced(
        host: &str,
        addr: &AgentAddr,
        auth: Option<&ClientAuth>,
        fence: Option<u64>,
    ) -> Result<AgentClient, ClientError> {
        let conn_err = |message: String| ClientError::Connect {
            host: host.to_string(),
            addr: addr.to_string(),
            message,
        };
        match addr {
            AgentAddr::Tcp(a) => {
                let Some(auth) = auth else {
                    return Err(ClientError::Auth {
                        host: host.to_string(),
                        message: format!(
                            "agent {host} is at TCP address {a}, which needs authentication: \
                             create a controller key with `lnst-ctl keygen` and pin the agent's \
                             key in its pool file (key = \"lnst1:…\"), or pass --insecure"
                        ),
                    });
                };
                let s = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(a))
                    .await
                    .map_err(|_| conn_err(format!("no answer in {CONNECT_TIMEOUT:?}")))?
                    .map_err(|e| conn_err(e.to_string()))?;
                s.set_nodelay(true).map_err(|e| conn_err(e.to_string()))?;
                let t = client_connect(s, auth, host, CONNECT_TIMEOUT)
                    .instrument(tracing::info_span!("host", name = %host))
                    .await
                    .map_err(|e| auth_error(host, addr, e))?;
                let protection = match auth {
                    ClientAuth::Noise {
                        pinned: Some(p), ..
                    } => Protection::Authenticated {
                        agent: p.fingerprint(),
                    },
                    // client_connect fails without a pin.
                    ClientAuth::Noise { pinned: None, .. } => Protection::Stream,
                    ClientAuth::Insecure => Protection::Insecure,
                };
                tracing::info!(%host, %addr, %protection, "transport set up");
                Self::handshake_as(host, t, protection, fence).await
            }
            AgentAddr::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .and_then(lnst_common::unix::UnixConn::new)
                    .map_err(|e| conn_err(e.to_string()))?;
                Self::handshake_as(host, s, Protection::UnixSocket, fence).await
            }
        }
    }

    /// Runs the session over an already open stream (plain or encrypted).
    pub async fn handshake<S>(host: &str, stream: S) -> Result<AgentClient, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::handshake_as(host, stream, Protection::Stream, None).await
    }

    async fn handshake_as<S>(
        host: &str,
        stream: S,
        protection: Protection,
        fence: Option<u64>,
    ) -> Result<AgentClient, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (rd, mut wr) = tokio::io::split(stream);
        let mut rd = BufReader::new(rd);
        let proto = |message: String| ClientError::Protocol {
            host: host.to_string(),
            message,
        };
        let greet = async {
            wr.write_all(&Preamble::ours().encode())
                .await
                .map_err(|e| proto(format!("sending preamble: {e}")))?;
            let mut pre = [0u8; PREAMBLE_LEN];
            rd.read_exact(&mut pre)
                .await
                .map_err(|e| proto(format!("agent closed during the handshake: {e}")))?;
            Preamble::check(&pre).map_err(|e| match e {
                PreambleError::VersionMismatch { .. } => ClientError::Version {
                    host: host.to_string(),
                    message: e.to_string(),
                },
                PreambleError::BadMagic(_) => proto(e.to_string()),
            })?;
            let hello = match fence {
                None => ToAgent::Hello {
                    controller: controller_identity(),
                },
                Some(fence) => ToAgent::HelloFenced {
                    controller: controller_identity(),
                    fence,
                },
            };
            let frame = codec::encode_frame(&hello).map_err(|e| proto(e.to_string()))?;
            wr.write_all(&frame)
                .await
                .map_err(|e| proto(format!("sending hello: {e}")))?;
            match read_frame(&mut rd).await.map_err(proto)? {
                ToController::Welcome(w) => Ok(w),
                ToController::Refused { reason } => Err(ClientError::Refused {
                    host: host.to_string(),
                    reason,
                }),
                other => Err(proto(format!("expected Welcome, got {other:?}"))),
            }
        };
        let welcome = tokio::time::timeout(CONNECT_TIMEOUT, greet)
            .await
            .map_err(|_| proto(format!("no handshake answer in {CONNECT_TIMEOUT:?}")))??;

        let timing = Timing::from_env();
        let (frames, frames_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (lost, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            host: host.to_string(),
            welcome,
            protection,
            next_id: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            frames,
            events,
            lost,
            silence_ms: AtomicU64::new(timing.timeout.as_millis() as u64),
        });
        tokio::spawn(writer(inner.clone(), wr, frames_rx));
        tokio::spawn(reader(inner.clone(), rd));
        tokio::spawn(heartbeat(Arc::downgrade(&inner), timing.interval));
        Ok(AgentClient { inner })
    }

    /// Lengthens (or shortens) the silence after which the agent counts
    /// as lost; from the next frame on.
    pub fn set_silence_timeout(&self, d: Duration) {
        self.inner
            .silence_ms
            .store(d.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Sends one request and waits for its reply. An error reply from the
    /// agent is `ClientError::Remote`.
    pub async fn request(&self, req: Request) -> Result<Response, ClientError> {
        let inner = &self.inner;
        if let Some(why) = inner.lost.borrow().clone() {
            return Err(self.lost_error(why));
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = codec::encode_frame(&ToAgent::Request { id, req }).map_err(|e| {
            ClientError::Protocol {
                host: inner.host.clone(),
                message: e.to_string(),
            }
        })?;
        let (tx, rx) = oneshot::channel();
        lock(&inner.pending).insert(id, tx);
        // Re-check after inserting: the reader may have failed everything
        // pending between the first check and the insert.
        if let Some(why) = inner.lost.borrow().clone() {
            lock(&inner.pending).remove(&id);
            return Err(self.lost_error(why));
        }
        inner.sent.fetch_add(1, Ordering::Relaxed);
        if inner.frames.send(frame).is_err() {
            lock(&inner.pending).remove(&id);
            return Err(self.lost_error("connection closed".into()));
        }
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(error)) => Err(ClientError::Remote {
                host: inner.host.clone(),
                error,
            }),
            Err(_) => {
                let why = inner
                    .lost
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| "connection closed".into());
                Err(self.lost_error(why))
            }
        }
    }

    /// A new subscription to the agent's events (job output, job exits,
    /// device changes) from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub fn welcome(&self) -> &Welcome {
        &self.inner.welcome
    }

    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Requests sent so far (for RPC counts in benchmarks and summaries).
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Ends the session politely: `Goodbye`, then waits (bounded) for the
    /// agent to close, which it does after undoing the session.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.close_waiting(true).await
    }

    /// [`Self::close`], or with `wait` false: `Goodbye` and return at
    /// once. For an agent on a virtio-serial port, which cannot close
    /// the host side: its `Teardown` reply to `EndSession` already said
    /// everything was undone.
    pub async fn close_waiting(&self, wait: bool) -> Result<(), ClientError> {
        if !wait {
            if let Ok(f) = codec::encode_frame(&ToAgent::Goodbye) {
                let _ = self.inner.frames.send(f);
            }
            return Ok(());
        }
        if self.inner.lost.borrow().is_some() {
            return Ok(());
        }
        if let Ok(f) = codec::encode_frame(&ToAgent::Goodbye) {
            let _ = self.inner.frames.send(f);
        }
        let mut rx = self.inner.lost.subscribe();
        let done = async { rx.wait_for(|l| l.is_some()).await.is_ok() };
        let closed = tokio::time::timeout(Duration::from_secs(30), done).await;
        match closed {
            Ok(_) => Ok(()),
            Err(_) => Err(self.lost_error("no close after Goodbye within 30 s".into())),
        }
    }

    /// Resolves when the agent is lost (closed, silent or misbehaving),
    /// with the reason.
    pub async fn lost(&self) -> ClientError {
        let mut rx = self.inner.lost.subscribe();
        let why = match rx.wait_for(|l| l.is_some()).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => "connection closed".into(),
        };
        self.lost_error(why)
    }

    /// How this connection is protected.
    pub fn protection(&self) -> &Protection {
        &self.inner.protection
    }

    /// Whether the agent has been lost (or the session closed).
    pub fn is_lost(&self) -> bool {
        self.inner.lost.borrow().is_some()
    }

    fn lost_error(&self, why: String) -> ClientError {
        ClientError::Lost {
            host: self.inner.host.clone(),
            why,
        }
    }
}

fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic while holding this lock cannot leave the map inconsistent
    // (single insert/remove calls), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks the connection lost (first reason wins) and fails every pending
/// request by dropping its reply channel.
fn mark_lost(inner: &Inner, why: String) {
    inner.lost.send_if_modified(|l| {
        if l.is_none() {
            *l = Some(why);
            true
        } else {
            false
        }
    });
    lock(&inner.pending).clear();
}

/// A transport set-up failure as a [`ClientError`] whose message names the
/// host (and the address when the secure layer's message does not).
fn auth_error(host: &str, addr: &AgentAddr, e: SecureError) -> ClientError {
    let names_host = matches!(
        e,
        SecureError::AgentRequiresAuth { .. }
            | SecureError::AgentInsecure { .. }
            | SecureError::PinMismatch { .. }
            | SecureError::NoPin { .. }
            | SecureError::Refused { .. }
            | SecureError::ClosedByAgent { .. }
    );
    let message = if names_host {
        e.to_string()
    } else {
        format!("agent {host} at {addr}: transport set-up failed: {e}")
    };
    ClientError::Auth {
        host: host.to_string(),
        message,
    }
}

/// `user@hostname pid N`: who holds an agent, shown to a refused controller.
pub fn controller_identity() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", nix::unistd::getuid()));
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "?".into());
    format!("lnst-ctl {user}@{host} pid {}", std::process::id())
}

async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> Result<ToController, String> {
    let mut header = [0u8; HEADER_LEN];
    rd.read_exact(&mut header)
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let len = codec::decode_header(header).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body)
        .await
        .map_err(|e| format!("connection closed mid-frame: {e}"))?;
    codec::decode_body(&body).map_err(|e| e.to_string())
}

async fn reader<R: AsyncRead + Unpin>(inner: Arc<Inner>, mut rd: R) {
    loop {
        let timeout = Duration::from_millis(inner.silence_ms.load(Ordering::Relaxed));
        let frame = match tokio::time::timeout(timeout, read_frame(&mut rd)).await {
            Err(_) => {
                mark_lost(
                    &inner,
                    format!("silent for {:.1} s (no heartbeat)", timeout.as_secs_f64()),
                );
                return;
            }
            Ok(Err(e)) => {
                mark_lost(&inner, e);
                return;
            }
            Ok(Ok(f)) => f,
        };
        match frame {
            ToController::Reply { id, result } => {
                if let Some(tx) = lock(&inner.pending).remove(&id) {
                    let _ = tx.send(result);
                }
            }
            ToController::Event(ev) => {
                let _ = inner.events.send(ev);
            }
            ToController::Heartbeat => {}
            other => {
                mark_lost(&inner, format!("unexpected frame mid-session: {other:?}"));
                return;
            }
        }
    }
}

async fn writer<W: AsyncWrite + Unpin>(
    inner: Arc<Inner>,
    mut wr: W,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut lost = inner.lost.subscribe();
    loop {
        tokio::select! {
            f = frames.recv() => match f {
                Some(f) => {
                    if let Err(e) = wr.write_all(&f).await {
                        mark_lost(&inner, format!("write failed: {e}"));
                        return;
                    }
                }
                None => return,
            },
            _ = async { lost.wait_for(|l| l.is_some()).await.is_ok() } => {
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
}

/// Sends a heartbeat every `interval` while the client exists and the
/// connection lives.
async fn heartbeat(inner: std::sync::Weak<Inner>, interval: Duration) {
    let Ok(beat) = codec::encode_frame(&ToAgent::Heartbeat) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.lost.borrow().is_some() || inner.frames.send(beat.clone()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_parse() {
        assert_eq!(
            "unix:/run/a.sock".parse::<AgentAddr>().unwrap(),
            AgentAddr::Unix("/run/a.sock".into())
        );
        assert_eq!(
            "127.0.0.1:9999".parse::<AgentAddr>().unwrap().to_string(),
            "127.0.0.1:9999"
        );
        assert!("[::1]:1".parse::<AgentAddr>().is_ok());
        let e = "host-a".parse::<AgentAddr>().unwrap_err();
        assert!(e.contains("ADDR:PORT"), "{e}");
        assert!("unix:".parse::<AgentAddr>().is_err());
    }

    /// A fake agent on a duplex pipe: answers the preamble and Hello, then
    /// echoes requests as `Pong` replies out of order, and pushes an event.
    #[tokio::test]
    async fn concurrent_requests_are_correlated() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let agent = tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(b);
            let mut pre = [0u8; PREAMBLE_LEN];
            rd.read_exact(&mut pre).await.unwrap();
            wr.write_all(&Preamble::ours().encode()).await.unwrap();
            let hello = read_to_agent(&mut rd).await;
            assert!(matches!(hello, ToAgent::Hello { .. }));
            let w = ToController::Welcome(Welcome {
                hostname: "fake".into(),
                agent_version: "0".into(),
                pid: 1,
                replayed_at_start: 0,
                env: Default::default(),
            });
            wr.write_all(&codec::encode_frame(&w).unwrap())
                .await
                .unwrap();
            let mut ids = Vec::new();
            while ids.len() < 3 {
                if let ToAgent::Request { id, .. } = read_to_agent(&mut rd).await {
                    ids.push(id);
                }
            }
            let ev = ToController::Event(Event::DeviceRemoved {
                netns: None,
                ifindex: 3,
                name: "x".into(),
            });
            wr.write_all(&codec::encode_frame(&ev).unwrap())
                .await
                .unwrap();
            for id in ids.into_iter().rev() {
                let r = ToController::Reply {
                    id,
                    result: if id == 2 {
                        Err(WireError::not_found("no job 2"))
                    } else {
                        Ok(Response::Text(id.to_string()))
                    },
                };
                wr.write_all(&codec::encode_frame(&r).unwrap())
                    .await
                    .unwrap();
            }
            // Then go silent: the client must notice.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let c = AgentClient::handshake("h1", a).await.unwrap();
        let mut ev = c.events();
        let (r1, r2, r3) = tokio::join!(
            c.request(Request::Ping),
            c.request(Request::Ping),
            c.request(Request::Ping)
        );
        assert!(matches!(r1, Ok(Response::Text(ref s)) if s == "1"));
        let e = r2.unwrap_err();
        assert!(e.to_string().contains("h1") && e.to_string().contains("no job 2"));
        assert!(matches!(r3, Ok(Response::Text(ref s)) if s == "3"));
        assert!(matches!(ev.recv().await, Ok(Event::DeviceRemoved { .. })));
        assert_eq!(c.requests_sent(), 3);
        agent.abort();
        let lost = c.lost().await.to_string();
        assert!(lost.contains("lost agent h1"), "{lost}");
        let after = c.request(Request::Ping).await.unwrap_err();
        assert!(matches!(after, ClientError::Lost { .. }));
    }

    #[tokio::test]
    async fn version_mismatch_names_both_versions() {
        let (a, b) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(b);
            let mut pre = [0u8; PREAMBLE_LEN];
            let _ = rd.read_exact(&mut pre).await;
            let _ = wr.write_all(&Preamble { version: 999 }.encode()).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let e = match AgentClient::handshake("h2", a).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("handshake with a wrong version succeeded"),
        };
        assert!(e.contains("999") && e.contains("h2"), "{e}");
    }

    async fn read_to_agent<R: AsyncRead + Unpin>(rd: &mut R) -> ToAgent {
        let mut h = [0u8; HEADER_LEN];
        rd.read_exact(&mut h).await.unwrap();
        let mut b = vec![0u8; codec::decode_header(h).unwrap()];
        rd.read_exact(&mut b).await.unwrap();
        codec::decode_body(&b).unwrap()
    }
}
