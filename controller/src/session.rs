//! The agents of one run: connected together, ended together.
//!
//! [`Session::connect`] opens every agent in parallel; [`Session::end`]
//! asks each agent to undo the match (`EndSession`: kill jobs, replay the
//! undo journal) and [`Session::close`] says goodbye. Both keep going past
//! an error and return every error met, so one broken host never stops
//! the others from being cleaned up.

use std::collections::BTreeMap;

use lnst_common::{Request, Response};

use lnst_common::secure::ClientAuth;

use crate::client::{AgentAddr, AgentClient, ClientError};

/// What [`Session::end`] found.
#[derive(Debug, Default)]
pub struct Ended {
    /// `HOST: could not undo: WHAT: WHY`, one per change an agent could
    /// not undo (it keeps it in its journal and retries it later).
    pub not_undone: Vec<String>,
    /// `HOST: WHY; ...may not be clean`, one per agent lost before it
    /// answered `EndSession`.
    pub lost: Vec<String>,
}

/// Connected agents by requirement host name.
pub struct Session {
    pub clients: BTreeMap<String, AgentClient>,
}

impl Session {
    /// Connects to every agent at once; the first failure wins (the others
    /// are closed again).
    /// Unix sockets only; TCP agents need [`Session::connect_with`].
    pub async fn connect(addrs: &BTreeMap<String, AgentAddr>) -> Result<Session, ClientError> {
        let targets = addrs
            .iter()
            .map(|(h, a)| (h.clone(), (a.clone(), None)))
            .collect();
        Self::connect_with(&targets).await
    }

    /// [`Session::connect`] with each agent's transport authentication
    /// (`None` for a unix socket).
    pub async fn connect_with(
        targets: &BTreeMap<String, (AgentAddr, Option<ClientAuth>)>,
    ) -> Result<Session, ClientError> {
        Self::connect_fenced(targets, None).await
    }

    /// [`Session::connect_with`] holding shared-pool reservation `fence`
    /// (see [`AgentClient::connect_fenced`]).
    pub async fn connect_fenced(
        targets: &BTreeMap<String, (AgentAddr, Option<ClientAuth>)>,
        fence: Option<u64>,
    ) -> Result<Session, ClientError> {
        let futs = targets.iter().map(|(host, (addr, auth))| async move {
            AgentClient::connect_fenced(host, addr, auth.as_ref(), fence)
                .await
                .map(|c| (host.clone(), c))
        });
        let results = futures_join_all(futs).await;
        let mut clients = BTreeMap::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok((h, c)) => {
                    clients.insert(h, c);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            let s = Session { clients };
            s.close().await;
            return Err(e);
        }
        Ok(Session { clients })
    }

    /// `EndSession` on every agent in parallel: jobs killed, changes undone.
    /// Says what each agent could not undo, and which agents were lost
    /// before they said they were done (their hosts may not be clean).
    pub async fn end(&self) -> Ended {
        let futs = self.clients.iter().map(|(h, c)| async move {
            match c.request(Request::EndSession).await {
                Ok(Response::Teardown { errors }) => (
                    errors
                        .into_iter()
                        .map(|e| match e.strip_prefix("undo ") {
                            Some(what) => format!("{h}: could not undo {what}"),
                            None => format!("{h}: could not undo: {e}"),
                        })
                        .collect(),
                    None,
                ),
                Ok(other) => (
                    vec![],
                    Some(format!("{h}: unexpected reply {other:?} to EndSession")),
                ),
                Err(e) => (vec![], Some(format!("{h}: {e}"))),
            }
        });
        let mut out = Ended::default();
        for (undo, lost) in futures_join_all(futs).await {
            out.not_undone.extend(undo);
            out.lost.extend(lost.map(|l| {
                format!("{l}; the agent was lost while cleaning up, this host may not be clean")
            }));
        }
        out
    }

    /// Goodbye to every agent in parallel; returns the errors.
    pub async fn close(&self) -> Vec<String> {
        self.close_waiting(true).await
    }

    /// [`Self::close`]; with `wait` false, without waiting for the agents
    /// to close (see [`AgentClient::close_waiting`]).
    pub async fn close_waiting(&self, wait: bool) -> Vec<String> {
        let futs = self
            .clients
            .values()
            .map(|c| async move { c.close_waiting(wait).await });
        futures_join_all(futs)
            .await
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect()
    }

    /// Requests sent to each agent.
    pub fn rpcs(&self) -> BTreeMap<String, u64> {
        self.clients
            .iter()
            .map(|(h, c)| (h.clone(), c.requests_sent()))
            .collect()
    }
}

/// Runs futures concurrently on the current task and collects their
/// outputs in order (a small `join_all`, to avoid a dependency).
pub async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
