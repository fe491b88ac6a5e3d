//! The topology of a match as inline SVG: one box per host (coloured by
//! the worst verdict of its result lines), its NICs along the box's
//! bottom edge (recipe name, matched interface, driver and speed,
//! addresses), the soft devices the recipe created above them (kind,
//! namespace), and each `net` label as a horizontal segment below the
//! hosts that its NICs hang from. Edges inside a host: a port to its
//! master (solid), an upper device to its lower link (dashed), a veth to
//! its peer (dotted).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::escape::esc;
use super::model::{TopoHost, Topology};
use super::plot::verdict_colour;

const CELL: f64 = 168.0;
const BOX_W: f64 = 156.0;
const BOX_H: f64 = 52.0;
const PAD: f64 = 12.0;
const GAP: f64 = 28.0;
const HEAD: f64 = 40.0;
const NET_GAP: f64 = 30.0;

fn light(v: &str) -> &'static str {
    match v {
        "PASS" => "#eaf6ed",
        "FAIL" => "#fdecec",
        "ERROR" => "#f5e9f8",
        _ => "#f3f5f9",
    }
}

/// A device box drawn in a host, for edges.
struct Placed {
    /// Centre x, top y, bottom y.
    cx: f64,
    top: f64,
    bottom: f64,
}

fn speed(mbps: u64) -> String {
    if mbps >= 1000 && mbps.is_multiple_of(1000) {
        format!("{}G", mbps / 1000)
    } else {
        format!("{mbps}M")
    }
}

/// Short text that fits a box (the full text is in the `<title>`).
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The picture, as an `<svg>` element.
pub fn svg(t: &Topology) -> String {
    let widths: Vec<f64> = t
        .hosts
        .iter()
        .map(|h| h.nics.len().max(h.soft.len()).max(1) as f64 * CELL + PAD)
        .collect();
    let any_soft = t.hosts.iter().any(|h| !h.soft.is_empty());
    let host_h = HEAD + if any_soft { BOX_H + 36.0 } else { 0.0 } + BOX_H + PAD;
    let top = 10.0;
    let bus0 = top + host_h + NET_GAP;
    let width =
        (widths.iter().sum::<f64>() + GAP * (widths.len().max(1) as f64 - 1.0) + 20.0).max(360.0);
    let height = bus0 + NET_GAP * t.nets.len() as f64 + 10.0;
    let bus_y: BTreeMap<&str, f64> = t
        .nets
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), bus0 + NET_GAP * i as f64))
        .collect();

    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        r#"<svg class="topology" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img">"#
    );
    // Where each NIC sits, per net, for the buses' extent.
    let mut on_net: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut nets_svg = String::new();
    let mut x0 = 10.0;
    for (h, w) in t.hosts.iter().zip(&widths) {
        host(
            &mut s,
            &mut nets_svg,
            &mut on_net,
            &bus_y,
            h,
            x0,
            top,
            *w,
            host_h,
        );
        x0 += w + GAP;
    }
    // The networks: a segment from its leftmost to its rightmost NIC.
    for net in &t.nets {
        let y = bus_y[net.as_str()];
        let xs = on_net.get(net.as_str()).cloned().unwrap_or_default();
        let (a, b) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        let (a, b) = if a.is_finite() {
            (a - 40.0, b + 40.0)
        } else {
            (10.0, 200.0)
        };
        let _ = write!(
            s,
            r##"<g class="net"><line x1="{a:.1}" x2="{b:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#37474f" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12" font-weight="600" fill="#37474f">{}</text><title>network {}</title></g>"##,
            a,
            y - 6.0,
            esc(&fit(net, 24)),
            esc(net)
        );
    }
    s.push_str(&nets_svg);
    s.push_str("</svg>");
    s
}

