//! The state table and source nodes: `-s states` in the layout of `print_state()`,
//! `-s Sources`, `-k` (network, label, id, key, FreeBSD gateway and nat), `-K`, and
//! `-F states`, with the kernel's matching of `pf_killstates_row()`.

use std::net::IpAddr;

use crate::addr::{self, match_prefix};
use crate::ctx::{Ctx, Res};
use crate::os::Os;
use crate::state::{self, Key, PfState, State};

/// An address and a prefix length, as `-k`/`-K` arguments give them.
type Prefix = (IpAddr, u8);

fn hms(t: u64) -> String {
    format!("{:02}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60)
}

fn print_host(os: Os, ip: IpAddr, port: u16, rdomain: u32) -> String {
    let mut s = String::new();
    if os == Os::OpenBsd && rdomain != 0 {
        s.push_str(&format!("({rdomain}) "));
    }
    s.push_str(&addr::ntop(ip));
    if port != 0 {
        if ip.is_ipv4() {
            s.push_str(&format!(":{port}"));
        } else {
            s.push_str(&format!("[{port}]"));
        }
    }
    s
}

/// The key's `addr[1]`/`addr[0]` as pfctl prints them: the first host is the local side
/// of an inbound state and the initiator of an outbound one.
fn ends(k: Key, outbound: bool) -> ((IpAddr, u16), (IpAddr, u16)) {
    if outbound {
        ((k.src, k.sport), (k.dst, k.dport))
    } else {
        ((k.dst, k.dport), (k.src, k.sport))
    }
}

fn default_peer_state(proto: u8) -> &'static str {
    match proto {
        6 => "ESTABLISHED",
        1 | 58 => "0",
        _ => "MULTIPLE",
    }
}

/// `print_state()`.
pub fn print_state(ctx: &Ctx, s: &PfState) -> String {
    let os = ctx.os;
    let out = s.outbound();
    let proto = s.proto_number().unwrap_or(0);
    let (nk, sk) = if out {
        (s.wire(), s.stack())
    } else {
        (s.stack(), s.wire())
    };
    let (n1, n0) = ends(nk, out);
    let (s1, s0) = ends(sk, out);
    let mut line = format!("{} {} ", s.ifname, state::proto_name(proto));
    line.push_str(&print_host(os, n1.0, n1.1, s.rdomain));
    if n1 != s1 {
        line.push_str(&format!(" ({})", print_host(os, s1.0, s1.1, s.rdomain)));
    }
    line.push_str(if out { " -> " } else { " <- " });
    line.push_str(&print_host(os, n0.0, n0.1, s.rdomain));
    if n0 != s0 {
        line.push_str(&format!(" ({})", print_host(os, s0.0, s0.1, s.rdomain)));
    }
    line.push_str("    ");
    let d = default_peer_state(proto);
    let init = s.src_state.as_deref().unwrap_or(d);
    let resp = s.dst_state.as_deref().unwrap_or(d);
    let ((first, fseq, fws), (second, sseq, sws)) = if out {
        (
            (init, s.src_seq, s.src_wscale),
            (resp, s.dst_seq, s.dst_wscale),
        )
    } else {
        (
            (resp, s.dst_seq, s.dst_wscale),
            (init, s.src_seq, s.src_wscale),
        )
    };
    line.push_str(&format!("   {first}:{second}\n"));
    if proto == 6 && ctx.opts.v1() {
        let both = fws != 0 && sws != 0;
        line.push_str(&format!("   [{} + {}]", fseq[0], fseq[1]));
        if both {
            line.push_str(&format!(" wscale {}", fws & 0x0f));
        }
        line.push_str(&format!("  [{} + {}]", sseq[0], sseq[1]));
        if both {
            line.push_str(&format!(" wscale {}", sws & 0x0f));
        }
        line.push('\n');
    }
    if ctx.opts.v1() {
        line.push_str(&format!(
            "   age {}, expires in {}, {}:{} pkts, {}:{} bytes",
            hms(s.age),
            hms(s.expires),
            s.pkts[0],
            s.pkts[1],
            s.bytes[0],
            s.bytes[1]
        ));
        if s.anchor != -1 {
            line.push_str(&format!(", anchor {}", s.anchor));
        }
        if s.rule != -1 {
            line.push_str(&format!(", rule {}", s.rule));
        }
        line.push('\n');
    }
    if ctx.opts.v2() {
        line.push_str(&format!(
            "   id: {} creatorid: {}",
            s.id.to_ascii_lowercase(),
            s.creatorid.to_ascii_lowercase()
        ));
        if os == Os::FreeBsd {
            if let (Some(rt), Some(gw)) = (&s.rt, &s.rt_addr) {
                let gw: IpAddr = gw.parse().expect("validated on load");
                line.push_str(&format!(" {rt}: {}", print_host(os, gw, 0, 0)));
                if let Some(ifn) = &s.rt_ifname {
                    line.push_str(&format!("@{ifn}"));
                }
            }
            if s.rtableid != -1 {
                line.push_str(&format!(" rtable: {}", s.rtableid));
            }
        }
        line.push('\n');
        if let Some(o) = &s.orig_ifname
            && os == Os::FreeBsd
            && *o != s.ifname
        {
            line.push_str(&format!("   origif: {o}\n"));
        }
    }
    line
}

