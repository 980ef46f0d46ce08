//! Selecting pflog records by their decoded fields, for jails with `backend = pflog`.
//!
//! A filter is written in the filter file's `[Definition]` (or passed as a filter argument):
//!
//! ```text
//! pflog_match = action=block dir=in ruleset=sshd proto=tcp dport=22,80,1000-2000 !src=10.0.0.0/8
//! ```
//!
//! * A **term** is `field=values`; `field!=values` or `!field=values` negates it.
//! * **Values** are a comma-separated set, any of which may match: names or numbers for
//!   coded fields, `a-b` ranges (ports also `a:b`) for numeric fields, addresses or CIDR
//!   networks for `src`/`dst`, `*`/`?` globs for names. `"..."` quotes a value
//!   (`ruleset=""` is the main ruleset).
//! * Terms on one line must **all** hold. Each line of a multi-line value is an
//!   **alternative**: a record matches if any line does. `any` alone matches every record.
//! * A term on a field the record lacks (no port in an ICMP or truncated packet, no
//!   `ridentifier` outside FreeBSD's layout) is false, so its negation is true.
//!
//! The full field list is in `docs/pflog.md` and in [`FIELDS`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::event::PflogEvent;
use super::header::{ACTION_NAMES, DIRECTION_NAMES, Family, REASON_NAMES};
use super::packet::{PROTOCOL_NAMES, TcpFlags};
use crate::firewall::ports::{PortRange, resolve_port};

/// Field names and what they take, for help texts and the documentation.
pub const FIELDS: &[(&str, &str)] = &[
    (
        "action",
        "pass, block, scrub, nat, rdr, match, ... or a code",
    ),
    (
        "reason",
        "match, short, state-mismatch, src-limit, ... or a code",
    ),
    ("dir", "in, out, inout, fwd"),
    ("if", "interface name glob (alias: interface)"),
    (
        "ruleset",
        "anchor name glob, \"\" for the main ruleset, @jails (alias: anchor)",
    ),
    ("rule", "rule number or range, none for -1"),
    (
        "subrule",
        "rule number inside the anchor or range, none for -1",
    ),
    ("af", "inet, inet6 (alias: family)"),
    ("proto", "tcp, udp, icmp, icmp6, ... or a protocol number"),
    ("src", "address or CIDR network"),
    ("dst", "address or CIDR network"),
    ("sport", "port, service name, or range a-b"),
    ("dport", "port, service name, or range a-b"),
    (
        "flags",
        "TCP flags as in pf.conf: S/SA (set/mask), S (exactly), letters FSRPAUEW",
    ),
    ("icmp-type", "ICMP or ICMPv6 type number or range"),
    (
        "uid",
        "socket uid or range (log (user) rules), none when not looked up",
    ),
    ("ridentifier", "rule identifier or range (FreeBSD)"),
    ("len", "IP datagram length or range"),
];

/// A filter that does not parse: which line of the value, which term, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", context(*.line, .term))]
pub struct FilterError {
    /// 1-based line within the (multi-line) value.
    pub line: usize,
    /// The term at fault, when there is one.
    pub term: Option<String>,
    pub message: String,
}

fn context(line: usize, term: &Option<String>) -> String {
    match term {
        Some(t) => format!("line {line}, `{t}`: "),
        None => format!("line {line}: "),
    }
}

/// What the filter needs to know about the configuration.
#[derive(Debug, Clone, Default)]
pub struct MatchContext {
    /// Names of the jails whose bans are PF anchors `warden/<jail>`; `ruleset=@jails`
    /// matches records logged by any of their rules.
    pub jails: Vec<String>,
}

/// Longest ruleset name PF logs (16 bytes with the terminating NUL).
const RULESET_MAX: usize = 15;

/// 256-bit set of byte codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CodeSet([u64; 4]);

impl CodeSet {
    fn insert(&mut self, c: u8) {
        self.0[(c >> 6) as usize] |= 1 << (c & 63);
    }
    fn contains(&self, c: u8) -> bool {
        self.0[(c >> 6) as usize] & (1 << (c & 63)) != 0
    }
}

/// Numeric ranges, and whether the "absent" value (-1, none) is included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NumSet {
    ranges: Vec<(u32, u32)>,
    none: bool,
}

