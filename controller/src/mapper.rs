//! The mapper: which pool machine and NIC plays each requirement of a
//! recipe (RECIPES.md §3). A pure function of the requirements and the pool.
//!
//! Rules: each requirement host maps to a different machine whose params
//! match every key of the requirement (an array means "one of"); each NIC
//! to a different NIC of that machine whose attributes match; NICs that
//! share a `net` label map to NICs on one pool network, and different
//! labels to different pool networks.
//!
//! Search: hosts in requirement order, machines in id order, backtracking.
//! Before searching, each host's candidate machines are computed on their
//! own (params, NIC attributes, labels inside the host) and each label's
//! possible networks are narrowed; most impossible requests are explained
//! from these without any search. When none is found, [`MapError`] names
//! the requirement that failed, why, and the closest candidates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;

use crate::pool::{Machine, Pool};

/// What a recipe asks for, collected by the declaration phase.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Requirements {
    pub hosts: Vec<HostReq>,
}

/// `host(name, #{ k: v })`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostReq {
    pub name: String,
    pub params: BTreeMap<String, Value>,
    pub nics: Vec<NicReq>,
}

/// `H.nic(name, #{ net: .., k: v })`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NicReq {
    pub name: String,
    pub net: Option<String>,
    /// Keys other than `net`, matched against the pool NIC's attributes.
    pub attrs: BTreeMap<String, Value>,
}

/// One requirement host's place in a match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostMatch {
    pub machine: String,
    /// Requirement NIC name → pool NIC name.
    pub nics: BTreeMap<String, String>,
}

/// A complete match: requirement host name → its machine and NICs.
pub type Mapping = BTreeMap<String, HostMatch>;

/// No match, explained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MapError(pub String);

/// Upper bound on search steps before giving up with an explanation.
const STEP_BUDGET: u64 = 5_000_000;

/// Does a requirement value accept the pool's value? An array means "one
/// of"; numbers compare by value; a number and its text are equal.
pub fn value_matches(want: &Value, have: &Value) -> bool {
    match want {
        Value::Array(options) => options.iter().any(|w| scalar_eq(w, have)),
        w => scalar_eq(w, have),
    }
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Number(x), Value::String(s)) | (Value::String(s), Value::Number(x)) => {
            s.trim().parse::<f64>().ok() == x.as_f64()
        }
        _ => a == b,
    }
}

fn show(v: &Value) -> String {
    v.to_string()
}

/// A machine that passed a host's own checks, with each NIC requirement's
/// possible machine NICs.
struct Cand {
    machine: usize,
    /// `options[j]`: indices into the machine's NICs for NIC requirement j.
    options: Vec<Vec<usize>>,
}

/// The fast path of [`reject_reasons`] + [`local_fit`]: `Some(options)`
/// when the machine can play the host on its own.
fn quick_fit(h: &HostReq, m: &Machine) -> Option<Vec<Vec<usize>>> {
    if h.nics.len() > m.nics.len() {
        return None;
    }
    for (k, want) in &h.params {
        if !m
            .params
            .get(k)
            .is_some_and(|have| value_matches(want, have))
        {
            return None;
        }
    }
    let mut options = Vec::with_capacity(h.nics.len());
    for n in &h.nics {
        let opts = nic_options(n, m);
        if opts.is_empty() {
            return None;
        }
        options.push(opts);
    }
    local_fit(h, m, &options).then_some(options)
}