/// `-s states [-i IF]`, in the order of the state file.
pub fn show_states(ctx: &mut Ctx, st: &State, iface: Option<&str>, shownr: Option<i64>) {
    for s in &st.states {
        if iface.is_some_and(|i| i != s.ifname) || shownr.is_some_and(|n| n != s.rule) {
            continue;
        }
        let text = print_state(ctx, s);
        ctx.out.push_str(&text);
    }
}

/// `-s Sources` in the layout of FreeBSD's `print_src_node()`, used for OpenBSD too
/// [OpenBSD's layout not compared].
pub fn show_sources(ctx: &mut Ctx, st: &State) {
    for n in &st.src_nodes {
        let mut s = format!(
            "{} -> {} ( states {}, connections {}, rate {}.{}/{}s )\n",
            addr::ntop(n.addr()),
            addr::ntop(n.raddr()),
            n.states,
            n.conn,
            n.rate[0] / 1000,
            (n.rate[0] % 1000) / 100,
            n.rate[1]
        );
        if ctx.opts.v1() {
            s.push_str(&format!("   age {}", hms(n.age)));
            if n.states == 0 {
                s.push_str(&format!(", expires in {}", hms(n.expires)));
            }
            s.push_str(&format!(
                ", {} pkts, {} bytes",
                n.pkts[0] + n.pkts[1],
                n.bytes[0] + n.bytes[1]
            ));
            if n.rule != -1 {
                s.push_str(&format!(", filter rule {}", n.rule));
            }
            s.push('\n');
        }
        ctx.out.push_str(&s);
    }
}

/// The fields of a `pfioc_state_kill` the simulator honours.
#[derive(Default, Clone)]
struct Kill {
    v4: Option<bool>,
    proto: Option<u8>,
    src: Option<(IpAddr, u8)>,
    dst: Option<(IpAddr, u8)>,
    sport: Option<u16>,
    dport: Option<u16>,
    ifname: Option<String>,
    label: Option<String>,
    rt: Option<(IpAddr, u8)>,
    nat: bool,
    rdomain: Option<u32>,
    killmatch: bool,
}