impl NumSet {
    fn contains(&self, v: Option<u32>) -> bool {
        match v {
            Some(v) => self.ranges.iter().any(|&(a, b)| a <= v && v <= b),
            None => self.none,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Glob {
    Exact(String),
    Pattern(String),
}

impl Glob {
    fn new(s: &str) -> Glob {
        if s.contains(['*', '?']) {
            Glob::Pattern(s.to_string())
        } else {
            Glob::Exact(s.to_string())
        }
    }
    fn matches(&self, s: &str) -> bool {
        match self {
            Glob::Exact(e) => e == s,
            Glob::Pattern(p) => glob_match(p.as_bytes(), s.as_bytes()),
        }
    }
}

/// `*` and `?` glob match, iterative with one backtrack point (linear in practice).
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Action(CodeSet),
    Reason(CodeSet),
    Dir(CodeSet),
    Interface(Vec<Glob>),
    Ruleset(Vec<Glob>),
    Rule(NumSet),
    Subrule(NumSet),
    Family(Vec<Family>),
    Proto(CodeSet),
    Src(Vec<IpNet>),
    Dst(Vec<IpNet>),
    Sport(Vec<PortRange>),
    Dport(Vec<PortRange>),
    /// (set, mask) pairs: flags & mask == set.
    Flags(Vec<(u8, u8)>),
    IcmpType(NumSet),
    Uid(NumSet),
    Ridentifier(NumSet),
    Len(NumSet),
}

fn in_nets(nets: &[IpNet], a: Option<IpAddr>) -> bool {
    a.is_some_and(|a| nets.iter().any(|n| n.contains(&a)))
}

fn in_ports(ports: &[PortRange], p: Option<u16>) -> bool {
    p.is_some_and(|p| ports.iter().any(|r| r.contains(p)))
}

impl Test {
    fn eval(&self, e: &PflogEvent) -> bool {
        match self {
            Test::Action(s) => s.contains(e.action.0),
            Test::Reason(s) => s.contains(e.reason.0),
            Test::Dir(s) => s.contains(e.dir.0),
            Test::Interface(g) => g.iter().any(|g| g.matches(e.interface.as_str())),
            Test::Ruleset(g) => g.iter().any(|g| g.matches(e.ruleset.as_str())),
            Test::Rule(n) => n.contains(e.rule),
            Test::Subrule(n) => n.contains(e.subrule),
            Test::Family(f) => e.family.is_some_and(|x| f.contains(&x)),
            Test::Proto(s) => e.proto.is_some_and(|p| s.contains(p.0)),
            Test::Src(n) => in_nets(n, e.src),
            Test::Dst(n) => in_nets(n, e.dst),
            Test::Sport(p) => in_ports(p, e.sport),
            Test::Dport(p) => in_ports(p, e.dport),
            Test::Flags(f) => e
                .tcp_flags
                .is_some_and(|fl| f.iter().any(|&(set, mask)| fl.0 & mask == set)),
            Test::IcmpType(n) => e.icmp.is_some_and(|i| n.contains(Some(i.kind as u32))),
            Test::Uid(n) => n.contains(e.uid),
            Test::Ridentifier(n) => e.ridentifier.is_some() && n.contains(e.ridentifier),
            Test::Len(n) => n.contains(Some(e.length)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    negated: bool,
    test: Test,
}

/// A parsed filter: alternatives of conjunctions of terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PflogFilter {
    alternatives: Vec<Vec<Term>>,
    text: String,
}

impl fmt::Display for PflogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PflogFilter {
    /// Parses a filter value (one alternative per non-empty line; `#` starts a comment
    /// line).
    pub fn parse(text: &str, ctx: &MatchContext) -> Result<PflogFilter, FilterError> {
        let mut alternatives = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let tokens = tokenize(trimmed).map_err(|m| FilterError {
                line: line_no,
                term: None,
                message: m,
            })?;
            if tokens.len() == 1 && tokens[0].eq_ignore_ascii_case("any") {
                alternatives.push(Vec::new());
                continue;
            }
            let mut terms = Vec::with_capacity(tokens.len());
            for tok in tokens {
                let term = parse_term(&tok, ctx).map_err(|m| FilterError {
                    line: line_no,
                    term: Some(tok.clone()),
                    message: m,
                })?;
                terms.push(term);
            }
            alternatives.push(terms);
        }
        if alternatives.is_empty() {
            return Err(FilterError {
                line: 1,
                term: None,
                message: "no terms (write `any` to match every record)".into(),
            });
        }
        Ok(PflogFilter {
            alternatives,
            text: text.trim().to_string(),
        })
    }

    /// True when some alternative's terms all hold for `e`.
    pub fn matches(&self, e: &PflogEvent) -> bool {
        self.alternatives
            .iter()
            .any(|terms| terms.iter().all(|t| t.test.eval(e) != t.negated))
    }
}

/// Splits a line into terms at whitespace outside double quotes; quotes are kept for the
/// value parser to strip.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Splits a value list at commas outside quotes and strips the quotes.
fn split_values(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut had_quotes = false;
    for c in v.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                had_quotes = true;
            }
            ',' if !quoted => {
                if cur.is_empty() && !had_quotes {
                    return Err("empty value in list".into());
                }
                out.push(std::mem::take(&mut cur));
                had_quotes = false;
            }
            c => cur.push(c),
        }
    }
    if cur.is_empty() && !had_quotes {
        return Err("empty value in list".into());
    }
    out.push(cur);
    Ok(out)
}