#[allow(clippy::too_many_arguments)]
fn host<'a>(
    s: &mut String,
    nets_svg: &mut String,
    on_net: &mut BTreeMap<&'a str, Vec<f64>>,
    bus_y: &BTreeMap<&str, f64>,
    h: &'a TopoHost,
    x0: f64,
    y0: f64,
    w: f64,
    hh: f64,
) {
    let verdict = h.result.map(|v| v.as_str()).unwrap_or("");
    let _ = write!(
        s,
        r##"<g class="host" data-result="{}"><rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{hh:.1}" rx="6" fill="{}" stroke="{}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="14" font-weight="700" fill="#1d2330">{}</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#4a5160">{}</text><title>{}</title></g>"##,
        esc(verdict),
        light(verdict),
        if verdict.is_empty() {
            "#9aa3b0"
        } else {
            verdict_colour(verdict)
        },
        x0 + 10.0,
        y0 + 18.0,
        esc(&fit(&h.name, 20)),
        x0 + 10.0,
        y0 + 32.0,
        esc(&fit(
            &format!(
                "{}{}",
                if h.machine.is_empty() || h.machine == h.name {
                    String::new()
                } else {
                    format!("on {} ", h.machine)
                },
                h.kernel
                    .as_deref()
                    .map(|k| format!("kernel {k}"))
                    .unwrap_or_default()
            ),
            (w / 6.5) as usize
        )),
        esc(&format!(
            "host {} (machine {}){}{}",
            h.name,
            h.machine,
            if verdict.is_empty() {
                String::new()
            } else {
                format!(": {verdict}")
            },
            h.kernel
                .as_deref()
                .map(|k| format!(", kernel {k}"))
                .unwrap_or_default()
        ))
    );
    // Key: (netns, name) → box, for edges.
    let mut placed: BTreeMap<(Option<String>, String), Placed> = BTreeMap::new();
    let soft_y = y0 + HEAD;
    for (i, d) in h.soft.iter().enumerate() {
        let bx = x0 + PAD / 2.0 + CELL * i as f64 + (CELL - BOX_W) / 2.0;
        let kind = d.kind.clone().unwrap_or_default();
        let name = match &d.netns {
            Some(ns) => format!("{ns}: {}", d.name),
            None => d.name.clone(),
        };
        let _ = write!(
            s,
            r##"<g class="soft" data-kind="{}"><rect x="{bx:.1}" y="{soft_y:.1}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="#fff" stroke="#5c6bc0" stroke-dasharray="4 2"/><text x="{:.1}" y="{:.1}" font-size="12" font-weight="600">{}</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#4a5160">{}</text><text x="{:.1}" y="{:.1}" font-size="10" fill="#4a5160">{}</text><title>{}</title></g>"##,
            esc(&kind),
            bx + 6.0,
            soft_y + 15.0,
            esc(&fit(&name, 22)),
            bx + 6.0,
            soft_y + 29.0,
            esc(&fit(&kind, 24)),
            bx + 6.0,
            soft_y + 43.0,
            esc(&fit(&d.ips.join(" "), 26)),
            esc(&format!(
                "{} {name} created by the recipe{}{}{}{}",
                if kind.is_empty() { "device" } else { &kind },
                d.master
                    .as_deref()
                    .map(|m| format!(", master {m}"))
                    .unwrap_or_default(),
                d.link
                    .as_deref()
                    .map(|m| format!(", link {m}"))
                    .unwrap_or_default(),
                d.peer
                    .as_deref()
                    .map(|m| format!(", peer {m}"))
                    .unwrap_or_default(),
                if d.ips.is_empty() {
                    String::new()
                } else {
                    format!(", {}", d.ips.join(" "))
                }
            ))
        );
        placed.insert(
            (d.netns.clone(), d.name.clone()),
            Placed {
                cx: bx + BOX_W / 2.0,
                top: soft_y,
                bottom: soft_y + BOX_H,
            },
        );
    }
    let nic_y = y0 + hh - PAD - BOX_H;
    for (i, n) in h.nics.iter().enumerate() {
        let bx = x0 + PAD / 2.0 + CELL * i as f64 + (CELL - BOX_W) / 2.0;
        let cx = bx + BOX_W / 2.0;
        let title = if n.ifname == n.name {
            n.name.clone()
        } else {
            format!("{} ({})", n.name, n.ifname)
        };
        let hw = match (&n.driver, n.speed_mbps) {
            (Some(d), Some(sp)) => format!("{d} · {}", speed(sp)),
            (Some(d), None) => d.clone(),
            (None, Some(sp)) => speed(sp),
            (None, None) => "driver not recorded".into(),
        };
        let _ = write!(
            s,
            r##"<g class="nic"><rect x="{bx:.1}" y="{nic_y:.1}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="#fff" stroke="#37474f"/><text x="{:.1}" y="{:.1}" font-size="12" font-weight="600">{}</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#4a5160">{}</text><text x="{:.1}" y="{:.1}" font-size="10" fill="#4a5160">{}</text><title>{}</title></g>"##,
            bx + 6.0,
            nic_y + 15.0,
            esc(&fit(&title, 22)),
            bx + 6.0,
            nic_y + 29.0,
            esc(&fit(&hw, 26)),
            bx + 6.0,
            nic_y + 43.0,
            esc(&fit(&n.ips.join(" "), 26)),
            esc(&format!(
                "NIC {title} on {}: {hw}{}{}",
                n.net.as_deref().unwrap_or("no network"),
                n.master
                    .as_deref()
                    .map(|m| format!(", master {m}"))
                    .unwrap_or_default(),
                if n.ips.is_empty() {
                    String::new()
                } else {
                    format!(", {}", n.ips.join(" "))
                }
            ))
        );
        if let Some(net) = &n.net {
            if let Some(by) = bus_y.get(net.as_str()) {
                on_net.entry(net.as_str()).or_default().push(cx);
                let _ = write!(
                    nets_svg,
                    r##"<line class="link" x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{by:.1}" stroke="#37474f" stroke-width="1.5"/><circle cx="{cx:.1}" cy="{by:.1}" r="3.5" fill="#37474f"/>"##,
                    nic_y + BOX_H
                );
            }
        }
        placed.insert(
            (None, n.ifname.clone()),
            Placed {
                cx,
                top: nic_y,
                bottom: nic_y + BOX_H,
            },
        );
    }
    // Edges between the boxes of this host.
    let edge = |s: &mut String, from: &Placed, to: &Placed, class: &str, dash: &str, what: &str| {
        let d = if (from.top - to.top).abs() < 1.0 {
            // Same row: a curve through the gap below the row, clear of
            // the boxes between them.
            let dip = if class == "peer" { 30.0 } else { 22.0 };
            format!(
                "M{:.1} {:.1} Q{:.1} {:.1} {:.1} {:.1}",
                from.cx,
                from.bottom,
                (from.cx + to.cx) / 2.0,
                from.bottom + dip,
                to.cx,
                to.bottom
            )
        } else {
            // From the lower box's top to the upper box's bottom.
            let (lo, up) = if from.top > to.top {
                (from, to)
            } else {
                (to, from)
            };
            format!("M{:.1} {:.1} L{:.1} {:.1}", lo.cx, lo.top, up.cx, up.bottom)
        };
        let _ = write!(
            s,
            r##"<path class="edge {class}" d="{d}" fill="none" stroke="#5c6bc0" stroke-width="1.5" stroke-dasharray="{dash}"><title>{}</title></path>"##,
            esc(what)
        );
    };
    for n in &h.nics {
        if let Some(m) = &n.master {
            if let (Some(a), Some(b)) = (
                placed.get(&(None, n.ifname.clone())),
                placed.get(&(None, m.clone())),
            ) {
                edge(
                    s,
                    a,
                    b,
                    "enslaved",
                    "none",
                    &format!("{} is a port of {m}", n.ifname),
                );
            }
        }
    }
    for d in &h.soft {
        let me = (d.netns.clone(), d.name.clone());
        let Some(a) = placed.get(&me) else { continue };
        if let Some(m) = &d.master {
            if let Some(b) = placed.get(&(d.netns.clone(), m.clone())) {
                edge(
                    s,
                    a,
                    b,
                    "enslaved",
                    "none",
                    &format!("{} is a port of {m}", d.name),
                );
            }
        }
        if let Some(l) = &d.link {
            if let Some(b) = placed.get(&(d.netns.clone(), l.clone())) {
                edge(
                    s,
                    a,
                    b,
                    "lower",
                    "6 3",
                    &format!("{} runs over {l}", d.name),
                );
            }
        }
        if let Some(p) = &d.peer {
            // Drawn once per pair; the peer may be in another namespace.
            if let Some(((_, pn), b)) = placed
                .iter()
                .find(|((ns, n), _)| n == p && (ns, n) > (&me.0, &me.1))
            {
                edge(s, a, b, "peer", "2 3", &format!("veth {} ↔ {pn}", d.name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::devices::DeviceRec;
    use crate::report::html::model::TopoNic;
    use crate::report::Verdict;

    fn nic(name: &str, net: &str, master: Option<&str>) -> TopoNic {
        TopoNic {
            name: name.into(),
            ifname: name.into(),
            net: Some(net.into()),
            driver: Some("ixgbe".into()),
            speed_mbps: Some(10000),
            master: master.map(str::to_string),
            ips: vec!["192.168.1.1/24".into()],
        }
    }

    #[test]
    fn hosts_nics_nets_and_soft_devices() {
        let t = Topology {
            hosts: vec![
                TopoHost {
                    name: "h1".into(),
                    machine: "m<1>".into(),
                    result: Some(Verdict::Fail),
                    nics: vec![nic("eth0", "net1", Some("br0")), nic("eth1", "net2", None)],
                    soft: vec![DeviceRec {
                        host: "h1".into(),
                        netns: None,
                        name: "br0".into(),
                        recipe_name: "br0".into(),
                        kind: Some("bridge".into()),
                        created: true,
                        master: None,
                        peer: None,
                        link: None,
                        mtu: None,
                        ips: vec![],
                        up: Some(true),
                    }],
                    kernel: Some("6.1.0".into()),
                },
                TopoHost {
                    name: "h2".into(),
                    machine: "h2".into(),
                    result: Some(Verdict::Pass),
                    nics: vec![nic("eth0", "net1", None)],
                    soft: vec![],
                    kernel: None,
                },
            ],
            nets: vec!["net1".into(), "net2".into()],
        };
        let s = svg(&t);
        assert_eq!(s.matches("<g class=\"host\"").count(), 2);
        assert_eq!(s.matches("<g class=\"nic\"").count(), 3);
        assert_eq!(
            s.matches("<g class=\"soft\" data-kind=\"bridge\"").count(),
            1
        );
        assert_eq!(s.matches("<g class=\"net\"").count(), 2);
        assert_eq!(s.matches("class=\"link\"").count(), 3);
        assert_eq!(s.matches("class=\"edge enslaved\"").count(), 1);
        assert!(s.contains("data-result=\"FAIL\""));
        assert!(s.contains(verdict_colour("FAIL")));
        assert!(s.contains("ixgbe · 10G"));
        assert!(s.contains("on m&lt;1&gt;"), "{s}");
    }
}
