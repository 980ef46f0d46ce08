//! The text nft reads (`nft -f -` batches) and the JSON it writes (`nft -j list table`).
//!
//! A batch is one transaction: the kernel applies all of it or none. Three facts of nft
//! 1.0.6 shape the element commands:
//! - `delete element` of an absent element fails the whole batch (nft 1.0.6 has no
//!   `destroy`), while `add element` of an element already present succeeds. So a
//!   removal of an element that may be gone (a kernel timeout may have removed it) is
//!   written as `add` followed by `delete` of the same elements ([`Batch::remove_elements`]).
//! - Whether `add element` of a present element takes the new timeout depends on the
//!   kernel (older ones keep the old one). So a re-ban removes the element and adds it
//!   again with the new timeout, in one transaction.
//! - nft checks interval overlaps against its own view of the set, and after `add` of a
//!   present element followed by `delete`, that view still holds the element: a later
//!   `add` of an overlapping element in the same batch is refused. Plain `delete` followed
//!   by an overlapping `add` is fine. So removals known to be present (just listed) use
//!   plain `delete` ([`Batch::delete_elements`]), and the caller splits the rare batch
//!   that must both remove an element and add one overlapping it.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::names::JailNames;
use super::options::{BlockType, FAMILY, L4, NftOptions};
use crate::firewall::PortSpec;

/// Elements per `add element`/`delete element` command.
const CHUNK: usize = 1024;

/// One `nft -f -` transaction.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    text: String,
    commands: usize,
}

impl Batch {
    pub fn push(&mut self, command: impl AsRef<str>) {
        self.text.push_str(command.as_ref());
        self.text.push('\n');
        self.commands += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    /// Appends another batch's commands.
    pub fn append(&mut self, other: Batch) {
        self.text.push_str(&other.text);
        self.commands += other.commands;
    }

    pub fn commands(&self) -> usize {
        self.commands
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Removes elements whether or not they are present (see the module comment).
    pub fn remove_elements(&mut self, table: &str, set: &str, elems: &[String]) {
        for chunk in elems.chunks(CHUNK) {
            let list = chunk.join(", ");
            self.push(format!("add element {FAMILY} {table} {set} {{ {list} }}"));
            self.push(format!(
                "delete element {FAMILY} {table} {set} {{ {list} }}"
            ));
        }
    }

    /// Deletes elements that are present (the batch fails if one is not).
    pub fn delete_elements(&mut self, table: &str, set: &str, elems: &[String]) {
        for chunk in elems.chunks(CHUNK) {
            let list = chunk.join(", ");
            self.push(format!(
                "delete element {FAMILY} {table} {set} {{ {list} }}"
            ));
        }
    }

    /// Adds elements, each with its timeout in seconds (None: no timeout).
    pub fn add_elements(&mut self, table: &str, set: &str, elems: &[(IpNet, Option<i64>)]) {
        for chunk in elems.chunks(CHUNK) {
            let mut list = String::new();
            for (i, (net, secs)) in chunk.iter().enumerate() {
                if i > 0 {
                    list.push_str(", ");
                }
                list.push_str(&net_text(net));
                if let Some(s) = secs {
                    let _ = write!(list, " timeout {}", timeout_text(*s));
                }
            }
            self.push(format!("add element {FAMILY} {table} {set} {{ {list} }}"));
        }
    }
}

/// An element as nft writes it: an address alone for a host, else `addr/len`.
pub fn net_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.trunc().to_string()
    }
}

/// A timeout in the `1d2h3m4s` form. nft 1.0.6 refuses large single-unit values such as
/// `315360000s` but takes the same time in days.
pub fn timeout_text(secs: i64) -> String {
    let secs = secs.max(1);
    let (d, rest) = (secs / 86_400, secs % 86_400);
    let (h, rest) = (rest / 3_600, rest % 3_600);
    let (m, s) = (rest / 60, rest % 60);
    let mut out = String::new();
    for (v, unit) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
        if v > 0 {
            let _ = write!(out, "{v}{unit}");
        }
    }
    out
}

/// `add table`, idempotent.
pub fn table_decl(o: &NftOptions) -> String {
    format!("add table {FAMILY} {}", o.table)
}

/// The shared chain: a base chain, or with `chain_hook = none` a regular chain that only
/// sees the packets the admin's base chain jumps to it with.
pub fn chain_decl(o: &NftOptions) -> String {
    if !o.hook.is_base() {
        return format!("add chain {FAMILY} {} {}", o.table, o.chain);
    }
    format!(
        "add chain {FAMILY} {} {} {{ type filter hook {} priority {}; policy accept; }}",
        o.table,
        o.chain,
        o.hook.name(),
        o.priority
    )
}