fn parse_term(tok: &str, ctx: &MatchContext) -> Result<Term, String> {
    let (mut negated, body) = match tok.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, tok),
    };
    let Some((field, value)) = body.split_once('=') else {
        return Err("expected field=value".into());
    };
    let field = match field.strip_suffix('!') {
        Some(f) => {
            negated = !negated;
            f
        }
        None => field,
    };
    let field = field.trim().to_ascii_lowercase();
    let values = split_values(value)?;
    let test = match field.as_str() {
        "action" => Test::Action(codes(&values, &ACTION_NAMES, &[("drop", 1)])?),
        "reason" => Test::Reason(codes(&values, &REASON_NAMES, &[("translate", 15)])?),
        "dir" | "direction" => Test::Dir(codes(
            &values,
            &DIRECTION_NAMES,
            &[("inout", 0), ("any", 0), ("forward", 3)],
        )?),
        "if" | "interface" | "on" => Test::Interface(values.iter().map(|v| Glob::new(v)).collect()),
        "ruleset" | "anchor" => Test::Ruleset(rulesets(&values, ctx)?),
        "rule" | "rulenr" => Test::Rule(numbers(&values, u32::MAX)?),
        "subrule" | "subrulenr" => Test::Subrule(numbers(&values, u32::MAX)?),
        "af" | "family" => Test::Family(
            values
                .iter()
                .map(|v| match v.to_ascii_lowercase().as_str() {
                    "inet" | "ipv4" | "4" => Ok(Family::Inet),
                    "inet6" | "ipv6" | "6" => Ok(Family::Inet6),
                    _ => Err(format!("unknown address family `{v}` (inet, inet6)")),
                })
                .collect::<Result<_, _>>()?,
        ),
        "proto" | "protocol" => {
            let names: Vec<(&str, u8)> = PROTOCOL_NAMES
                .iter()
                .map(|&(n, s)| (s, n))
                .chain([("icmpv6", 58), ("ipv6-icmp", 58)])
                .collect();
            Test::Proto(codes(&values, &[], &names)?)
        }
        "src" | "from" => Test::Src(nets(&values)?),
        "dst" | "to" => Test::Dst(nets(&values)?),
        "sport" => Test::Sport(ports(&values)?),
        "dport" | "port" => Test::Dport(ports(&values)?),
        "flags" => Test::Flags(
            values
                .iter()
                .map(|v| parse_flags(v))
                .collect::<Result<_, _>>()?,
        ),
        "icmp-type" | "icmptype" | "icmp_type" => Test::IcmpType(numbers(&values, 255)?),
        "uid" => Test::Uid(numbers(&values, u32::MAX)?),
        "ridentifier" | "rid" => Test::Ridentifier(numbers(&values, u32::MAX)?),
        "len" | "length" => Test::Len(numbers(&values, u32::MAX)?),
        _ => {
            let known: Vec<&str> = FIELDS.iter().map(|(f, _)| *f).collect();
            return Err(format!(
                "unknown field `{field}` (known: {})",
                known.join(", ")
            ));
        }
    };
    Ok(Term { negated, test })
}

/// Names (from `table`, indexed by code, and `extra`) or numbers 0-255 to a code set.
fn codes(values: &[String], table: &[&str], extra: &[(&str, u8)]) -> Result<CodeSet, String> {
    let mut set = CodeSet::default();
    for v in values {
        let lower = v.to_ascii_lowercase();
        let code = if let Some(i) = table.iter().position(|n| *n == lower) {
            i as u8
        } else if let Some(&(_, c)) = extra.iter().find(|(n, _)| *n == lower) {
            c
        } else if let Ok(n) = lower.parse::<u8>() {
            n
        } else {
            let mut names: Vec<&str> = table.to_vec();
            names.extend(extra.iter().map(|(n, _)| *n));
            return Err(format!("unknown value `{v}` (known: {})", names.join(", ")));
        };
        set.insert(code);
    }
    Ok(set)
}

