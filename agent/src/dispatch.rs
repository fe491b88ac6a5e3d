//! Requests to handlers: one `match` over [`Request`] with no catch-all
//! arm, so a new request variant does not compile until it is routed.
//! Session and job requests are handled here and in [`crate::jobs`];
//! device, host and file requests go to [`crate::net`], with the journal
//! as the recorder of how to undo each change.

use std::sync::Arc;
use std::time::Duration;

use lnst_common::device::{DeviceInfo, DeviceSpec};
use lnst_common::{Request, Response, WireError};

use crate::agent::Agent;
use crate::jobs::EventTx;
use crate::net;
use crate::undo::UndoEntry;

/// What a handler knows about the request's session.
pub struct SessionCtx {
    pub agent: Arc<Agent>,
    /// This session's id (jobs are tagged with it).
    pub session: u64,
    /// The session's writer: events (job output, ...) go here.
    pub events: EventTx,
}

/// Handles one request.
pub async fn dispatch(ctx: &SessionCtx, req: Request) -> Result<Response, WireError> {
    let nets = &ctx.agent.undo_ctx.nets;
    let rec = &ctx.agent.journal;
    crate::limits::check(&req)?;
    for ns in netns_named(&req) {
        nets.touch(ctx.session, ns).await;
    }
    match req {
        Request::Ping => Ok(Response::Pong),
        Request::JournalEmpty => Ok(Response::Bool(ctx.agent.journal.entries()?.is_empty())),
        Request::EndSession => end_session(ctx).await,
        Request::JournalTest { path, marker } => journal_test(ctx, path, marker),
        Request::JobStart(spec) if spec.wait => Ok(Response::Job(
            ctx.agent
                .jobs
                .run(&ctx.agent.journal, spec, ctx.session, ctx.events.clone())
                .await?,
        )),
        Request::JobStart(spec) => {
            let id = ctx
                .agent
                .jobs
                .start(&ctx.agent.journal, spec, ctx.session, ctx.events.clone())
                .await?;
            Ok(Response::JobStarted { id })
        }
        Request::JobWait { id, timeout_ms } => {
            let status = ctx
                .agent
                .jobs
                .wait(id, timeout_ms.map(Duration::from_millis))
                .await?;
            if status.exit.is_some() {
                // The controller has the job's end and output now.
                ctx.agent.jobs.forget(id);
            }
            Ok(Response::Job(status))
        }
        Request::JobKill { id, signal } => {
            ctx.agent.jobs.kill(id, signal)?;
            Ok(Response::Done)
        }

        Request::Devices { netns } => Ok(Response::Devices(
            net::devices(nets, netns.as_deref()).await?,
        )),
        Request::SetMtu { dev, mtu } => device(net::set_mtu(nets, rec, &dev, mtu).await),
        Request::SetMac { dev, mac } => device(net::set_mac(nets, rec, &dev, &mac).await),
        Request::SetState { dev, up } => device(net::set_state(nets, rec, &dev, up).await),
        Request::SetMaster { dev, master } => {
            device(net::set_master(nets, rec, &dev, master.as_deref()).await)
        }
        Request::IpAdd { dev, cidr } => device(net::ip_add(nets, rec, &dev, &cidr).await),
        Request::IpDel { dev, cidr } => device(net::ip_del(nets, rec, &dev, &cidr).await),
        Request::IpFlush { dev } => device(net::ip_flush(nets, rec, &dev).await),
        Request::Features { dev } => Ok(Response::Features(net::features(nets, &dev).await?)),
        Request::SetFeatures { dev, features } => Ok(Response::Features(
            net::set_features(nets, rec, &dev, &features).await?,
        )),
        Request::WaitCarrier { dev, timeout_ms } => Ok(Response::Bool(
            net::wait_carrier(nets, &dev, timeout_ms).await?,
        )),
        Request::MoveTo { dev, netns } => {
            device(net::move_to(nets, rec, &dev, netns.as_deref()).await)
        }
        Request::Destroy { dev } => {
            net::destroy(nets, rec, &dev).await?;
            Ok(Response::Done)
        }
        Request::Create { netns, name, spec } => {
            device(net::create(nets, rec, netns.as_deref(), &name, &spec).await)
        }
        Request::NetnsCreate { name } => {
            // Per session too, so a later session of this agent never meets
            // a leftover of an earlier one.
            let name = format!("s{}-{name}", ctx.session);
            let name = net::netns_create(nets, rec, &name).await?;
            nets.touch(ctx.session, Some(&name)).await;
            Ok(Response::Netns { name })
        }
        Request::SysctlGet { netns, key } => Ok(Response::Text(
            net::sysctl_get(nets, netns.as_deref(), &key).await?,
        )),
        Request::SysctlSet { netns, key, value } => Ok(Response::Text(
            net::sysctl_set(nets, rec, netns.as_deref(), &key, &value).await?,
        )),
        Request::FileRead { netns, path } => Ok(Response::Bytes(
            net::file_read(nets, netns.as_deref(), &path).await?,
        )),
        Request::FileWrite { netns, path, data } => {
            net::file_write(nets, rec, netns.as_deref(), &path, &data).await?;
            Ok(Response::Done)
        }
        Request::RouteAdd { netns, route } => {
            net::route_add(nets, rec, netns.as_deref(), &route).await?;
            Ok(Response::Done)
        }
        Request::RouteDel { netns, route } => {
            net::route_del(nets, rec, netns.as_deref(), &route).await?;
            Ok(Response::Done)
        }
        Request::FilePut {
            path,
            offset,
            data,
            last,
        } => {
            net::file_put(nets, rec, &path, offset, &data, last).await?;
            Ok(Response::Done)
        }
        Request::FileGet { path, offset, len } => {
            let (data, eof) = net::file_get(nets, &path, offset, len).await?;
            Ok(Response::FileChunk { data, eof })
        }
        Request::Defer { netns, command } => defer(ctx, netns, command),
        Request::NeighAdd { netns, neigh } => {
            net::neigh_add(nets, rec, netns.as_deref(), &neigh).await?;
            Ok(Response::Done)
        }
        Request::NeighDel { netns, neigh } => {
            net::neigh_del(nets, rec, netns.as_deref(), &neigh).await?;
            Ok(Response::Done)
        }
        Request::Neighs { netns, dev } => Ok(Response::Neighs(
            net::neighs(nets, netns.as_deref(), dev.as_deref()).await?,
        )),
        Request::EthtoolGet { dev, group } => Ok(Response::Settings(
            net::ethtool_get(nets, &dev, &group).await?,
        )),
        Request::EthtoolSet { dev, group, values } => Ok(Response::Settings(
            net::ethtool_set(nets, rec, &dev, &group, &values).await?,
        )),
        Request::IpAddWith { dev, cidr, nodad } => {
            device(net::ip_add_with(nets, rec, &dev, &cidr, nodad).await)
        }
        Request::Service { name, action } => {
            let journal = &ctx.agent.journal;
            Ok(Response::Text(
                crate::service::service(
                    &crate::service::Systemctl::default(),
                    crate::service::systemd_running(),
                    &|e| journal.record(e),
                    &name,
                    &action,
                )
                .await?,
            ))
        }
        Request::Netem { dev, netem } => {
            net::netem(nets, rec, &dev, netem.as_ref()).await?;
            Ok(Response::Done)
        }
    }
}

