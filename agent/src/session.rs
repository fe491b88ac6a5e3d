//! One connection, from preamble to teardown.
//!
//! Preamble → `Hello` (claim the agent or be `Refused`) → `Welcome` → the
//! request loop: each request runs in its own task, replies and events go
//! through one writer task fed by a channel, which also sends heartbeats.
//! The session ends on `Goodbye`, on the connection closing, on silence
//! longer than the heartbeat timeout, on a protocol error or on agent
//! shutdown; it then kills its jobs and replays the undo journal.
//!
//! Generic over the byte stream, so an authenticated, encrypted stream can
//! be passed in instead of a plain socket.

use std::sync::Arc;

use lnst_common::proto::Welcome;
use lnst_common::{ToAgent, ToController};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::agent::Agent;
use crate::connection::{exchange_preamble, ConnError, FrameReader, FrameWriter};
use crate::dispatch::{dispatch, SessionCtx};
use crate::limiter::HANDSHAKE_WARNINGS;

/// Queued outgoing frames per session (job output applies backpressure
/// beyond this).
const WRITE_QUEUE: usize = 1024;

/// Frames already queued are written together, up to about this many
/// bytes per write.
const WRITE_BATCH: usize = 64 * 1024;

/// Largest first frame (the Hello: a few dozen bytes of controller name):
/// nothing larger is read before a peer has said who it is.
const HELLO_MAX: usize = 64 * 1024;

/// Why a session ended.
#[derive(Debug)]
enum End {
    Goodbye,
    Closed(String),
    Silent,
    Protocol(String),
    Shutdown,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Goodbye => write!(f, "goodbye"),
            End::Closed(why) => write!(f, "connection lost: {why}"),
            End::Silent => write!(f, "controller silent past the heartbeat timeout"),
            End::Protocol(why) => write!(f, "{why}"),
            End::Shutdown => write!(f, "agent shutting down"),
        }
    }
}