fn number(s: &str, max: u32) -> Result<u32, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if n > max as u64 {
        return Err(format!("{n} is larger than {max}"));
    }
    Ok(n as u32)
}

fn numbers(values: &[String], max: u32) -> Result<NumSet, String> {
    let mut set = NumSet::default();
    for v in values {
        if v.eq_ignore_ascii_case("none") || v == "-1" {
            set.none = true;
            continue;
        }
        let (a, b) = match v.split_once('-') {
            Some((a, b)) => (number(a, max)?, number(b, max)?),
            None => {
                let n = number(v, max)?;
                (n, n)
            }
        };
        if b < a {
            return Err(format!("range {v} ends before it starts"));
        }
        set.ranges.push((a, b));
    }
    Ok(set)
}

fn ports(values: &[String]) -> Result<Vec<PortRange>, String> {
    let mut out = Vec::new();
    for v in values {
        // Service names may contain '-' (netbios-ns): a whole-value name wins over a range.
        if let Ok(p) = resolve_port(v) {
            out.push(PortRange::single(p));
            continue;
        }
        let (a, b) = match v.split_once(['-', ':']) {
            Some((a, b)) => (resolve_port(a.trim())?, resolve_port(b.trim())?),
            None => {
                let p = resolve_port(v.trim())?;
                (p, p)
            }
        };
        if b < a {
            return Err(format!("port range {v} ends before it starts"));
        }
        out.push(PortRange { start: a, end: b });
    }
    Ok(out)
}

fn nets(values: &[String]) -> Result<Vec<IpNet>, String> {
    values
        .iter()
        .map(|v| {
            if let Ok(n) = v.parse::<IpNet>() {
                return Ok(n.trunc());
            }
            v.parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("`{v}` is not an address or CIDR network"))
        })
        .collect()
}

fn rulesets(values: &[String], ctx: &MatchContext) -> Result<Vec<Glob>, String> {
    let mut out = Vec::new();
    for v in values {
        if v == "@jails" {
            if ctx.jails.is_empty() {
                return Err("@jails names no jail here".into());
            }
            for j in &ctx.jails {
                // PF logs at most 15 bytes of the anchor name.
                let mut end = j.len().min(RULESET_MAX);
                while !j.is_char_boundary(end) {
                    end -= 1;
                }
                out.push(Glob::Exact(j[..end].to_string()));
            }
        } else if v.starts_with('@') {
            return Err(format!("unknown set `{v}` (known: @jails)"));
        } else {
            out.push(Glob::new(v));
        }
    }
    Ok(out)
}

fn flag_bits(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c.to_ascii_uppercase() {
            'F' => TcpFlags::FIN,
            'S' => TcpFlags::SYN,
            'R' => TcpFlags::RST,
            'P' => TcpFlags::PSH,
            'A' | '.' => TcpFlags::ACK,
            'U' => TcpFlags::URG,
            'E' => TcpFlags::ECE,
            'W' | 'C' => TcpFlags::CWR,
            _ => return Err(format!("unknown TCP flag `{c}` (FSRPAUEW)")),
        };
    }
    Ok(bits)
}

fn parse_flags(v: &str) -> Result<(u8, u8), String> {
    let (set, mask) = match v.split_once('/') {
        Some((s, m)) => (flag_bits(s)?, flag_bits(m)?),
        None => (flag_bits(v)?, 0xff),
    };
    if set & !mask != 0 {
        return Err(format!("flags {v}: set flags outside the mask never match"));
    }
    Ok((set, mask))
}

/// Which address of a matching record is the offender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostField {
    /// The packet's source (inbound blocks, scans).
    #[default]
    Src,
    /// The packet's destination (outbound blocks: a local host talking to a bad address).
    Dst,
}

/// A pflog jail's record selection, from its filter options: `pflog_match` (default
/// `any`), `pflog_ignore` (optional) and `pflog_host` (`src` or `dst`, default `src`).
#[derive(Debug, Clone)]
pub struct PflogJailFilter {
    pub include: PflogFilter,
    pub ignore: Option<PflogFilter>,
    pub host: HostField,
}