/// One jail's set for one family. No default timeout: elements without one are permanent.
pub fn set_decl(o: &NftOptions, set: &str, v6: bool) -> String {
    format!(
        "add set {FAMILY} {} {set} {{ type {}; flags interval, timeout; }}",
        o.table,
        set_type(v6)
    )
}

pub fn set_type(v6: bool) -> &'static str {
    if v6 { "ipv6_addr" } else { "ipv4_addr" }
}

fn proto_list(protos: &[L4]) -> String {
    match protos {
        [p] => p.name().to_string(),
        ps => format!(
            "{{ {} }}",
            ps.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The protocol and port part of a rule, for the given protocols (empty: every protocol).
fn match_l4(protos: &[L4], ports: &PortSpec) -> String {
    match ports {
        PortSpec::All if protos.is_empty() => String::new(),
        PortSpec::All => format!(" meta l4proto {}", proto_list(protos)),
        PortSpec::Ports(ranges) => {
            let list = ranges
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            match protos {
                [p] => format!(" {} dport {{ {list} }}", p.name()),
                [] => format!(
                    " meta l4proto {} th dport {{ {list} }}",
                    proto_list(&L4::WITH_PORTS)
                ),
                ps => format!(" meta l4proto {} th dport {{ {list} }}", proto_list(ps)),
            }
        }
    }
}

/// The bodies of a jail's rules for one family (what follows `add rule inet T C`).
/// One rule, or two for `reject` when TCP is banned with other protocols: TCP first gets a
/// reset, the rest an ICMP port-unreachable.
pub fn rule_bodies(o: &NftOptions, names: &JailNames, v6: bool) -> Vec<String> {
    let fam = if v6 { "ip6" } else { "ip" };
    let head = format!("{fam} saddr @{}", names.set(v6));
    let tail = format!("comment \"{}\"", names.comment);
    let covers_tcp = o.protocols.is_empty() || o.protocols.contains(&L4::Tcp);
    match &o.blocktype {
        BlockType::Drop => vec![format!(
            "{head}{} counter drop {tail}",
            match_l4(&o.protocols, &o.ports)
        )],
        BlockType::RejectTcpReset => vec![format!(
            "{head}{} counter reject with tcp reset {tail}",
            match_l4(&o.protocols, &o.ports)
        )],
        BlockType::RejectIcmpx(code) => vec![format!(
            "{head}{} counter reject with icmpx {code} {tail}",
            match_l4(&o.protocols, &o.ports)
        )],
        BlockType::Reject if o.protocols == [L4::Tcp] => vec![format!(
            "{head}{} counter reject with tcp reset {tail}",
            match_l4(&o.protocols, &o.ports)
        )],
        BlockType::Reject if covers_tcp => vec![
            format!(
                "{head}{} counter reject with tcp reset {tail}",
                match_l4(&[L4::Tcp], &o.ports)
            ),
            format!(
                "{head}{} counter reject {tail}",
                match_l4(&o.protocols, &o.ports)
            ),
        ],
        BlockType::Reject => vec![format!(
            "{head}{} counter reject {tail}",
            match_l4(&o.protocols, &o.ports)
        )],
    }
}

/// A set element read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemItem {
    Net(IpNet),
    /// A range that is no prefix (only someone else writes these).
    Range(IpAddr, IpAddr),
}

impl ElemItem {
    pub fn text(&self) -> String {
        match self {
            ElemItem::Net(n) => net_text(n),
            ElemItem::Range(a, b) => format!("{a}-{b}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemInfo {
    pub item: ElemItem,
    /// The element's timeout in seconds; None when it has none (permanent).
    pub timeout: Option<i64>,
    /// Seconds left.
    pub expires: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub name: String,
    pub kind: Option<String>,
    pub hook: Option<String>,
    pub prio: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    pub name: String,
    pub kind: String,
    pub flags: Vec<String>,
    pub elems: Vec<ElemInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub chain: String,
    pub handle: u64,
    /// Sets the rule refers to (`@name`), without the `@`.
    pub sets: Vec<String>,
    /// Chains the rule jumps or goes to.
    pub jumps: Vec<String>,
    pub comment: Option<String>,
}

/// A table as `nft -j list table` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub chains: Vec<ChainInfo>,
    pub sets: Vec<SetInfo>,
    pub rules: Vec<RuleInfo>,
}

impl Listing {
    pub fn set(&self, name: &str) -> Option<&SetInfo> {
        self.sets.iter().find(|s| s.name == name)
    }
    pub fn chain(&self, name: &str) -> Option<&ChainInfo> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// Parses `nft -j list table` output.
pub fn parse_listing(json: &str) -> Result<Listing, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no nftables array")?;
    let mut out = Listing::default();
    for item in items {
        if let Some(c) = item.get("chain") {
            out.chains.push(ChainInfo {
                name: str_field(c, "name")?,
                kind: c.get("type").and_then(Value::as_str).map(str::to_string),
                hook: c.get("hook").and_then(Value::as_str).map(str::to_string),
                prio: c.get("prio").and_then(Value::as_i64),
            });
        } else if let Some(s) = item.get("set") {
            let mut elems = Vec::new();
            match s.get("elem") {
                Some(Value::Array(a)) => {
                    for e in a {
                        elems.push(parse_elem(e)?);
                    }
                }
                Some(e) => elems.push(parse_elem(e)?),
                None => {}
            }
            out.sets.push(SetInfo {
                name: str_field(s, "name")?,
                kind: s
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                flags: match s.get("flags") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    Some(Value::String(f)) => vec![f.clone()],
                    _ => Vec::new(),
                },
                elems,
            });
        } else if let Some(r) = item.get("rule") {
            let mut sets = Vec::new();
            let mut jumps = Vec::new();
            if let Some(expr) = r.get("expr") {
                collect_set_refs(expr, &mut sets);
                collect_jumps(expr, &mut jumps);
            }
            out.rules.push(RuleInfo {
                chain: str_field(r, "chain")?,
                handle: r
                    .get("handle")
                    .and_then(Value::as_u64)
                    .ok_or("rule without handle")?,
                sets,
                jumps,
                comment: r.get("comment").and_then(Value::as_str).map(str::to_string),
            });
        }
    }
    Ok(out)
}

fn str_field(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("object without {key}"))
}

fn collect_set_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix('@')
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_set_refs(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_set_refs(x, out)),
        _ => {}
    }
}

