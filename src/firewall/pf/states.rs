//! The state table as `pfctl -s states -vv` prints it (the `print_state()` layout, the
//! same on FreeBSD and OpenBSD), and the choice of which states a ban cuts.
//!
//! A state block starts with a line `IF PROTO HOST_A DIR HOST_B    SRC:DST`; indented
//! lines follow, one of them `id: ID creatorid: CREATOR`. Inbound states (` <- `) print the
//! local (responding) end first, outbound ones (` -> `) the initiating end first. A host is
//! `a.b.c.d:port` or `addr[port]` (no port for ICMP); a translated end is followed by its
//! other form in parentheses; OpenBSD prefixes hosts with `(rdomain)` and appends a
//! route-to gateway as `{gw}`.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::firewall::PortSpec;

/// One end of a state: the address and port on the wire and inside the stack (they
/// differ only under NAT or rdr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub wire: (IpAddr, u16),
    pub stack: (IpAddr, u16),
}

impl End {
    fn forms(&self) -> [(IpAddr, u16); 2] {
        [self.wire, self.stack]
    }

    /// Whether either form of the address lies in `net`.
    pub fn in_net(&self, net: &IpNet) -> bool {
        self.forms().iter().any(|(ip, _)| net.contains(ip))
    }

    /// Whether either form of the port is one of `ports`. Port 0 (ICMP) is in no port
    /// list, only in "all ports".
    pub fn port_in(&self, ports: &PortSpec) -> bool {
        ports.is_all()
            || self
                .forms()
                .iter()
                .any(|(_, p)| *p != 0 && ports.contains(*p))
    }
}

/// One state of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfState {
    /// 16 hex digits, as printed.
    pub id: String,
    /// 8 hex digits, as printed.
    pub creator: String,
    pub proto: String,
    pub outbound: bool,
    pub initiator: End,
    pub responder: End,
}

impl PfState {
    /// The argument of `pfctl -k id -k …`: the id with its creator, so a state that
    /// pfsync brought from a peer is named exactly.
    pub fn kill_arg(&self) -> String {
        format!("{}/{}", self.id, self.creator)
    }
}

/// An address and port as printed.
type Host = (IpAddr, u16);
/// An id and its creator id.
type Ident = (String, String);

/// Parses `a.b.c.d:port`, `a.b.c.d`, `addr[port]` or `addr`.
fn parse_host(s: &str) -> Option<Host> {
    if let Some(open) = s.find('[') {
        let close = s.strip_suffix(']')?;
        let ip: IpAddr = s[..open].parse().ok()?;
        let port: u16 = close[open + 1..].parse().ok()?;
        return ip.is_ipv6().then_some((ip, port));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, 0));
    }
    let (a, p) = s.rsplit_once(':')?;
    let ip: std::net::Ipv4Addr = a.parse().ok()?;
    Some((IpAddr::V4(ip), p.parse().ok()?))
}

/// The hosts of one side of the first line: the printed form and, when translated, the
/// other form. Stops at the first token that is not part of a host (the peer states).
fn side<'a>(tokens: &mut impl Iterator<Item = &'a str>) -> Option<(Host, Option<Host>)> {
    let mut primary = None;
    let mut other = None;
    for t in tokens.by_ref() {
        if t.starts_with('{') {
            continue;
        }
        let paren = t.starts_with('(');
        let inner = t.trim_start_matches('(').trim_end_matches(')');
        if paren && !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            // OpenBSD's `(rdomain)` prefix.
            continue;
        }
        match parse_host(inner) {
            Some(h) if paren && primary.is_some() => other = Some(h),
            Some(h) if primary.is_none() => primary = Some(h),
            _ => break,
        }
        if other.is_some() {
            break;
        }
    }
    primary.map(|p| (p, other))
}

/// Parses the first line of a state block (without the id).
fn parse_head(line: &str) -> Option<(String, bool, End, End)> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let dir = tokens.iter().position(|t| *t == "<-" || *t == "->")?;
    if dir < 3 {
        return None;
    }
    let outbound = tokens[dir] == "->";
    let proto = tokens[1].to_string();
    let (a, a_other) = side(&mut tokens[2..dir].iter().copied())?;
    let (b, b_other) = side(&mut tokens[dir + 1..].iter().copied())?;
    // print_state() shows the stack key first for inbound states and the wire key first
    // for outbound ones; the parenthesised form is the other key.
    let end = |printed: Host, other: Option<Host>| {
        let other = other.unwrap_or(printed);
        if outbound {
            End {
                wire: printed,
                stack: other,
            }
        } else {
            End {
                wire: other,
                stack: printed,
            }
        }
    };
    let (ea, eb) = (end(a, a_other), end(b, b_other));
    let (initiator, responder) = if outbound { (ea, eb) } else { (eb, ea) };
    Some((proto, outbound, initiator, responder))
}