impl PflogJailFilter {
    /// Builds the selection from a filter's resolved options. Errors name the option.
    pub fn from_options(
        options: &BTreeMap<String, String>,
        ctx: &MatchContext,
    ) -> Result<PflogJailFilter, (String, FilterError)> {
        let include = match options.get("pflog_match") {
            Some(v) => PflogFilter::parse(v, ctx).map_err(|e| ("pflog_match".to_string(), e))?,
            None => PflogFilter::parse("any", ctx).map_err(|e| ("pflog_match".to_string(), e))?,
        };
        let ignore = match options.get("pflog_ignore").map(|s| s.trim()) {
            Some(v) if !v.is_empty() => {
                Some(PflogFilter::parse(v, ctx).map_err(|e| ("pflog_ignore".to_string(), e))?)
            }
            _ => None,
        };
        let host = match options
            .get("pflog_host")
            .map(|s| s.trim().to_ascii_lowercase())
        {
            None => HostField::Src,
            Some(h) if h.is_empty() || h == "src" => HostField::Src,
            Some(h) if h == "dst" => HostField::Dst,
            Some(h) => {
                return Err((
                    "pflog_host".to_string(),
                    FilterError {
                        line: 1,
                        term: None,
                        message: format!("`{h}` is neither src nor dst"),
                    },
                ));
            }
        };
        Ok(PflogJailFilter {
            include,
            ignore,
            host,
        })
    }

