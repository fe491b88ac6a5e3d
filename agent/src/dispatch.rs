//! Requests to handlers: one `match` over [`Request`] with no catch-all
//! arm, so a new request variant does not compile until it is routed.
//! Session and job requests are handled here and in [`crate::jobs`];
//! device, host and file requests go to [`crate::todo_net`] until the
//! netlink layer replaces it.

use std::sync::Arc;
use std::time::Duration;

use lnst_common::{Request, Response, WireError};

use crate::agent::Agent;
use crate::jobs::EventTx;
use crate::todo_net as net;
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
    match req {
        Request::Ping => Ok(Response::Pong),
        Request::EndSession => end_session(ctx).await,
        Request::JournalTest { path, marker } => journal_test(ctx, path, marker),
        Request::JobStart(spec) => {
            let wait = spec.wait;
            let id = ctx
                .agent
                .jobs
                .start(spec, ctx.session, ctx.events.clone())
                .await?;
            if wait {
                Ok(Response::Job(ctx.agent.jobs.wait(id, None).await?))
            } else {
                Ok(Response::JobStarted { id })
            }
        }
        Request::JobWait { id, timeout_ms } => Ok(Response::Job(
            ctx.agent
                .jobs
                .wait(id, timeout_ms.map(Duration::from_millis))
                .await?,
        )),
        Request::JobKill { id, signal } => {
            ctx.agent.jobs.kill(id, signal)?;
            Ok(Response::Done)
        }

        Request::Devices { netns } => net::devices(ctx, netns).await,
        Request::SetMtu { dev, mtu } => net::set_mtu(ctx, dev, mtu).await,
        Request::SetMac { dev, mac } => net::set_mac(ctx, dev, mac).await,
        Request::SetState { dev, up } => net::set_state(ctx, dev, up).await,
        Request::SetMaster { dev, master } => net::set_master(ctx, dev, master).await,
        Request::IpAdd { dev, cidr } => net::ip_add(ctx, dev, cidr).await,
        Request::IpDel { dev, cidr } => net::ip_del(ctx, dev, cidr).await,
        Request::IpFlush { dev } => net::ip_flush(ctx, dev).await,
        Request::Features { dev } => net::features(ctx, dev).await,
        Request::SetFeatures { dev, features } => net::set_features(ctx, dev, features).await,
        Request::WaitCarrier { dev, timeout_ms } => net::wait_carrier(ctx, dev, timeout_ms).await,
        Request::MoveTo { dev, netns } => net::move_to(ctx, dev, netns).await,
        Request::Destroy { dev } => net::destroy(ctx, dev).await,
        Request::Create { netns, name, spec } => net::create(ctx, netns, name, spec).await,
        Request::NetnsCreate { name } => net::netns_create(ctx, name).await,
        Request::SysctlGet { netns, key } => net::sysctl_get(ctx, netns, key).await,
        Request::SysctlSet { netns, key, value } => net::sysctl_set(ctx, netns, key, value).await,
        Request::FileRead { netns, path } => net::file_read(ctx, netns, path).await,
        Request::FileWrite { netns, path, data } => net::file_write(ctx, netns, path, data).await,
        Request::RouteAdd { netns, route } => net::route_add(ctx, netns, route).await,
        Request::RouteDel { netns, route } => net::route_del(ctx, netns, route).await,
        Request::FilePut {
            path,
            offset,
            data,
            last,
        } => net::file_put(ctx, path, offset, data, last).await,
        Request::FileGet { path, offset, len } => net::file_get(ctx, path, offset, len).await,
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