/// Serves one connection. `peer` describes the other end for messages;
/// `shutdown` turning true ends the session (agent stopping).
pub async fn run<S>(agent: Arc<Agent>, mut stream: S, peer: String, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span = tracing::info_span!("conn", %peer);
    async move {
        let hb_timeout = agent.config.heartbeat_timeout;
        match tokio::time::timeout(hb_timeout, exchange_preamble(&mut stream)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if let Some(dropped) = HANDSHAKE_WARNINGS.allow() {
                    tracing::warn!(error = %e, suppressed = dropped, "handshake refused; closing");
                }
                return;
            }
            Err(_) => {
                if let Some(dropped) = HANDSHAKE_WARNINGS.allow() {
                    tracing::warn!(
                        suppressed = dropped,
                        "no preamble within {hb_timeout:?}; closing"
                    );
                }
                return;
            }
        }
        let (r, w) = tokio::io::split(stream);
        let mut reader = FrameReader::new(r);
        let mut writer = FrameWriter::new(w);

        let controller =
            match tokio::time::timeout(hb_timeout, reader.read_max::<ToAgent>(HELLO_MAX)).await {
                Ok(Ok(ToAgent::Hello { controller })) => (controller, None),
                Ok(Ok(ToAgent::HelloFenced { controller, fence })) => (controller, Some(fence)),
                Ok(Ok(other)) => {
                    let reason =
                        format!("protocol error: expected Hello first, got {}", kind(&other));
                    refuse(&mut writer, reason).await;
                    return;
                }
                Ok(Err(e)) => {
                    refuse_after(&mut writer, e).await;
                    return;
                }
                Err(_) => {
                    if let Some(dropped) = HANDSHAKE_WARNINGS.allow() {
                        tracing::warn!(
                            suppressed = dropped,
                            "no Hello within {hb_timeout:?}; closing"
                        );
                    }
                    return;
                }
            };
        let (controller, fence) = controller;
        let session = match agent.claim_fenced(&controller, &peer, fence) {
            Ok(s) => s,
            Err(reason) => {
                tracing::info!(%controller, %reason, "refusing second controller");
                refuse(&mut writer, reason).await;
                return;
            }
        };
        tracing::info!(session, %controller, "controller connected");
        let welcome = ToController::Welcome(Welcome {
            hostname: agent.hostname.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            replayed_at_start: agent.replayed_at_start,
            env: crate::net::env::host_env(&agent.undo_ctx.nets).await,
        });
        if let Err(e) = writer.write(&welcome).await {
            tracing::warn!(error = %e, "cannot send Welcome");
            agent.release(session);
            return;
        }

        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_task = tokio::spawn(write_loop(writer, rx, agent.config.heartbeat_interval));
        // Device changes of the namespaces this session touches.
        let device_events = agent.undo_ctx.nets.subscribe(session, tx.clone()).await;
        let ctx = Arc::new(SessionCtx {
            agent: agent.clone(),
            session,
            events: tx.clone(),
        });
        let end = read_loop(&mut reader, &ctx, &tx, shutdown).await;
        match &end {
            End::Goodbye => tracing::info!(session, "controller said goodbye"),
            other => tracing::warn!(session, reason = %other, "session ends"),
        }
        if let End::Protocol(reason) = &end {
            let _ = tx
                .send(ToController::Refused {
                    reason: reason.clone(),
                })
                .await;
        }
        drop(device_events);
        let errors = agent.teardown(session).await;
        for e in &errors {
            tracing::error!(session, error = %e, "teardown error");
        }
        agent.release(session);
        drop(ctx);
        drop(tx);
        // The writer ends once every sender (jobs, request tasks) is gone;
        // do not let a stuck peer hold the session open.
        let abort = writer_task.abort_handle();
        if tokio::time::timeout(hb_timeout, writer_task).await.is_err() {
            abort.abort();
        }
        tracing::info!(session, "session ended");
    }
    .instrument(span)
    .await
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    ctx: &Arc<SessionCtx>,
    tx: &mpsc::Sender<ToController>,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let hb_timeout = ctx.agent.config.heartbeat_timeout;
    let mut requests = JoinSet::new();
    let end = loop {
        tokio::select! {
            // Only the shutdown branch can interrupt a read, and then the
            // session is over anyway (reading a frame is not cancel-safe).
            _ = shutdown.wait_for(|s| *s) => break End::Shutdown,
            r = tokio::time::timeout(hb_timeout, reader.read::<ToAgent>()) => match r {
                Err(_) => break End::Silent,
                Ok(Ok(ToAgent::Heartbeat)) => {}
                Ok(Ok(ToAgent::Goodbye)) => break End::Goodbye,
                Ok(Ok(ToAgent::Hello { .. } | ToAgent::HelloFenced { .. })) => {
                    break End::Protocol("protocol error: Hello sent twice".into())
                }
                Ok(Ok(ToAgent::Request { id, req })) => {
                    let ctx = ctx.clone();
                    let tx = tx.clone();
                    let span = tracing::debug_span!("req", id);
                    requests.spawn(async move {
                        tracing::debug!(?req, "request");
                        let result = dispatch(&ctx, req).await;
                        let _ = tx.send(ToController::Reply { id, result }).await;
                    }.instrument(span));
                    while requests.try_join_next().is_some() {}
                }
                Ok(Err(ConnError::Closed)) => break End::Closed("closed without Goodbye".into()),
                Ok(Err(e @ ConnError::Codec(_))) => break End::Protocol(format!("protocol error: {e}")),
                Ok(Err(e)) => break End::Closed(e.to_string()),
            },
        }
    };
    // Requests still running belong to a session that is over.
    requests.abort_all();
    end
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: FrameWriter<W>,
    mut rx: mpsc::Receiver<ToController>,
    interval: std::time::Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = tick.tick() => ToController::Heartbeat,
        };
        // What is queued already goes in the same write (a waited job's
        // `JobFinished` and its reply: the controller wakes once for both).
        let mut next = Some(msg);
        while let Some(m) = next.take() {
            if let Err(e) = w.queue(&m) {
                tracing::debug!(error = %e, "cannot encode a frame; writer stops");
                return;
            }
            if w.queued() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = w.send_queued().await {
            tracing::debug!(error = %e, "write failed; writer stops");
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut FrameWriter<W>, reason: String) {
    let _ = w.write(&ToController::Refused { reason }).await;
    let _ = w.shutdown().await;
}

/// A bad first frame: tell the peer if the error is ours to explain.
async fn refuse_after<W: AsyncWrite + Unpin>(w: &mut FrameWriter<W>, e: ConnError) {
    if let Some(dropped) = HANDSHAKE_WARNINGS.allow() {
        tracing::warn!(error = %e, suppressed = dropped, "bad first frame; closing");
    }
    if let ConnError::Codec(_) = e {
        refuse(w, format!("protocol error: {e}")).await;
    }
}

fn kind(m: &ToAgent) -> &'static str {
    match m {
        ToAgent::Hello { .. } => "Hello",
        ToAgent::Request { .. } => "Request",
        ToAgent::Heartbeat => "Heartbeat",
        ToAgent::Goodbye => "Goodbye",
        ToAgent::HelloFenced { .. } => "HelloFenced",
    }
}
