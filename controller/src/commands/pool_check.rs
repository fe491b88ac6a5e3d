//! `lnst-ctl pool check --pool DIR`: connects to every machine and reports
//! reachable / authentication (agent key fingerprint, or why the
//! handshake failed) / agent version / NICs present against the file.

use std::path::Path;

use lnst_common::{Request, Response, PROTOCOL_VERSION};

use crate::client::{AgentAddr, AgentClient, ClientError};
use crate::commands::{auth_for, AuthArgs, INSECURE_WARNING};
use crate::exit::{Classify, ExitCode, Failure};
use crate::pool;
use crate::session::futures_join_all;

pub fn exec(dir: &Path, auth: &AuthArgs, rt: tokio::runtime::Handle) -> Result<ExitCode, Failure> {
    let pool = pool::load_dir(dir).usage()?;
    if auth.insecure {
        eprintln!("{INSECURE_WARNING}");
    }
    let machines: Vec<&pool::Machine> = pool.machines.iter().collect();
    let auths = auth_for(auth, &machines).usage()?;
    let auths = &auths;
    let checks = pool.machines.iter().map(|m| async move {
        let addr: AgentAddr = match m.address.parse() {
            Ok(a) => a,
            Err(e) => return (m, Err(("DOWN", e))),
        };
        let a = auths.get(&m.id).and_then(Option::as_ref);
        let c = match AgentClient::connect_with(&m.id, &addr, a).await {
            Ok(c) => c,
            Err(e @ ClientError::Auth { .. }) => return (m, Err(("AUTH", e.to_string()))),
            Err(e) => return (m, Err(("DOWN", e.to_string()))),
        };
        let prot = c.protection().to_string();
        let devs = c.request(Request::Devices { netns: None }).await;
        let ver = c.welcome().agent_version.clone();
        let _ = c.close().await;
        match devs {
            Ok(Response::Devices(d)) => {
                let missing: Vec<String> = m
                    .nics
                    .iter()
                    .filter(|n| !d.iter().any(|x| x.name == n.name))
                    .map(|n| n.name.clone())
                    .collect();
                (m, Ok((ver, prot, missing)))
            }
            Ok(other) => (m, Err(("DOWN", format!("unexpected reply {other:?}")))),
            Err(e) => (m, Err(("DOWN", e.to_string()))),
        }
    });
    let results = rt.block_on(futures_join_all(checks));
    let mut bad = 0;
    for (m, r) in results {
        match r {
            Ok((ver, prot, missing)) if missing.is_empty() => println!(
                "{:<16} OK    {}  {prot}; agent {ver}, protocol {PROTOCOL_VERSION}, {} NIC(s) present",
                m.id,
                m.address,
                m.nics.len()
            ),
            Ok((ver, prot, missing)) => {
                bad += 1;
                println!(
                    "{:<16} NICS  {}  {prot}; agent {ver}: missing {} (fix {})",
                    m.id,
                    m.address,
                    missing.join(", "),
                    m.file.display()
                )
            }
            Err((what, e)) => {
                bad += 1;
                println!("{:<16} {what:<5} {}  {e}", m.id, m.address)
            }
        }
    }
    if bad > 0 {
        return Err(Failure::new(
            ExitCode::Infra,
            anyhow::anyhow!("{bad} of {} machine(s) not ready", pool.machines.len()),
        ));
    }
    Ok(ExitCode::Pass)
}