fn parse_id(line: &str) -> Option<Ident> {
    let mut words = line.split_whitespace();
    let mut id = None;
    let mut creator = None;
    while let Some(w) = words.next() {
        match w {
            "id:" => id = words.next(),
            "creatorid:" => creator = words.next(),
            _ => {}
        }
    }
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    match (id, creator) {
        (Some(i), Some(c)) if hex(i) && hex(c) => {
            Some((i.to_ascii_lowercase(), c.to_ascii_lowercase()))
        }
        _ => None,
    }
}

type Head = (String, bool, End, End);

fn finish_block(
    head: Option<Head>,
    id: Option<Ident>,
    out: &mut Vec<PfState>,
    skipped: &mut usize,
) {
    match (head, id) {
        (Some((proto, outbound, initiator, responder)), Some((id, creator))) => out.push(PfState {
            id,
            creator,
            proto,
            outbound,
            initiator,
            responder,
        }),
        _ => *skipped += 1,
    }
}

/// The states of a `-vv` listing, and how many blocks could not be read (no id, or a
/// first line in an unknown layout).
pub fn parse_states(text: &str) -> (Vec<PfState>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    let mut block: Option<(Option<Head>, Option<Ident>)> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some((head, id)) = block.take() {
                finish_block(head, id, &mut out, &mut skipped);
            }
            block = Some((parse_head(line), None));
        } else if let Some((_, id @ None)) = &mut block {
            *id = parse_id(line);
        }
    }
    if let Some((head, id)) = block {
        finish_block(head, id, &mut out, &mut skipped);
    }
    (out, skipped)
}

/// Which states a ban of `target` cuts when it is limited to the jail's ports and
/// protocols: one end is the banned address (or lies in the banned network), and the
/// other end's port is one of the jail's ports. Looking at both ends rather than at the
/// printed order covers connections to this host (` <- `) and connections this host
/// forwards (` -> ` with the attacker as initiator) alike.
pub fn in_port_scope(s: &PfState, target: &IpNet, ports: &PortSpec, protocols: &[String]) -> bool {
    if !protocols.is_empty() && !protocols.iter().any(|p| p == &s.proto) {
        return false;
    }
    (s.initiator.in_net(target) && s.responder.port_in(ports))
        || (s.responder.in_net(target) && s.initiator.port_in(ports))
}

/// Whether `pfctl -k TARGET` removes this state: the kernel matches the initiator's
/// address on the wire.
pub fn killed_by_net_kill(s: &PfState, target: &IpNet) -> bool {
    target.contains(&s.initiator.wire.0)
}