fn row_matches(k: &Kill, s: &PfState) -> bool {
    if k.v4.is_some_and(|v4| v4 == s.is_v6()) {
        return false;
    }
    if k.proto.is_some_and(|p| Some(p) != s.proto_number()) {
        return false;
    }
    if k.ifname.as_ref().is_some_and(|i| *i != s.ifname) {
        return false;
    }
    if k.rdomain.is_some_and(|r| r != s.rdomain) {
        return false;
    }
    let key = if k.nat { s.stack() } else { s.wire() };
    if let Some((a, p)) = k.src
        && !match_prefix(a, p, key.src)
    {
        return false;
    }
    if let Some((a, p)) = k.dst
        && !match_prefix(a, p, key.dst)
    {
        return false;
    }
    if k.sport.is_some_and(|p| p != key.sport) || k.dport.is_some_and(|p| p != key.dport) {
        return false;
    }
    if let Some(l) = &k.label
        && *l != s.label
    {
        return false;
    }
    if let Some((a, p)) = k.rt {
        match s.rt_addr.as_deref().and_then(|g| g.parse::<IpAddr>().ok()) {
            Some(gw) if match_prefix(a, p, gw) => {}
            _ => return false,
        }
    }
    true
}

/// Removes the matching states (and with `-M` their counterparts in the other
/// direction); returns how many went.
fn kill_rows(st: &mut State, k: &Kill) -> u32 {
    let victims: Vec<usize> = (0..st.states.len())
        .filter(|i| row_matches(k, &st.states[*i]))
        .collect();
    remove_states(st, victims, k.killmatch)
}

fn remove_states(st: &mut State, mut victims: Vec<usize>, killmatch: bool) -> u32 {
    if killmatch {
        let states = &st.states;
        let mut extra = Vec::new();
        for &i in &victims {
            let s = &states[i];
            let w = s.wire();
            for (j, o) in states.iter().enumerate() {
                let ow = o.wire();
                if j != i
                    && o.dir != s.dir
                    && o.proto_number() == s.proto_number()
                    && (ow.src, ow.sport, ow.dst, ow.dport) == (w.src, w.sport, w.dst, w.dport)
                {
                    extra.push(j);
                }
            }
        }
        victims.extend(extra);
    }
    victims.sort_unstable();
    victims.dedup();
    for i in victims.iter().rev() {
        st.states.remove(*i);
    }
    victims.len() as u32
}

fn check_iface(ctx: &mut Ctx, iface: Option<&str>) -> Res<Option<String>> {
    match iface {
        Some(i) if i.len() >= 16 => Err(ctx.errx(1, &format!("invalid interface: {i}"))),
        other => Ok(other.map(str::to_string)),
    }
}

/// `-F states`.
pub fn clear_states(ctx: &mut Ctx, st: &mut State, iface: Option<&str>) -> Res<()> {
    let k = Kill {
        ifname: check_iface(ctx, iface)?,
        killmatch: ctx.opts.killmatch,
        ..Kill::default()
    };
    let n = kill_rows(st, &k);
    ctx.info(&format!("{n} states cleared"));
    Ok(())
}

fn addrprefix(ctx: &mut Ctx, s: &str) -> Res<(IpAddr, u8)> {
    addr::addrprefix(s, ctx.os).map_err(|m| ctx.errx(1, &m))
}

/// `sscanf(s, "%jx")`: blanks, an optional sign and `0x`, hex digits; the rest is left.
fn scan_hex(s: &str) -> Option<(u64, &str)> {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let t = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(r) if r.starts_with(|c: char| c.is_ascii_hexdigit()) => r,
        _ => t,
    };
    let end = t.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    let v = u64::from_str_radix(&t[..end], 16).unwrap_or(u64::MAX);
    Some((if neg { v.wrapping_neg() } else { v }, &t[end..]))
}

