//! `tc qdisc replace dev DEV root handle 4c4e: netem ..` and `tc qdisc
//! del dev DEV root`: a netem qdisc as the device's root, over rtnetlink
//! (`RTM_NEWQDISC`/`RTM_DELQDISC`). netlink-packet-route has no netem
//! options, so `TCA_OPTIONS` is built here as iproute2 builds it: a
//! `struct tc_netem_qopt` followed by netem attributes (`TCA_NETEM_*`);
//! delay and jitter go in the 64-bit nanosecond attributes, which override
//! the struct's tick fields.
//!
//! Undo: the qdisc this layer puts up has handle [`OURS`]. Over the
//! kernel's default root (handle 0: `noqueue`, `pfifo_fast`, `mq`, ..)
//! `netem` records `DelRootQdisc` (deleting a root qdisc brings the
//! default back); over a root qdisc someone configured it records
//! `RestoreRootQdisc` with that qdisc's kind, handle and raw options, put
//! back with `tc qdisc replace`. Changing our own netem records nothing
//! more.

use futures::TryStreamExt;
use lnst_common::device::DevRef;
use lnst_common::host::NetemSpec;
use lnst_common::{ErrorKind, WireError};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{
    DefaultNla, Emitable, NetlinkMessage, NetlinkPayload, Nla, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use serde::{Deserialize, Serialize};

use super::error::nl_error;
use super::links::get_link;
use super::nsthread::NsConn;
use super::{ns_label, NetUndo, Nets, Recorder};

/// Handle major of the netem qdisc this layer adds (`4c4e:`, "LN").
pub const OURS: u16 = 0x4c4e;

const TCA_OPTIONS: u16 = 2;
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;
/// iproute2's default queue limit (packets).
const LIMIT: u32 = 1000;

/// A root qdisc as it was, to put back.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SavedQdisc {
    pub kind: String,
    pub handle: u32,
    /// The `TCA_OPTIONS` payload as the kernel dumped it.
    pub options: Option<Vec<u8>>,
}

/// The keys `dev.netem(#{..})` takes, for messages.
pub const KEYS: &str = "delay, jitter, loss, duplicate, reorder, corrupt, rate";

/// `percent` as netem's u32 probability (`UINT32_MAX` is 100%).
fn prob(percent: f64) -> u32 {
    (percent / 100.0 * f64::from(u32::MAX)).round() as u32
}

