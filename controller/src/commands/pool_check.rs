//! `lnst-ctl pool check --pool DIR`: connects to every machine and reports
//! reachable / agent version / NICs present against the file.

use std::path::Path;

use lnst_common::{Request, Response, PROTOCOL_VERSION};

use crate::client::{AgentAddr, AgentClient};
use crate::exit::{Classify, ExitCode, Failure};
use crate::pool;
use crate::session::futures_join_all;

pub fn exec(dir: &Path, rt: tokio::runtime::Handle) -> Result<ExitCode, Failure> {
    let pool = pool::load_dir(dir).usage()?;
    let checks = pool.machines.iter().map(|m| async move {
        let addr: AgentAddr = match m.address.parse() {
            Ok(a) => a,
            Err(e) => return (m, Err(e)),
        };
        let c = match AgentClient::connect(&m.id, &addr).await {
            Ok(c) => c,
            Err(e) => return (m, Err(e.to_string())),
        };
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
                (m, Ok((ver, missing)))
            }
            Ok(other) => (m, Err(format!("unexpected reply {other:?}"))),
            Err(e) => (m, Err(e.to_string())),
        }
    });
    let results = rt.block_on(futures_join_all(checks));
    let mut bad = 0;
    for (m, r) in results {
        match r {
            Ok((ver, missing)) if missing.is_empty() => println!(
                "{:<16} OK    {}  agent {ver}, protocol {PROTOCOL_VERSION}, {} NIC(s) present",
                m.id,
                m.address,
                m.nics.len()
            ),
            Ok((ver, missing)) => {
                bad += 1;
                println!(
                    "{:<16} NICS  {}  agent {ver}: missing {} (fix {})",
                    m.id,
                    m.address,
                    missing.join(", "),
                    m.file.display()
                )
            }
            Err(e) => {
                bad += 1;
                println!("{:<16} DOWN  {}  {e}", m.id, m.address)
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