/// `EndSession`: kill the session's jobs, replay the journal, report all
/// errors. The session stays open (the controller says Goodbye next).
async fn end_session(ctx: &SessionCtx) -> Result<Response, WireError> {
    let errors = ctx.agent.teardown(ctx.session).await;
    Ok(Response::Teardown { errors })
}

/// `JournalTest`: journal an entry whose undo writes a marker; nothing to
/// apply.
fn journal_test(ctx: &SessionCtx, path: String, marker: String) -> Result<Response, WireError> {
    ctx.agent.journal.record(UndoEntry::Test { path, marker })?;
    Ok(Response::Done)
}

/// `Defer`: journal (fsynced) a shell command for undo time; nothing to
/// apply now.
fn defer(ctx: &SessionCtx, netns: Option<String>, command: String) -> Result<Response, WireError> {
    if command.trim().is_empty() {
        return Err(WireError::invalid("defer: the command is empty"));
    }
    if let Some(n) = &netns {
        net::nsthread::netns_ident(n)?;
    }
    ctx.agent
        .journal
        .record(UndoEntry::Command { netns, command })?;
    Ok(Response::Done)
}

/// The namespaces a request names (`None`: the agent's own), so the
/// session hears of device changes there (`Event::DeviceChanged`).
fn netns_named(req: &Request) -> Vec<Option<&str>> {
    match req {
        Request::JobStart(spec) => vec![spec.netns.as_deref()],
        Request::Create {
            netns,
            spec: DeviceSpec::Veth { peer_netns, .. },
            ..
        } => vec![netns.as_deref(), peer_netns.as_deref().or(netns.as_deref())],
        Request::Devices { netns }
        | Request::Create { netns, .. }
        | Request::SysctlGet { netns, .. }
        | Request::SysctlSet { netns, .. }
        | Request::FileRead { netns, .. }
        | Request::FileWrite { netns, .. }
        | Request::RouteAdd { netns, .. }
        | Request::RouteDel { netns, .. }
        | Request::Defer { netns, .. }
        | Request::NeighAdd { netns, .. }
        | Request::NeighDel { netns, .. }
        | Request::Neighs { netns, .. } => vec![netns.as_deref()],
        Request::SetMtu { dev, .. }
        | Request::SetMac { dev, .. }
        | Request::SetState { dev, .. }
        | Request::SetMaster { dev, .. }
        | Request::IpAdd { dev, .. }
        | Request::IpDel { dev, .. }
        | Request::IpFlush { dev }
        | Request::Features { dev }
        | Request::SetFeatures { dev, .. }
        | Request::WaitCarrier { dev, .. }
        | Request::Destroy { dev }
        | Request::EthtoolGet { dev, .. }
        | Request::EthtoolSet { dev, .. }
        | Request::IpAddWith { dev, .. }
        | Request::Netem { dev, .. } => vec![dev.netns.as_deref()],
        Request::MoveTo { dev, netns } => vec![dev.netns.as_deref(), netns.as_deref()],
        Request::Ping
        | Request::JournalEmpty
        | Request::EndSession
        | Request::JournalTest { .. }
        | Request::JobWait { .. }
        | Request::JobKill { .. }
        | Request::NetnsCreate { .. }
        | Request::FilePut { .. }
        | Request::FileGet { .. }
        | Request::Service { .. } => vec![],
    }
}

/// A changed device's reply: the device as it is now.
fn device(r: Result<DeviceInfo, WireError>) -> Result<Response, WireError> {
    r.map(Response::Device)
}