fn push_nla(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// Checks `n` (ranges, and what netem needs together).
pub fn check(n: &NetemSpec, dev: &str) -> Result<(), WireError> {
    let bad = |m: String| WireError::invalid(format!("netem on {dev}: {m}"));
    for (k, v) in [("delay", n.delay), ("jitter", n.jitter)] {
        if let Some(v) = v {
            if !(0.0..=3_600_000.0).contains(&v) {
                return Err(bad(format!("{k} = {v} ms is out of range 0..=3600000")));
            }
        }
    }
    for (k, v) in [
        ("loss", n.loss),
        ("duplicate", n.duplicate),
        ("reorder", n.reorder),
        ("corrupt", n.corrupt),
    ] {
        if let Some(v) = v {
            if !(0.0..=100.0).contains(&v) {
                return Err(bad(format!("{k} = {v} is out of range 0..=100 (percent)")));
            }
        }
    }
    if n.reorder.is_some_and(|r| r > 0.0) && !n.delay.is_some_and(|d| d > 0.0) {
        return Err(bad(
            "reorder needs a delay (packets are reordered by sending some without it)".into(),
        ));
    }
    if n.rate == Some(0) {
        return Err(bad(
            "rate = 0: give bits per second above 0, or leave it out".into(),
        ));
    }
    Ok(())
}

/// The `TCA_OPTIONS` payload of `n`, as `tc qdisc .. netem` sends it.
pub fn options(n: &NetemSpec) -> Vec<u8> {
    let mut b = Vec::new();
    let delay = n.delay.unwrap_or(0.0);
    let reorder = n.reorder.unwrap_or(0.0);
    // struct tc_netem_qopt: latency, limit, loss, gap, duplicate, jitter
    let gap = u32::from(reorder > 0.0);
    for v in [
        0,
        LIMIT,
        prob(n.loss.unwrap_or(0.0)),
        gap,
        prob(n.duplicate.unwrap_or(0.0)),
        0,
    ] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    let ns = |ms: f64| ((ms * 1e6).round() as i64).to_ne_bytes();
    push_nla(&mut b, TCA_NETEM_LATENCY64, &ns(delay));
    push_nla(&mut b, TCA_NETEM_JITTER64, &ns(n.jitter.unwrap_or(0.0)));
    if reorder > 0.0 {
        let mut p = prob(reorder).to_ne_bytes().to_vec();
        p.extend_from_slice(&0u32.to_ne_bytes());
        push_nla(&mut b, TCA_NETEM_REORDER, &p);
    }
    if let Some(c) = n.corrupt {
        let mut p = prob(c).to_ne_bytes().to_vec();
        p.extend_from_slice(&0u32.to_ne_bytes());
        push_nla(&mut b, TCA_NETEM_CORRUPT, &p);
    }
    if let Some(bps) = n.rate {
        let bytes = bps / 8;
        // struct tc_netem_rate: rate, packet_overhead, cell_size, cell_overhead
        let mut p = Vec::new();
        p.extend_from_slice(&(u32::try_from(bytes).unwrap_or(u32::MAX)).to_ne_bytes());
        p.extend_from_slice(&[0u8; 12]);
        push_nla(&mut b, TCA_NETEM_RATE, &p);
        if bytes >= 1 << 32 {
            push_nla(&mut b, TCA_NETEM_RATE64, &bytes.to_ne_bytes());
        }
    }
    b
}

/// The device's root qdisc: (kind, handle, raw options).
async fn root_qdisc(conn: &NsConn, index: u32) -> Result<Option<SavedQdisc>, WireError> {
    let msgs: Vec<TcMessage> = conn
        .rt
        .qdisc()
        .get()
        .index(index as i32)
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl_error(e, "tc qdisc show"))?;
    Ok(msgs
        .into_iter()
        .find(|m| m.header.index == index as i32 && m.header.parent == TcHandle::ROOT)
        .map(|m| {
            let mut kind = String::new();
            let mut options = None;
            for a in &m.attributes {
                match a {
                    TcAttribute::Kind(k) => kind = k.clone(),
                    // A kind netlink-packet-route does not parse keeps
                    // the whole TCA_OPTIONS as one raw attribute; a parsed
                    // one (fq_codel) is re-emitted as its nested list.
                    TcAttribute::Options(o) => match o.as_slice() {
                        [TcOption::Other(nla)] if nla.kind() == TCA_OPTIONS => {
                            let mut raw = vec![0u8; nla.value_len()];
                            nla.emit_value(&mut raw);
                            options = Some(raw);
                        }
                        list => {
                            let mut raw = vec![0u8; list.buffer_len()];
                            list.emit(&mut raw);
                            options = Some(raw);
                        }
                    },
                    _ => {}
                }
            }
            SavedQdisc {
                kind,
                handle: u32::from(m.header.handle),
                options,
            }
        }))
}

fn is_ours(q: &SavedQdisc) -> bool {
    (q.handle >> 16) as u16 == OURS
}

/// `RTM_NEWQDISC` (replace) or `RTM_DELQDISC` of the root qdisc.
async fn send(
    conn: &NsConn,
    index: u32,
    qdisc: Option<(&str, u32, Option<&[u8]>)>,
    what: &str,
) -> Result<(), WireError> {
    let mut m = TcMessage::default();
    m.header.index = index as i32;
    m.header.parent = TcHandle::ROOT;
    let req = match qdisc {
        Some((kind, handle, opts)) => {
            m.header.handle = TcHandle::from(handle);
            m.attributes.push(TcAttribute::Kind(kind.to_string()));
            if let Some(o) = opts {
                m.attributes
                    .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, o.to_vec())));
            }
            let mut r = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(m));
            r.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
            r
        }
        None => {
            let mut r = NetlinkMessage::from(RouteNetlinkMessage::DelQueueDiscipline(m));
            r.header.flags = NLM_F_REQUEST | NLM_F_ACK;
            r
        }
    };
    let mut replies = conn
        .rt
        .clone()
        .request(req)
        .map_err(|e| nl_error(e, what))?;
    use futures::StreamExt;
    while let Some(msg) = replies.next().await {
        if let NetlinkPayload::Error(e) = msg.payload {
            if e.code.is_some() {
                let mut w = nl_error(rtnetlink::Error::NetlinkError(e), what);
                if qdisc.is_some_and(|q| q.0 == "netem") && w.message.contains("No such file") {
                    w.kind = ErrorKind::Unsupported;
                    w.message = format!(
                        "{what}: this kernel has no netem qdisc (sch_netem); the VM lab's has ({})",
                        w.message
                    );
                }
                return Err(w);
            }
        }
    }
    Ok(())
}