    /// The offender's address when `e` is selected and not ignored.
    pub fn failure_host(&self, e: &PflogEvent) -> Option<IpAddr> {
        if !self.include.matches(e) || self.ignore.as_ref().is_some_and(|i| i.matches(e)) {
            return None;
        }
        match self.host {
            HostField::Src => e.src,
            HostField::Dst => e.dst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pflog::header::{Action, Direction, Layout, Reason, ShortName};
    use crate::source::pflog::packet::Protocol;

    fn ev() -> PflogEvent {
        PflogEvent {
            time: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            layout: Layout::FreeBsd,
            action: Action::BLOCK,
            reason: Reason::MATCH,
            dir: Direction::IN,
            interface: ShortName::from_field(b"vtnet0"),
            ruleset: ShortName::from_field(b"sshd"),
            rule: Some(5),
            subrule: Some(0),
            uid: None,
            pid: None,
            rule_uid: Some(0),
            rule_pid: Some(12),
            ridentifier: Some(0),
            rewritten: None,
            af: 2,
            family: Some(Family::Inet),
            proto: Some(Protocol::TCP),
            src: Some("198.51.100.7".parse().unwrap()),
            dst: Some("192.0.2.10".parse().unwrap()),
            sport: Some(41854),
            dport: Some(22),
            tcp_flags: Some(TcpFlags(TcpFlags::SYN)),
            tcp: None,
            icmp: None,
            length: 60,
            payload_len: None,
            caplen: 112,
            origlen: 132,
            fragment: false,
            missing: None,
        }
    }

    fn m(text: &str) -> bool {
        let ctx = MatchContext {
            jails: vec!["sshd".into(), "a-very-long-jail-name".into()],
        };
        PflogFilter::parse(text, &ctx).unwrap().matches(&ev())
    }

    fn err(text: &str) -> String {
        PflogFilter::parse(text, &MatchContext::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_example_filter_matches() {
        assert!(m(
            "action=block dir=in ruleset=sshd proto=tcp dport=22,80,1000-2000 !src=10.0.0.0/8"
        ));
        assert!(!m("action=block dport=80,1000-2000"));
        assert!(!m("action=block src!=198.51.100.0/24"));
    }

    #[test]
    fn every_field_can_select_and_reject() {
        for (yes, no) in [
            ("action=drop", "action=pass,match"),
            ("reason=match", "reason=state-mismatch"),
            ("dir=in", "dir=out,fwd"),
            ("if=vtnet*", "if=em?"),
            ("ruleset=ss*", "ruleset=\"\""),
            ("rule=1-9", "rule=none"),
            ("subrule=0", "subrule=1-100"),
            ("af=inet", "af=inet6"),
            ("proto=6", "proto=udp,icmp6"),
            ("src=198.51.100.7", "src=198.51.100.8,2001:db8::/32"),
            ("dst=192.0.2.0/24", "dst=192.0.3.0/24"),
            ("sport=40000-50000", "sport=ssh"),
            ("dport=ssh", "dport=23:21000"),
            ("flags=S/SA", "flags=SA/SA"),
            ("uid=none", "uid=0-65535"),
            ("ridentifier=0", "ridentifier=1-9"),
            ("len=60", "len=61-1500"),
            ("ruleset=@jails", "ruleset=a-very-long-jail-name"),
        ] {
            assert!(m(yes), "{yes} should match");
            assert!(!m(no), "{no} should not match");
            assert!(!m(&format!("!{yes}")), "!{yes} should not match");
            assert!(m(&format!("!{no}")), "!{no} should match");
        }
    }

    #[test]
    fn jail_names_are_truncated_as_pf_logs_them() {
        let mut e = ev();
        e.ruleset = ShortName::from_field(b"a-very-long-jai\0");
        let ctx = MatchContext {
            jails: vec!["a-very-long-jail-name".into()],
        };
        assert!(
            PflogFilter::parse("ruleset=@jails", &ctx)
                .unwrap()
                .matches(&e)
        );
    }

    #[test]
    fn absent_fields_fail_positive_terms_and_pass_negated_ones() {
        let mut e = ev();
        e.dport = None;
        e.tcp_flags = None;
        let f = |t: &str| {
            PflogFilter::parse(t, &MatchContext::default())
                .unwrap()
                .matches(&e)
        };
        assert!(!f("dport=0-65535"));
        assert!(f("!dport=22"));
        assert!(!f("flags=S/SA"));
        assert!(f("icmp-type!=8"));
    }

    #[test]
    fn lines_are_alternatives_and_any_matches_everything() {
        assert!(m("dport=80\n\n# comment\ndport=22"));
        assert!(!m("dport=80\ndport=443"));
        assert!(m("any"));
        assert!(m("  ANY  "));
    }

    #[test]
    fn glob_corner_cases() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"", b"x"));
    }

    #[test]
    fn errors_say_which_line_and_term_and_why() {
        assert_eq!(
            err("action=block\ndport=22-x"),
            "line 2, `dport=22-x`: unknown port name \"x\""
        );
        assert!(err("colour=red").starts_with("line 1, `colour=red`: unknown field `colour`"));
        assert!(err("action=blok").contains("unknown value `blok` (known: pass, block"));
        assert_eq!(err("dport"), "line 1, `dport`: expected field=value");
        assert_eq!(
            err("src=10.0.0.0/33"),
            "line 1, `src=10.0.0.0/33`: `10.0.0.0/33` is not an address or CIDR network"
        );
        assert_eq!(
            err("rule=9-3"),
            "line 1, `rule=9-3`: range 9-3 ends before it starts"
        );
        assert_eq!(
            err("dport=22,,80"),
            "line 1, `dport=22,,80`: empty value in list"
        );
        assert_eq!(err("ruleset=\"abc"), "line 1: unterminated quote");
        assert_eq!(
            err("flags=S/A"),
            "line 1, `flags=S/A`: flags S/A: set flags outside the mask never match"
        );
        assert_eq!(
            err("ruleset=@jails"),
            "line 1, `ruleset=@jails`: @jails names no jail here"
        );
        assert_eq!(
            err(""),
            "line 1: no terms (write `any` to match every record)"
        );
        assert_eq!(
            err("icmp-type=256"),
            "line 1, `icmp-type=256`: 256 is larger than 255"
        );
    }

    #[test]
    fn jail_filter_options() {
        let mut o = BTreeMap::new();
        o.insert("pflog_match".to_string(), "action=block".to_string());
        o.insert("pflog_ignore".to_string(), "dport=22".to_string());
        let ctx = MatchContext::default();
        let jf = PflogJailFilter::from_options(&o, &ctx).unwrap();
        assert_eq!(jf.failure_host(&ev()), None);
        o.insert("pflog_ignore".to_string(), "dport=23".to_string());
        o.insert("pflog_host".to_string(), "dst".to_string());
        let jf = PflogJailFilter::from_options(&o, &ctx).unwrap();
        assert_eq!(jf.failure_host(&ev()), Some("192.0.2.10".parse().unwrap()));
        o.insert("pflog_host".to_string(), "both".to_string());
        let (key, e) = PflogJailFilter::from_options(&o, &ctx).unwrap_err();
        assert_eq!(key, "pflog_host");
        assert!(e.message.contains("neither src nor dst"));
        let jf = PflogJailFilter::from_options(&BTreeMap::new(), &ctx).unwrap();
        assert_eq!(
            jf.failure_host(&ev()),
            Some("198.51.100.7".parse().unwrap())
        );
    }
}