/// Targets of `jump` and `goto` verdicts, wherever they sit in the expression (also
/// inside verdict maps).
fn collect_jumps(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_jumps(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                if k == "jump" || k == "goto" {
                    if let Some(target) = x.get("target").and_then(Value::as_str)
                        && !out.iter().any(|n| n == target)
                    {
                        out.push(target.to_string());
                    }
                } else {
                    collect_jumps(x, out);
                }
            }
        }
        _ => {}
    }
}

fn parse_elem(v: &Value) -> Result<ElemInfo, String> {
    if let Some(inner) = v.get("elem") {
        let val = inner.get("val").ok_or("element without val")?;
        return Ok(ElemInfo {
            item: parse_item(val)?,
            timeout: inner.get("timeout").and_then(Value::as_i64),
            expires: inner.get("expires").and_then(Value::as_i64),
        });
    }
    Ok(ElemInfo {
        item: parse_item(v)?,
        timeout: None,
        expires: None,
    })
}

fn parse_addr(v: &Value) -> Result<IpAddr, String> {
    let s = v.as_str().ok_or_else(|| format!("not an address: {v}"))?;
    s.parse().map_err(|_| format!("not an address: {s:?}"))
}

fn parse_item(v: &Value) -> Result<ElemItem, String> {
    if let Some(p) = v.get("prefix") {
        let addr = parse_addr(p.get("addr").ok_or("prefix without addr")?)?;
        let len = p
            .get("len")
            .and_then(Value::as_u64)
            .ok_or("prefix without len")?;
        let net = IpNet::new(addr, u8::try_from(len).map_err(|_| "prefix too long")?)
            .map_err(|e| e.to_string())?;
        return Ok(ElemItem::Net(net));
    }
    if let Some(Value::Array(r)) = v.get("range")
        && r.len() == 2
    {
        let (a, b) = (parse_addr(&r[0])?, parse_addr(&r[1])?);
        return Ok(ElemItem::Range(a, b));
    }
    let a = parse_addr(v)?;
    Ok(ElemItem::Net(IpNet::from(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ports: &str, protos: &[&str], params: &[(&str, &str)]) -> NftOptions {
        NftOptions::from_spec(&crate::firewall::test_spec(ports, protos, params)).unwrap()
    }

    #[test]
    fn rules_for_ports_protocols_and_blocktypes() {
        let n = JailNames::new("sshd");
        let o = opts("ssh,2222:2224", &["tcp"], &[]);
        assert_eq!(
            rule_bodies(&o, &n, false),
            vec![
                "ip saddr @ban4-sshd tcp dport { 22, 2222-2224 } counter drop comment \"warden jail sshd\""
            ]
        );
        let o = opts("53", &["tcp", "udp"], &[("blocktype", "reject")]);
        assert_eq!(
            rule_bodies(&o, &n, true),
            vec![
                "ip6 saddr @ban6-sshd tcp dport { 53 } counter reject with tcp reset comment \"warden jail sshd\"",
                "ip6 saddr @ban6-sshd meta l4proto { tcp, udp } th dport { 53 } counter reject comment \"warden jail sshd\"",
            ]
        );
        let o = opts("all", &[], &[]);
        assert_eq!(
            rule_bodies(&o, &n, false),
            vec!["ip saddr @ban4-sshd counter drop comment \"warden jail sshd\""]
        );
        let o = opts(
            "",
            &["tcp"],
            &[("blocktype", "reject with icmpx admin-prohibited")],
        );
        assert_eq!(
            rule_bodies(&o, &n, false),
            vec![
                "ip saddr @ban4-sshd meta l4proto tcp counter reject with icmpx admin-prohibited comment \"warden jail sshd\""
            ]
        );
        let o = opts("80", &[], &[]);
        assert_eq!(
            rule_bodies(&o, &n, false),
            vec![
                "ip saddr @ban4-sshd meta l4proto { tcp, udp, udplite, sctp, dccp } th dport { 80 } counter drop comment \"warden jail sshd\""
            ]
        );
    }

    #[test]
    fn element_commands() {
        let mut b = Batch::default();
        b.remove_elements(
            "warden",
            "ban4-x",
            &["10.0.0.1".into(), "10.1.0.0/16".into()],
        );
        b.add_elements(
            "warden",
            "ban6-x",
            &[
                ("2001:db8::/64".parse().unwrap(), Some(90061)),
                ("2001:db8:1::1/128".parse().unwrap(), None),
            ],
        );
        assert_eq!(
            b.text(),
            "add element inet warden ban4-x { 10.0.0.1, 10.1.0.0/16 }\n\
             delete element inet warden ban4-x { 10.0.0.1, 10.1.0.0/16 }\n\
             add element inet warden ban6-x { 2001:db8::/64 timeout 1d1h1m1s, 2001:db8:1::1 }\n"
        );
        assert_eq!(b.commands(), 3);
        let many: Vec<String> = (0..2500)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let mut b = Batch::default();
        b.remove_elements("warden", "s", &many);
        assert_eq!(b.commands(), 6);
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_text(3), "3s");
        assert_eq!(timeout_text(0), "1s");
        assert_eq!(timeout_text(3600), "1h");
        assert_eq!(timeout_text(315_360_000), "3650d");
    }

    #[test]
    fn parses_a_listing() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
          {"table": {"family": "inet", "name": "warden", "handle": 3}},
          {"set": {"family": "inet", "name": "ban4-sshd", "table": "warden", "type": "ipv4_addr",
                   "handle": 1, "flags": ["interval", "timeout"],
                   "elem": [{"elem": {"val": "10.0.0.1", "timeout": 77, "expires": 76}},
                            {"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 16}}, "timeout": 50, "expires": 21}},
                            "10.2.0.1",
                            {"range": ["10.3.0.1", "10.3.0.5"]}]}},
          {"set": {"family": "inet", "name": "ban6-sshd", "table": "warden", "type": "ipv6_addr",
                   "handle": 2, "flags": ["interval", "timeout"]}},
          {"chain": {"family": "inet", "table": "warden", "name": "input", "handle": 4,
                     "type": "filter", "hook": "input", "prio": -10, "policy": "accept"}},
          {"rule": {"family": "inet", "table": "warden", "chain": "input", "handle": 5,
                    "comment": "warden jail sshd",
                    "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                              "right": "@ban4-sshd"}}, {"drop": null}]}}]}"#;
        let l = parse_listing(json).unwrap();
        assert_eq!(
            l.chain("input").unwrap(),
            &ChainInfo {
                name: "input".into(),
                kind: Some("filter".into()),
                hook: Some("input".into()),
                prio: Some(-10)
            }
        );
        let s = l.set("ban4-sshd").unwrap();
        assert_eq!(s.flags, vec!["interval", "timeout"]);
        assert_eq!(s.elems.len(), 4);
        assert_eq!(
            s.elems[1],
            ElemInfo {
                item: ElemItem::Net("10.1.0.0/16".parse().unwrap()),
                timeout: Some(50),
                expires: Some(21)
            }
        );
        assert_eq!(s.elems[2].timeout, None);
        assert_eq!(s.elems[3].item.text(), "10.3.0.1-10.3.0.5");
        assert!(l.set("ban6-sshd").unwrap().elems.is_empty());
        assert_eq!(l.rules[0].sets, vec!["ban4-sshd"]);
        assert_eq!(l.rules[0].handle, 5);
        assert!(parse_listing("not json").is_err());
    }
}