/// `tc qdisc replace dev DEV root netem ..` / (`None`) `tc qdisc del dev
/// DEV root`.
pub async fn netem(
    nets: &Nets,
    rec: &dyn Recorder,
    dev: &DevRef,
    spec: Option<&NetemSpec>,
) -> Result<(), WireError> {
    if let Some(n) = spec {
        check(n, &dev.name)?;
    }
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let index = get_link(&conn, dev).await?.header.index;
    let root = root_qdisc(&conn, index).await?;
    let at = ns_label(dev.netns.as_deref());
    match spec {
        Some(n) => {
            let what = format!("tc qdisc replace dev {} root netem in {at}", dev.name);
            match &root {
                Some(q) if is_ours(q) => {}
                Some(q) if q.handle != 0 => rec.record(NetUndo::RestoreRootQdisc {
                    dev: dev.clone(),
                    qdisc: q.clone(),
                })?,
                _ => rec.record(NetUndo::DelRootQdisc { dev: dev.clone() })?,
            }
            let opts = options(n);
            send(
                &conn,
                index,
                Some(("netem", u32::from(OURS) << 16, Some(&opts))),
                &what,
            )
            .await
        }
        None => {
            let what = format!("tc qdisc del dev {} root in {at}", dev.name);
            match &root {
                Some(q) if q.kind == "netem" => {
                    if !is_ours(q) {
                        rec.record(NetUndo::RestoreRootQdisc {
                            dev: dev.clone(),
                            qdisc: q.clone(),
                        })?;
                    }
                    send(&conn, index, None, &what).await
                }
                other => Err(WireError::not_found(format!(
                    "{what}: {} has no netem qdisc (its root qdisc is {})",
                    dev.name,
                    other.as_ref().map_or("none", |q| q.kind.as_str())
                ))),
            }
        }
    }
}

/// Undo of a netem over the default root: deletes the root qdisc if it
/// is still ours.
pub(crate) async fn apply_del(nets: &Nets, dev: &DevRef) -> Result<(), WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let index = get_link(&conn, dev).await?.header.index;
    match root_qdisc(&conn, index).await? {
        Some(q) if is_ours(&q) => {
            send(
                &conn,
                index,
                None,
                &format!("tc qdisc del dev {} root", dev.name),
            )
            .await
        }
        _ => Ok(()),
    }
}

/// Undo of a netem over a configured root: that qdisc again.
pub(crate) async fn apply_restore(
    nets: &Nets,
    dev: &DevRef,
    q: &SavedQdisc,
) -> Result<(), WireError> {
    let conn = nets.conn(dev.netns.as_deref()).await?;
    let index = get_link(&conn, dev).await?.header.index;
    if root_qdisc(&conn, index).await?.is_some_and(|r| is_ours(&r)) {
        send(
            &conn,
            index,
            None,
            &format!("tc qdisc del dev {} root", dev.name),
        )
        .await?;
    }
    send(
        &conn,
        index,
        Some((&q.kind, q.handle, q.options.as_deref())),
        &format!("tc qdisc replace dev {} root {}", dev.name, q.kind),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_laid_out_as_iproute2_does() {
        let n = NetemSpec {
            delay: Some(50.0),
            jitter: Some(5.0),
            loss: Some(100.0),
            reorder: Some(25.0),
            rate: Some(8_000_000),
            ..Default::default()
        };
        check(&n, "eth0").unwrap();
        let b = options(&n);
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
        assert_eq!(
            (u32_at(0), u32_at(4), u32_at(8), u32_at(12)),
            (0, 1000, u32::MAX, 1)
        );
        // LATENCY64 right after the 24-byte struct: len 12, type 10, 50 ms in ns
        assert_eq!(u16::from_ne_bytes([b[24], b[25]]), 12);
        assert_eq!(u16::from_ne_bytes([b[26], b[27]]), TCA_NETEM_LATENCY64);
        assert_eq!(
            i64::from_ne_bytes(b[28..36].try_into().unwrap()),
            50_000_000
        );
        assert_eq!(b.len() % 4, 0);
        // rate: 1 MB/s
        let r = b.len() - 20;
        assert_eq!(u16::from_ne_bytes([b[r + 2], b[r + 3]]), TCA_NETEM_RATE);
        assert_eq!(
            u32::from_ne_bytes(b[r + 4..r + 8].try_into().unwrap()),
            1_000_000
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = |n: NetemSpec| check(&n, "eth0").unwrap_err().message;
        assert!(e(NetemSpec {
            loss: Some(101.0),
            ..Default::default()
        })
        .contains("loss = 101"));
        assert!(e(NetemSpec {
            delay: Some(-1.0),
            ..Default::default()
        })
        .contains("delay"));
        assert!(e(NetemSpec {
            reorder: Some(5.0),
            ..Default::default()
        })
        .contains("needs a delay"));
        assert!(e(NetemSpec {
            rate: Some(0),
            ..Default::default()
        })
        .contains("rate = 0"));
    }
}