/// The indexes of `m`'s NICs that can play requirement NIC `n` on their
/// own: cabled when `n` has a net label, every attribute matching.
fn nic_options(n: &NicReq, m: &Machine) -> Vec<usize> {
    m.nics
        .iter()
        .enumerate()
        .filter(|(_, pn)| {
            (n.net.is_none() || pn.net.is_some())
                && n.attrs
                    .iter()
                    .all(|(k, w)| pn.attrs.get(k).is_some_and(|h| value_matches(w, h)))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Why a machine cannot play a host, on its own.
fn reject_reasons(h: &HostReq, m: &Machine) -> (Vec<String>, Vec<Vec<usize>>) {
    let mut why = Vec::new();
    for (k, want) in &h.params {
        match m.params.get(k) {
            None => why.push(format!("has no param {k}")),
            Some(have) if !value_matches(want, have) => why.push(format!(
                "param {k} is {}, wanted {}",
                show(have),
                show(want)
            )),
            _ => {}
        }
    }
    if h.nics.len() > m.nics.len() {
        why.push(format!(
            "has {} NIC(s), {} needed",
            m.nics.len(),
            h.nics.len()
        ));
    }
    let mut options = Vec::with_capacity(h.nics.len());
    for n in &h.nics {
        let opts = nic_options(n, m);
        if opts.is_empty() {
            let mut wanted: Vec<String> = n
                .attrs
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect();
            if n.net.is_some() {
                wanted.push("cabled to a network".into());
            }
            why.push(format!("no NIC for {} ({})", n.name, wanted.join(", ")));
        }
        options.push(opts);
    }
    (why, options)
}

struct Search<'a> {
    req: &'a Requirements,
    pool: &'a Pool,
    cands: Vec<Vec<Cand>>,
    used: Vec<bool>,
    label_net: HashMap<&'a str, &'a str>,
    net_label: HashMap<&'a str, &'a str>,
    /// Current partial assignment: per host, (machine, nic indices).
    current: Vec<(usize, Vec<usize>)>,
    found: Vec<Mapping>,
    limit: usize,
    steps: u64,
    /// Deepest host index reached and a snapshot of the assignment then.
    deepest: usize,
    deepest_snapshot: Vec<(usize, Vec<usize>)>,
    deepest_labels: Vec<(String, String)>,
}

impl<'a> Search<'a> {
    fn done(&self) -> bool {
        self.found.len() >= self.limit || self.steps > STEP_BUDGET
    }

    fn host(&mut self, k: usize) {
        if k > self.deepest || (k == self.deepest && self.deepest_snapshot.is_empty() && k > 0) {
            self.deepest = k;
            self.deepest_snapshot = self.current.clone();
            self.deepest_labels = self
                .label_net
                .iter()
                .map(|(l, n)| (l.to_string(), n.to_string()))
                .collect();
        }
        if k == self.req.hosts.len() {
            self.found.push(self.mapping());
            return;
        }
        for ci in 0..self.cands[k].len() {
            let mi = self.cands[k][ci].machine;
            if self.used[mi] {
                continue;
            }
            self.used[mi] = true;
            self.current.push((mi, Vec::new()));
            self.nic(k, ci, 0);
            self.current.pop();
            self.used[mi] = false;
            if self.done() {
                return;
            }
        }
    }

    fn nic(&mut self, k: usize, ci: usize, j: usize) {
        self.steps += 1;
        let h = &self.req.hosts[k];
        if j == h.nics.len() {
            self.host(k + 1);
            return;
        }
        let label = h.nics[j].net.as_deref();
        let mi = self.cands[k][ci].machine;
        let pool = self.pool;
        for oi in 0..self.cands[k][ci].options[j].len() {
            let ni = self.cands[k][ci].options[j][oi];
            if self.current[k].1.contains(&ni) {
                continue;
            }
            let net = pool.machines[mi].nics[ni].net.as_deref();
            let mut bound = false;
            if let (Some(l), Some(n)) = (label, net) {
                match (self.label_net.get(l), self.net_label.get(n)) {
                    (Some(&bn), _) if bn != n => continue,
                    (Some(_), _) => {}
                    (None, Some(_)) => continue,
                    (None, None) => {
                        self.label_net.insert(l, n);
                        self.net_label.insert(n, l);
                        bound = true;
                    }
                }
            }
            self.current[k].1.push(ni);
            self.nic(k, ci, j + 1);
            self.current[k].1.pop();
            if bound {
                if let (Some(l), Some(n)) = (label, net) {
                    self.label_net.remove(l);
                    self.net_label.remove(n);
                }
            }
            if self.done() {
                return;
            }
        }
    }

    fn mapping(&self) -> Mapping {
        self.req
            .hosts
            .iter()
            .zip(&self.current)
            .map(|(h, (mi, nis))| {
                let m = &self.pool.machines[*mi];
                let nics = h
                    .nics
                    .iter()
                    .zip(nis)
                    .map(|(n, ni)| (n.name.clone(), m.nics[*ni].name.clone()))
                    .collect();
                (
                    h.name.clone(),
                    HostMatch {
                        machine: m.id.clone(),
                        nics,
                    },
                )
            })
            .collect()
    }
}

/// The first match.
pub fn map_first(req: &Requirements, pool: &Pool) -> Result<Mapping, MapError> {
    let mut all = map(req, pool, 1)?;
    all.pop()
        .ok_or_else(|| MapError("internal: search ended without a match or an explanation".into()))
}

/// Every match, up to `limit` (`--all-matches`).
pub fn map_all(req: &Requirements, pool: &Pool, limit: usize) -> Result<Vec<Mapping>, MapError> {
    map(req, pool, limit)
}

fn map(req: &Requirements, pool: &Pool, limit: usize) -> Result<Vec<Mapping>, MapError> {
    if req.hosts.is_empty() {
        return Ok(vec![Mapping::new()]);
    }
    // Each host on its own.
    let mut cands = Vec::with_capacity(req.hosts.len());
    for h in &req.hosts {
        let mut ok = Vec::new();
        let mut rejected: Vec<(usize, String, Vec<String>)> = Vec::new();
        for (mi, m) in pool.machines.iter().enumerate() {
            if let Some(options) = quick_fit(h, m) {
                ok.push(Cand {
                    machine: mi,
                    options,
                });
            }
        }
        if ok.is_empty() {
            for (mi, m) in pool.machines.iter().enumerate() {
                let (why, options) = reject_reasons(h, m);
                if why.is_empty() {
                    if local_fit(h, m, &options) {
                        ok.push(Cand {
                            machine: mi,
                            options,
                        });
                    } else {
                        rejected.push((
                        mi,
                        m.id.clone(),
                        vec!["its NICs cannot carry this host's net labels (NICs with one label must share a network, different labels need different networks)".into()],
                    ));
                    }
                } else {
                    rejected.push((mi, m.id.clone(), why));
                }
            }
        }
        if ok.is_empty() {
            rejected.sort_by_key(|(mi, _, why)| (why.len(), *mi));
            let mut msg = format!(
                "host requirement {:?}{} cannot be satisfied: none of the {} pool machine(s) fits.",
                h.name,
                describe_host(h),
                pool.machines.len()
            );
            if !rejected.is_empty() {
                msg.push_str(" Closest candidates:");
                for (_, id, why) in rejected.iter().take(3) {
                    let _ = write!(msg, "\n  {id}: {}", why.join("; "));
                }
            }
            return Err(MapError(msg));
        }
        cands.push(ok);
    }
    if req.hosts.len() > pool.machines.len() {
        return Err(MapError(format!(
            "the recipe needs {} hosts ({}) but the pool has only {} machine(s); each host needs its own machine",
            req.hosts.len(),
            req.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
            pool.machines.len()
        )));
    }
    // Each label's possible networks: for every NIC carrying it, the
    // networks its candidate NICs reach; intersect.
    let mut domains: BTreeMap<&str, (BTreeSet<&str>, Vec<String>)> = BTreeMap::new();
    for (k, h) in req.hosts.iter().enumerate() {
        for (j, n) in h.nics.iter().enumerate() {
            let Some(l) = n.net.as_deref() else { continue };
            let reach: BTreeSet<&str> = cands[k]
                .iter()
                .flat_map(|c| {
                    c.options[j]
                        .iter()
                        .filter_map(|&ni| pool.machines[c.machine].nics[ni].net.as_deref())
                })
                .collect();
            let e = domains
                .entry(l)
                .or_insert_with(|| (reach.clone(), Vec::new()));
            e.0 = e.0.intersection(&reach).copied().collect();
            e.1.push(format!(
                "{}.{} reaches {}",
                h.name,
                n.name,
                if reach.is_empty() {
                    "no network".to_string()
                } else {
                    reach.iter().copied().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    for (l, (dom, who)) in &domains {
        if dom.is_empty() {
            return Err(MapError(format!(
                "net label {l:?} cannot be satisfied: its NICs must share one pool network, but no network reaches them all ({})",
                who.join("; ")
            )));
        }
    }
    let mut s = Search {
        req,
        pool,
        cands,
        used: vec![false; pool.machines.len()],
        label_net: HashMap::new(),
        net_label: HashMap::new(),
        current: Vec::new(),
        found: Vec::new(),
        limit: limit.max(1),
        steps: 0,
        deepest: 0,
        deepest_snapshot: Vec::new(),
        deepest_labels: Vec::new(),
    };
    s.host(0);
    if !s.found.is_empty() {
        return Ok(s.found);
    }
    Err(MapError(explain_combination(&s)))
}

fn describe_host(h: &HostReq) -> String {
    let mut parts: Vec<String> = h
        .params
        .iter()
        .map(|(k, v)| format!("{k}={}", show(v)))
        .collect();
    for n in &h.nics {
        let mut p = vec![];
        if let Some(l) = &n.net {
            p.push(format!("net={l}"));
        }
        p.extend(n.attrs.iter().map(|(k, v)| format!("{k}={}", show(v))));
        parts.push(format!(
            "nic {}{}",
            n.name,
            if p.is_empty() {
                String::new()
            } else {
                format!("({})", p.join(", "))
            }
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(", "))
    }
}

/// Every host fits some machine alone, but not all together.
fn explain_combination(s: &Search) -> String {
    if s.steps > STEP_BUDGET {
        return format!(
            "no match found within {STEP_BUDGET} search steps; the requirements are probably contradictory (try fewer hosts or labels to find which)"
        );
    }
    let k = s.deepest.min(s.req.hosts.len() - 1);
    let h = &s.req.hosts[k];
    let mut msg = format!(
        "host requirement {:?}{} cannot be satisfied together with the hosts before it",
        h.name,
        describe_host(h)
    );
    if k > 0 {
        let placed: Vec<String> = s
            .deepest_snapshot
            .iter()
            .zip(&s.req.hosts)
            .map(|((mi, _), hr)| format!("{}→{}", hr.name, s.pool.machines[*mi].id))
            .collect();
        let mut labels = s.deepest_labels.clone();
        labels.sort();
        let labels: Vec<String> = labels.iter().map(|(l, n)| format!("{l}→{n}")).collect();
        let _ = write!(
            msg,
            " (deepest partial match: {}; labels {})",
            placed.join(", "),
            if labels.is_empty() {
                "unbound".to_string()
            } else {
                labels.join(", ")
            }
        );
    }
    msg.push_str(". Its candidate machines:");
    let used: HashMap<usize, &str> = s
        .deepest_snapshot
        .iter()
        .zip(&s.req.hosts)
        .map(|((mi, _), hr)| (*mi, hr.name.as_str()))
        .collect();
    let bound: HashMap<&str, &str> = s
        .deepest_labels
        .iter()
        .map(|(l, n)| (l.as_str(), n.as_str()))
        .collect();
    for c in s.cands[k].iter().take(5) {
        let m = &s.pool.machines[c.machine];
        let why = if let Some(o) = used.get(&c.machine) {
            format!("already taken by host {o}")
        } else {
            let mut parts = vec![];
            for (j, n) in h.nics.iter().enumerate() {
                let Some(l) = n.net.as_deref() else { continue };
                let nets: BTreeSet<&str> = c.options[j]
                    .iter()
                    .filter_map(|&ni| m.nics[ni].net.as_deref())
                    .collect();
                match bound.get(l) {
                    Some(want) if !nets.contains(want) => parts.push(format!(
                        "{} (net {l}) must be on network {want}, its NICs reach {}",
                        n.name,
                        nets.iter().copied().collect::<Vec<_>>().join(", ")
                    )),
                    None => {
                        let taken: Vec<&str> = nets
                            .iter()
                            .filter(|x| bound.values().any(|b| b == *x))
                            .copied()
                            .collect();
                        if taken.len() == nets.len() {
                            parts.push(format!(
                                "{} (net {l}) needs a network of its own, but {} already carry other labels",
                                n.name,
                                taken.join(", ")
                            ));
                        }
                    }
                    _ => {}
                }
            }
            if parts.is_empty() {
                "no NIC assignment fits the labels bound by the other hosts".to_string()
            } else {
                parts.join("; ")
            }
        };
        let _ = write!(msg, "\n  {}: {why}", m.id);
    }
    if s.cands[k].len() > 5 {
        let _ = write!(msg, "\n  ... and {} more", s.cands[k].len() - 5);
    }
    msg
}

/// Can the host's NICs be placed on this machine, labels consistent within
/// the host?
fn local_fit(h: &HostReq, m: &Machine, options: &[Vec<usize>]) -> bool {
    /// Labels bound inside this host: (label, network); tiny, so a Vec.
    fn go<'a>(
        h: &'a HostReq,
        m: &'a Machine,
        options: &[Vec<usize>],
        j: usize,
        used: &mut Vec<usize>,
        bound: &mut Vec<(&'a str, &'a str)>,
    ) -> bool {
        if j == h.nics.len() {
            return true;
        }
        for &ni in &options[j] {
            if used.contains(&ni) {
                continue;
            }
            let mut pushed = false;
            if let (Some(l), Some(n)) = (h.nics[j].net.as_deref(), m.nics[ni].net.as_deref()) {
                match bound.iter().find(|(bl, bn)| *bl == l || *bn == n) {
                    Some(&(bl, bn)) if bl == l && bn == n => {}
                    Some(_) => continue,
                    None => {
                        bound.push((l, n));
                        pushed = true;
                    }
                }
            }
            used.push(ni);
            let ok = go(h, m, options, j + 1, used, bound);
            used.pop();
            if pushed {
                bound.pop();
            }
            if ok {
                return true;
            }
        }
        false
    }
    go(h, m, options, 0, &mut Vec::new(), &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolNic;
    use serde_json::json;
    use std::path::PathBuf;

    fn machine(id: &str, params: Value, nics: &[(&str, Option<&str>, Value)]) -> Machine {
        Machine {
            id: id.into(),
            address: "unix:/x".into(),
            params: serde_json::from_value(params).unwrap(),
            nics: nics
                .iter()
                .map(|(n, net, attrs)| {
                    let mut a: BTreeMap<String, Value> =
                        serde_json::from_value(attrs.clone()).unwrap();
                    a.insert("name".into(), json!(n));
                    if let Some(net) = net {
                        a.insert("net".into(), json!(net));
                    }
                    PoolNic {
                        name: n.to_string(),
                        net: net.map(str::to_string),
                        attrs: a,
                    }
                })
                .collect(),
            extra: BTreeMap::new(),
            file: PathBuf::from(format!("{id}.toml")),
        }
    }

    fn host(name: &str, params: Value, nics: &[(&str, Option<&str>, Value)]) -> HostReq {
        HostReq {
            name: name.into(),
            params: serde_json::from_value(params).unwrap(),
            nics: nics
                .iter()
                .map(|(n, net, attrs)| NicReq {
                    name: n.to_string(),
                    net: net.map(str::to_string),
                    attrs: serde_json::from_value(attrs.clone()).unwrap(),
                })
                .collect(),
        }
    }

    fn pool(ms: Vec<Machine>) -> Pool {
        Pool { machines: ms }
    }

    fn two_host_req() -> Requirements {
        Requirements {
            hosts: vec![
                host("h1", json!({}), &[("eth0", Some("net1"), json!({}))]),
                host("h2", json!({}), &[("eth0", Some("net1"), json!({}))]),
            ],
        }
    }

    #[test]
    fn simple_pair() {
        let p = pool(vec![
            machine("a", json!({}), &[("ens1", Some("t1"), json!({}))]),
            machine("b", json!({}), &[("ens2", Some("t1"), json!({}))]),
        ]);
        let m = map_first(&two_host_req(), &p).unwrap();
        assert_eq!(m["h1"].machine, "a");
        assert_eq!(m["h2"].machine, "b");
        assert_eq!(m["h2"].nics["eth0"], "ens2");
        assert_eq!(map_all(&two_host_req(), &p, 100).unwrap().len(), 2);
    }

    #[test]
    fn label_needs_common_network() {
        let p = pool(vec![
            machine("a", json!({}), &[("ens1", Some("t1"), json!({}))]),
            machine("b", json!({}), &[("ens2", Some("t2"), json!({}))]),
        ]);
        let e = map_first(&two_host_req(), &p).unwrap_err().0;
        assert!(
            e.contains("\"h2\"")
                && e.contains("eth0 (net net1) must be on network t1, its NICs reach t2"),
            "{e}"
        );
    }

    #[test]
    fn different_labels_need_different_networks() {
        // Both hosts have two NICs on the same network only: net1 and net2
        // cannot both be bound to t1.
        let req = Requirements {
            hosts: vec![
                host(
                    "h1",
                    json!({}),
                    &[
                        ("a", Some("net1"), json!({})),
                        ("b", Some("net2"), json!({})),
                    ],
                ),
                host("h2", json!({}), &[("a", Some("net1"), json!({}))]),
            ],
        };
        let p = pool(vec![
            machine(
                "m1",
                json!({}),
                &[("x", Some("t1"), json!({})), ("y", Some("t1"), json!({}))],
            ),
            machine("m2", json!({}), &[("x", Some("t1"), json!({}))]),
        ]);
        let e = map_first(&req, &p).unwrap_err().0;
        assert!(e.contains("\"h1\"") && e.contains("net labels"), "{e}");
        // With a second network on m1 it works, and net2 goes to t2.
        let p = pool(vec![
            machine(
                "m1",
                json!({}),
                &[("x", Some("t1"), json!({})), ("y", Some("t2"), json!({}))],
            ),
            machine("m2", json!({}), &[("x", Some("t1"), json!({}))]),
        ]);
        let m = map_first(&req, &p).unwrap();
        assert_eq!(m["h1"].nics["a"], "x");
        assert_eq!(m["h1"].nics["b"], "y");
    }

    #[test]
    fn label_conflict_across_hosts_is_explained() {
        // h1 needs net1 and net2 on separate networks; h2's only NIC is on
        // the network that net2 must take, but h2 wants net1.
        let req = Requirements {
            hosts: vec![
                host(
                    "h1",
                    json!({}),
                    &[
                        ("a", Some("net1"), json!({"driver": "ixgbe"})),
                        ("b", Some("net2"), json!({})),
                    ],
                ),
                host("h2", json!({}), &[("a", Some("net1"), json!({}))]),
            ],
        };
        let p = pool(vec![
            machine(
                "m1",
                json!({}),
                &[
                    ("x", Some("t1"), json!({"driver": "ixgbe"})),
                    ("y", Some("t2"), json!({"driver": "i40e"})),
                ],
            ),
            machine("m2", json!({}), &[("x", Some("t2"), json!({}))]),
        ]);
        let e = map_first(&req, &p).unwrap_err().0;
        assert!(
            e.contains("\"h2\"")
                && e.contains("a (net net1) must be on network t1, its NICs reach t2"),
            "{e}"
        );
        // When no candidate of any host reaches a common network, the
        // label itself is named.
        let mut req = req;
        req.hosts[1].params.insert("role".into(), json!("b"));
        let p = pool(vec![
            machine(
                "m1",
                json!({}),
                &[
                    ("x", Some("t1"), json!({"driver": "ixgbe"})),
                    ("y", Some("t2"), json!({})),
                ],
            ),
            machine("m2", json!({"role": "b"}), &[("x", Some("t3"), json!({}))]),
            machine("m3", json!({"role": "b"}), &[("x", Some("t3"), json!({}))]),
        ]);
        let e = map_first(&req, &p).unwrap_err().0;
        assert!(
            e.contains("net label \"net1\"")
                && e.contains("h1.a reaches t1")
                && e.contains("h2.a reaches t3"),
            "{e}"
        );
    }

    #[test]
    fn combination_failure_names_host_and_taken_machine() {
        let req = Requirements {
            hosts: vec![
                host("h1", json!({}), &[("a", Some("n1"), json!({}))]),
                host("h2", json!({}), &[("a", Some("n2"), json!({}))]),
            ],
        };
        // Both machines are only on t1: n1 and n2 would both need t1.
        let p = pool(vec![
            machine(
                "m1",
                json!({}),
                &[("x", Some("t1"), json!({})), ("y", Some("t2"), json!({}))],
            ),
            machine("m2", json!({}), &[("x", Some("t1"), json!({}))]),
        ]);
        // h1 on m1 may take t2 for n1, leaving t1 for n2 on m2: works.
        let m = map_first(&req, &p).unwrap();
        assert_eq!(m["h1"].nics["a"], "y");
        let p = pool(vec![
            machine("m1", json!({}), &[("x", Some("t1"), json!({}))]),
            machine("m2", json!({}), &[("x", Some("t1"), json!({}))]),
        ]);
        let e = map_first(&req, &p).unwrap_err().0;
        assert!(
            e.contains("\"h2\"") && e.contains("already taken by host h1"),
            "{e}"
        );
        assert!(e.contains("needs a network of its own"), "{e}");
    }

    #[test]
    fn params_and_one_of() {
        let req = Requirements {
            hosts: vec![host("h1", json!({"arch": ["aarch64", "riscv64"]}), &[])],
        };
        let p = pool(vec![
            machine("x86", json!({"arch": "x86_64"}), &[]),
            machine("arm", json!({"arch": "aarch64"}), &[]),
        ]);
        assert_eq!(map_first(&req, &p).unwrap()["h1"].machine, "arm");
        let p = pool(vec![
            machine("x86", json!({"arch": "x86_64"}), &[]),
            machine("bare", json!({}), &[]),
        ]);
        let e = map_first(&req, &p).unwrap_err().0;
        assert!(
            e.contains("\"h1\"")
                && e.contains("x86: param arch is \"x86_64\"")
                && e.contains("bare: has no param arch"),
            "{e}"
        );
    }

    #[test]
    fn several_nics_per_host_and_attributes() {
        let req = Requirements {
            hosts: vec![host(
                "h1",
                json!({}),
                &[
                    ("fast", None, json!({"speed": 100000})),
                    ("slow", None, json!({"driver": "e1000"})),
                    ("any", None, json!({})),
                ],
            )],
        };
        let p = pool(vec![machine(
            "m",
            json!({}),
            &[
                ("e0", None, json!({"driver": "e1000", "speed": 1000})),
                ("e1", None, json!({"driver": "mlx5", "speed": 100000})),
                ("e2", None, json!({"driver": "e1000", "speed": "1000"})),
            ],
        )]);
        let all = map_all(&req, &p, 100).unwrap();
        // fast→e1 only; slow→e0 or e2; any→the other: 2 matches.
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|m| m["h1"].nics["fast"] == "e1"));
        let req2 = Requirements {
            hosts: vec![host(
                "h1",
                json!({}),
                &[
                    ("a", None, json!({"speed": 1000})),
                    ("b", None, json!({"speed": 1000})),
                    ("c", None, json!({"speed": 1000})),
                ],
            )],
        };
        let e = map_first(&req2, &p).unwrap_err().0;
        assert!(e.contains("\"h1\""), "{e}");
    }

    #[test]
    fn all_matches_counts() {
        // 3 identical machines on one network, 2 hosts: 3*2 ordered matches.
        let ms: Vec<Machine> = (0..3)
            .map(|i| machine(&format!("m{i}"), json!({}), &[("e0", Some("t"), json!({}))]))
            .collect();
        assert_eq!(
            map_all(&two_host_req(), &pool(ms.clone()), 1000)
                .unwrap()
                .len(),
            6
        );
        assert_eq!(map_all(&two_host_req(), &pool(ms), 4).unwrap().len(), 4);
        // Two NICs per machine on the same network: each host may use either NIC.
        let ms: Vec<Machine> = (0..2)
            .map(|i| {
                machine(
                    &format!("m{i}"),
                    json!({}),
                    &[("e0", Some("t"), json!({})), ("e1", Some("t"), json!({}))],
                )
            })
            .collect();
        assert_eq!(
            map_all(&two_host_req(), &pool(ms), 1000).unwrap().len(),
            2 * 2 * 2
        );
    }

    #[test]
    fn too_few_machines() {
        let p = pool(vec![machine(
            "a",
            json!({}),
            &[("e0", Some("t"), json!({}))],
        )]);
        let e = map_first(&two_host_req(), &p).unwrap_err().0;
        assert!(e.contains("2 hosts") && e.contains("only 1"), "{e}");
    }

    #[test]
    fn unlabelled_nic_may_be_uncabled_labelled_may_not() {
        let req = Requirements {
            hosts: vec![host("h1", json!({}), &[("a", Some("n"), json!({}))])],
        };
        let p = pool(vec![machine("m", json!({}), &[("e0", None, json!({}))])]);
        let e = map_first(&req, &p).unwrap_err().0;
        assert!(e.contains("cabled to a network"), "{e}");
        let req = Requirements {
            hosts: vec![host("h1", json!({}), &[("a", None, json!({}))])],
        };
        assert!(map_first(&req, &p).is_ok());
    }

    /// 8 hosts, 2 NICs each on two labels, onto 1000 machines: ≤ 100 ms.
    #[test]
    fn bench_8_hosts_on_1000_machines() {
        let ms: Vec<Machine> = (0..1000)
            .map(|i| {
                machine(
                    &format!("m{i:04}"),
                    json!({"arch": if i % 2 == 0 { "x86_64" } else { "aarch64" }, "rack": i / 100}),
                    &[
                        (
                            "e0",
                            Some(&*format!("t{}", i % 10)),
                            json!({"driver": "ixgbe", "speed": 10000}),
                        ),
                        ("e1", Some("mgmt-only"), json!({"driver": "igb"})),
                        (
                            "e2",
                            Some(&*format!("t{}", (i + 1) % 10)),
                            json!({"driver": "mlx5", "speed": 100000}),
                        ),
                    ],
                )
            })
            .collect();
        let p = pool(ms);
        let req = Requirements {
            hosts: (0..8)
                .map(|i| {
                    host(
                        &format!("h{i}"),
                        json!({"arch": "aarch64"}),
                        &[
                            ("a", Some("net1"), json!({"speed": 10000})),
                            ("b", Some("net2"), json!({"driver": "mlx5"})),
                        ],
                    )
                })
                .collect(),
        };
        let t = std::time::Instant::now();
        let m = map_first(&req, &p).unwrap();
        let el = t.elapsed();
        eprintln!("mapper: 8 hosts onto 1000 machines in {el:?}");
        assert_eq!(m.len(), 8);
        // The goal (≤ 100 ms) is for the release build; unoptimised test
        // builds get ten times the room.
        let budget = if cfg!(debug_assertions) { 1000 } else { 100 };
        assert!(el.as_millis() <= budget, "{el:?}");
        // An impossible variant is explained quickly too.
        let mut bad = req.clone();
        bad.hosts[7].params.insert("arch".into(), json!("sparc"));
        let t = std::time::Instant::now();
        assert!(map_first(&bad, &p).is_err());
        assert!(t.elapsed().as_millis() <= budget, "{:?}", t.elapsed());
    }
}