/// `-k …` in pfctl's dispatch order.
pub fn kill_states(
    ctx: &mut Ctx,
    st: &mut State,
    kills: &[String],
    iface: Option<&str>,
    rdomain: u32,
) -> Res<()> {
    let os = ctx.os;
    let rdomain = (os == Os::OpenBsd).then_some(rdomain);
    let killmatch = os == Os::FreeBsd && ctx.opts.killmatch;
    match kills[0].as_str() {
        "label" => {
            if kills.len() != 2 || kills[1].is_empty() {
                return Err(ctx.warnx_usage("no label specified"));
            }
            let ifname = check_iface(ctx, iface)?;
            if kills[1].len() >= 64 {
                return Err(ctx.errx(1, &format!("label too long: {}", kills[1])));
            }
            let k = Kill {
                ifname,
                label: Some(kills[1].clone()),
                rdomain,
                killmatch,
                ..Kill::default()
            };
            let n = kill_rows(st, &k);
            ctx.info(&format!("killed {n} states"));
        }
        "id" => {
            if kills.len() != 2 || kills[1].is_empty() {
                return Err(ctx.warnx_usage("no id specified"));
            }
            let (id, creator) = match scan_hex(&kills[1]) {
                None => return Err(ctx.warnx_usage("wrong id format specified")),
                Some((id, rest)) => {
                    let creator = rest
                        .strip_prefix('/')
                        .and_then(scan_hex)
                        .map(|(c, _)| c as u32);
                    (id, creator.unwrap_or(0))
                }
            };
            if id == 0 {
                return Err(ctx.warnx_usage("cannot kill id 0"));
            }
            let hostid = st
                .hostid
                .as_deref()
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            // Creator 0 means this host's id [kernel behaviour from memory]; without a
            // configured hostid any creator matches.
            let want_creator = if creator == 0 { hostid } else { Some(creator) };
            let victim = st.states.iter().position(|s| {
                u64::from_str_radix(&s.id, 16).ok() == Some(id)
                    && want_creator
                        .is_none_or(|c| u32::from_str_radix(&s.creatorid, 16).ok() == Some(c))
            });
            let n = remove_states(st, victim.into_iter().collect(), killmatch);
            ctx.info(&format!("killed {n} states"));
        }
        "gateway" if os == Os::FreeBsd => {
            if kills.len() != 2 || kills[1].is_empty() {
                return Err(ctx.warnx_usage("no gateway specified"));
            }
            let ifname = check_iface(ctx, iface)?;
            let (gw, prefix) = addrprefix(ctx, &kills[1])?;
            let k = Kill {
                v4: Some(gw.is_ipv4()),
                ifname,
                rt: Some((gw, prefix)),
                killmatch,
                ..Kill::default()
            };
            let n = kill_rows(st, &k);
            ctx.info(&format!("killed {n} states"));
        }
        "key" => {
            if kills.len() != 2 || kills[1].is_empty() {
                return Err(ctx.warnx_usage("no key specified"));
            }
            let ifname = check_iface(ctx, iface)?;
            let tokens: Vec<&str> = kills[1]
                .split([' ', '\t'])
                .filter(|t| !t.is_empty())
                .collect();
            if tokens.len() != 4 {
                return Err(ctx.errx(
                    1,
                    "pfctl_key_kill_states: key must be \"protocol host1:port1 direction host2:port2\" format",
                ));
            }
            let proto = match tokens[0].parse::<u8>() {
                Ok(_) => None,
                Err(_) => state::proto_number(tokens[0]),
            };
            let Some(proto) = proto else {
                return Err(ctx.errx(1, &format!("invalid protocol: {}", tokens[0])));
            };
            let (si, di) = match tokens[2] {
                "->" => (1, 3),
                "<-" => (3, 1),
                other => return Err(ctx.errx(1, &format!("invalid direction: {other}"))),
            };
            let Some((sa, sp)) = addr::parse_key_host(tokens[si], os) else {
                return Err(ctx.errx(1, &format!("invalid host: {}", tokens[si])));
            };
            let Some((da, dp)) = addr::parse_key_host(tokens[di], os) else {
                return Err(ctx.errx(1, &format!("invalid host: {}", tokens[di])));
            };
            let k = Kill {
                proto: Some(proto),
                src: Some((sa, if sa.is_ipv4() { 32 } else { 128 })),
                dst: Some((da, if da.is_ipv4() { 32 } else { 128 })),
                sport: Some(sp),
                dport: Some(dp),
                ifname,
                rdomain,
                killmatch,
                ..Kill::default()
            };
            let n = kill_rows(st, &k);
            ctx.info(&format!("killed {n} states"));
        }
        _ => net_kill(ctx, st, kills, iface, rdomain, killmatch)?,
    }
    Ok(())
}