/// States of `target` that `pfctl -k TARGET` leaves behind: those toward the address
/// (it is the responder) and those that name it only in their translated form.
pub fn left_by_net_kill(s: &PfState, target: &IpNet) -> bool {
    (s.initiator.in_net(target) || s.responder.in_net(target)) && !killed_by_net_kill(s, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
all tcp 192.0.2.10:22 <- 198.51.100.7:51234       ESTABLISHED:ESTABLISHED
   [1384502553 + 66048] wscale 7  [2210977403 + 65280] wscale 7
   age 00:02:13, expires in 23:59:58, 25:31 pkts, 3120:5841 bytes, anchor 4, rule 0
   id: 66f2a1b300000005 creatorid: 7a1c3e2f
all udp 192.0.2.10:53 <- 198.51.100.7:40001       MULTIPLE:SINGLE
   age 00:00:03, expires in 00:00:57, 1:1 pkts, 72:88 bytes, rule 6
   id: 66f2a1b300000006 creatorid: 7a1c3e2f
all tcp 192.0.2.10:41000 -> 198.51.100.7:443       ESTABLISHED:ESTABLISHED
   [0 + 0]  [0 + 0]
   age 00:00:00, expires in 00:00:00, 0:0 pkts, 0:0 bytes, rule 2
   id: 66F2A1B300000007 creatorid: 7A1C3E2F route-to: 192.0.2.1@em1 rtable: 0
   origif: em0
em0 tcp 2001:db8::10[22] <- 2001:db8::7[51234]       ESTABLISHED:ESTABLISHED
   id: 0000000000000008 creatorid: 00000001
all icmp 192.0.2.10:4711 <- 198.51.100.7:4711       0:0
   id: 0000000000000009 creatorid: 00000001
all ipv6-icmp 2001:db8::10 <- 2001:db8::7       0:0
   id: 000000000000000a creatorid: 00000001
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_both_directions_ipv6_and_icmp() {
        let (states, skipped) = parse_states(LISTING);
        assert_eq!(skipped, 0);
        assert_eq!(states.len(), 6);
        let s = &states[0];
        assert_eq!(s.kill_arg(), "66f2a1b300000005/7a1c3e2f");
        assert_eq!((s.proto.as_str(), s.outbound), ("tcp", false));
        assert_eq!(s.initiator.wire, (ip("198.51.100.7"), 51234));
        assert_eq!(s.responder.wire, (ip("192.0.2.10"), 22));
        let out = &states[2];
        assert!(out.outbound);
        assert_eq!(out.kill_arg(), "66f2a1b300000007/7a1c3e2f");
        assert_eq!(out.initiator.wire, (ip("192.0.2.10"), 41000));
        assert_eq!(out.responder.wire, (ip("198.51.100.7"), 443));
        assert_eq!(states[3].initiator.wire, (ip("2001:db8::7"), 51234));
        assert_eq!(states[3].responder.wire, (ip("2001:db8::10"), 22));
        assert_eq!(states[4].proto, "icmp");
        assert_eq!(states[5].initiator.wire, (ip("2001:db8::7"), 0));
    }

    #[test]
    fn translated_and_rdomain_forms() {
        let text = "\
all tcp 10.0.0.5:8080 (192.0.2.10:80) <- 198.51.100.7:5555       ESTABLISHED:ESTABLISHED
   id: 0000000000000001 creatorid: 00000001
em0 tcp 10.0.0.5:41000 (192.0.2.10:62000) -> 198.51.100.7:443       ESTABLISHED:ESTABLISHED
   id: 0000000000000002 creatorid: 00000001
all tcp (1) 192.0.2.10:22 <- (1) 198.51.100.7:1234 {192.0.2.1}       ESTABLISHED:ESTABLISHED
   id: 0000000000000003 creatorid: 00000001
";
        let (states, skipped) = parse_states(text);
        assert_eq!(skipped, 0);
        // Inbound rdr: the stack form is printed first, the wire form in parentheses.
        assert_eq!(states[0].responder.stack, (ip("10.0.0.5"), 8080));
        assert_eq!(states[0].responder.wire, (ip("192.0.2.10"), 80));
        assert_eq!(states[0].initiator.wire, (ip("198.51.100.7"), 5555));
        // Outbound nat: the wire form first.
        assert_eq!(states[1].initiator.wire, (ip("10.0.0.5"), 41000));
        assert_eq!(states[1].initiator.stack, (ip("192.0.2.10"), 62000));
        assert_eq!(states[2].initiator.wire, (ip("198.51.100.7"), 1234));
        assert_eq!(states[2].responder.wire, (ip("192.0.2.10"), 22));
    }

    #[test]
    fn unreadable_blocks_are_counted_not_fatal() {
        let text =
            "garbage line\n   id: 1 creatorid: 2\nall tcp 192.0.2.1:22 <- 192.0.2.2:5    X:Y\n";
        let (states, skipped) = parse_states(text);
        assert!(states.is_empty());
        assert_eq!(skipped, 2);
        assert_eq!(parse_states("").1, 0);
    }

    #[test]
    fn port_scope_looks_at_the_far_end_of_the_banned_address() {
        let (states, _) = parse_states(LISTING);
        let ssh = PortSpec::parse("22").unwrap();
        let dns = PortSpec::parse("53").unwrap();
        let t: IpNet = "198.51.100.7/32".parse().unwrap();
        let tcp = vec!["tcp".to_string()];
        assert!(in_port_scope(&states[0], &t, &ssh, &tcp));
        assert!(!in_port_scope(&states[1], &t, &ssh, &[]));
        assert!(in_port_scope(&states[1], &t, &dns, &[]));
        assert!(
            !in_port_scope(&states[1], &t, &dns, &tcp),
            "protocol filter"
        );
        // This host's connection to the address's port 443 is not a jail service.
        assert!(!in_port_scope(
            &states[2],
            &t,
            &PortSpec::parse("443").unwrap(),
            &[]
        ));
        let net6: IpNet = "2001:db8::/64".parse().unwrap();
        assert!(in_port_scope(&states[3], &net6, &ssh, &tcp));
        assert!(in_port_scope(&states[5], &net6, &PortSpec::All, &[]));
        assert!(
            !in_port_scope(&states[5], &net6, &ssh, &[]),
            "ICMP has no port"
        );
    }

    #[test]
    fn net_kill_coverage() {
        let (states, _) = parse_states(LISTING);
        let t: IpNet = "198.51.100.7/32".parse().unwrap();
        assert!(killed_by_net_kill(&states[0], &t));
        assert!(!left_by_net_kill(&states[0], &t));
        assert!(!killed_by_net_kill(&states[2], &t));
        assert!(left_by_net_kill(&states[2], &t));
        let other: IpNet = "203.0.113.0/24".parse().unwrap();
        assert!(!left_by_net_kill(&states[0], &other));
    }
}