/// `pfctl_net_kill_states()`. With `PFCTL_SIM_KILL_BUG=1` the second address lands in
/// the source field as in OpenBSD ≤ 1.389 and FreeBSD snapshot 004062345b.
fn net_kill(
    ctx: &mut Ctx,
    st: &mut State,
    kills: &[String],
    iface: Option<&str>,
    rdomain: Option<u32>,
    killmatch: bool,
) -> Res<()> {
    let ifname = check_iface(ctx, iface)?;
    let mut kills: Vec<String> = kills.to_vec();
    let mut nat = false;
    if ctx.os == Os::FreeBsd && kills.len() == 2 && kills[0] == "nat" {
        nat = true;
        kills.remove(0);
    }
    let (a, ap) = addrprefix(ctx, &kills[0])?;
    let base = Kill {
        v4: Some(a.is_ipv4()),
        ifname,
        nat,
        rdomain,
        killmatch,
        src: Some((a, ap)),
        ..Kill::default()
    };
    let sources = 1;
    let mut dests = 0;
    let mut killed = 0;
    if kills.len() > 1 {
        let (b, bp) = addrprefix(ctx, &kills[1])?;
        if b.is_ipv4() == a.is_ipv4() {
            dests = 1;
            let k = if ctx.kill_bug {
                let zero = if b.is_ipv4() {
                    IpAddr::from([0u8; 4])
                } else {
                    IpAddr::from([0u16; 8])
                };
                Kill {
                    src: Some((b, ap)),
                    dst: Some((zero, bp)),
                    ..base
                }
            } else {
                Kill {
                    dst: Some((b, bp)),
                    ..base
                }
            };
            killed += kill_rows(st, &k);
        }
    } else {
        killed += kill_rows(st, &base);
    }
    ctx.info(&format!(
        "killed {killed} states from {sources} sources and {dests} destinations"
    ));
    Ok(())
}

/// `pfctl_kill_src_nodes()`: node address against the first argument, translation
/// address against the second (same bug switch as `-k`).
pub fn kill_src_nodes(ctx: &mut Ctx, st: &mut State, kills: &[String]) -> Res<()> {
    let (a, ap) = addrprefix(ctx, &kills[0])?;
    let mut dests = 0;
    let mut pattern: Option<(Prefix, Option<Prefix>)> = Some(((a, ap), None));
    if kills.len() > 1 {
        let (b, bp) = addrprefix(ctx, &kills[1])?;
        if b.is_ipv4() == a.is_ipv4() {
            dests = 1;
            pattern = Some(if ctx.kill_bug {
                let zero = if b.is_ipv4() {
                    IpAddr::from([0u8; 4])
                } else {
                    IpAddr::from([0u16; 8])
                };
                ((b, ap), Some((zero, bp)))
            } else {
                ((a, ap), Some((b, bp)))
            });
        } else {
            pattern = None;
        }
    }
    let mut killed = 0;
    if let Some(((sa, sp), dst)) = pattern {
        let before = st.src_nodes.len();
        st.src_nodes.retain(|n| {
            let hit = n.addr().is_ipv4() == sa.is_ipv4()
                && match_prefix(sa, sp, n.addr())
                && dst.is_none_or(|(da, dp)| match_prefix(da, dp, n.raddr()));
            !hit
        });
        killed = before - st.src_nodes.len();
    }
    ctx.info(&format!(
        "killed {killed} src nodes from 1 sources and {dests} destinations"
    ));
    Ok(())
}
