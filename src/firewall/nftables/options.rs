//! The nftables backend's options, read from a jail action's parameters.
//!
//! Keys accept `-` and `_` alike (`keep-on-stop` = `keep_on_stop`). Keys this backend does
//! not know are ignored: the parameter map also carries everything else the action's
//! definition resolved. Every value that ends up in the ruleset is validated here, so the
//! script builder only ever sees numbers, fixed keywords and sanitised names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::firewall::{FirewallError, JailSpec, KillScope, PortSpec};

/// The table family. Only `inet` is supported: one table then serves IPv4 and IPv6.
pub const FAMILY: &str = "inet";

/// Default chain priority: `filter - 10`.
pub const DEFAULT_PRIORITY: i32 = -10;

/// The longest kernel timeout warden writes (100 years); longer bans are written as this.
pub const MAX_TIMEOUT_SECS: i64 = 36_500 * 86_400;

/// What the jail's rule does with a banned packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockType {
    Drop,
    /// TCP gets a reset, other protocols an ICMP(v6) port-unreachable.
    Reject,
    /// `reject with tcp reset`; only for jails that ban TCP alone.
    RejectTcpReset,
    /// `reject with icmpx <code>`.
    RejectIcmpx(&'static str),
}

const ICMPX_CODES: &[&str] = &[
    "port-unreachable",
    "admin-prohibited",
    "host-unreachable",
    "no-route",
];

impl BlockType {
    fn parse(s: &str) -> Option<BlockType> {
        let words: Vec<String> = s
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["drop"] | ["deny"] => Some(BlockType::Drop),
            ["reject"] => Some(BlockType::Reject),
            ["reject", "with", "tcp", "reset"] => Some(BlockType::RejectTcpReset),
            ["reject", "with", "icmpx", code] | ["reject", "with", "icmpx", "type", code] => {
                ICMPX_CODES
                    .iter()
                    .find(|c| *c == code)
                    .map(|c| BlockType::RejectIcmpx(c))
            }
            _ => None,
        }
    }
}

/// A layer-4 protocol a jail's rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4 {
    Tcp,
    Udp,
    UdpLite,
    Sctp,
    Dccp,
    Icmp,
    Icmpv6,
}

impl L4 {
    pub fn parse(s: &str) -> Option<L4> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => L4::Tcp,
            "udp" => L4::Udp,
            "udplite" => L4::UdpLite,
            "sctp" => L4::Sctp,
            "dccp" => L4::Dccp,
            "icmp" => L4::Icmp,
            "icmpv6" | "ipv6-icmp" => L4::Icmpv6,
            _ => return None,
        })
    }

    /// The keyword nft and conntrack use.
    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::UdpLite => "udplite",
            L4::Sctp => "sctp",
            L4::Dccp => "dccp",
            L4::Icmp => "icmp",
            L4::Icmpv6 => "icmpv6",
        }
    }

    /// Whether the protocol has ports (`th dport` reads them at the same offset).
    pub fn has_ports(self) -> bool {
        !matches!(self, L4::Icmp | L4::Icmpv6)
    }

    /// The protocols that have ports, for port-scoped rules of jails that name none.
    pub const WITH_PORTS: [L4; 5] = [L4::Tcp, L4::Udp, L4::UdpLite, L4::Sctp, L4::Dccp];
}

/// The hook the shared chain attaches to, or none: a regular chain that the admin's own
/// base chain jumps to (after its `ct state established,related accept`, typically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Input,
    Forward,
    Prerouting,
    None,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Prerouting => "prerouting",
            Hook::None => "none",
        }
    }

    /// Whether the chain is a base chain (attached to a hook).
    pub fn is_base(self) -> bool {
        self != Hook::None
    }
}

/// Which tools cut existing connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillTools {
    pub conntrack: bool,
    pub ss: bool,
}

/// Everything the backend reads from the parameters, validated.
#[derive(Debug, Clone)]
pub struct NftOptions {
    pub nft: PathBuf,
    pub conntrack: PathBuf,
    pub ss: PathBuf,
    /// Table name (the family is always `inet`).
    pub table: String,
    pub chain: String,
    pub hook: Hook,
    pub priority: i32,
    pub blocktype: BlockType,
    pub kill_states: KillScope,
    pub kill_tools: KillTools,
    pub keep_on_stop: bool,
    /// Prefix length IPv4 bans are widened to (32: the address alone).
    pub cidr4: u8,
    /// Prefix length IPv6 bans are widened to (128: the address alone; 64 bans the /64).
    pub cidr6: u8,
    /// Protocols of the jail's rule; empty means every protocol.
    pub protocols: Vec<L4>,
    pub ports: PortSpec,
    /// Time limit of each outside command.
    pub timeout: Duration,
}

impl NftOptions {
    pub fn from_spec(spec: &JailSpec) -> Result<NftOptions, FirewallError> {
        let params: BTreeMap<String, &str> = spec
            .params
            .iter()
            .map(|(k, v)| (k.trim().replace('-', "_"), v.trim()))
            .collect();
        let get = |keys: &[&str]| -> Option<&str> {
            keys.iter()
                .find_map(|k| params.get(*k).copied())
                .filter(|v| !v.is_empty())
        };
        let err = |key: &str, value: &str, expected: &str| {
            FirewallError::Config(format!(
                "jail {}: nftables option {key} = {value:?}: {expected}",
                spec.jail
            ))
        };

        let nft = tool_path(get(&["nftables", "nft"]), "nft");
        let conntrack = tool_path(get(&["conntrack"]), "conntrack");
        let ss = tool_path(get(&["ss"]), "ss");

        let (family, table) = match get(&["table"]) {
            None => (None, "warden".to_string()),
            Some(t) => match t.split_whitespace().collect::<Vec<_>>().as_slice() {
                [name] => (None, (*name).to_string()),
                [fam, name] => (Some(*fam), (*name).to_string()),
                _ => return Err(err("table", t, "expected a name or `inet NAME`")),
            },
        };
        let family = family.or(get(&["table_family"])).unwrap_or(FAMILY);
        if family != FAMILY {
            return Err(err(
                "table_family",
                family,
                "only the inet family is supported (one table for IPv4 and IPv6)",
            ));
        }
        if !is_identifier(&table) {
            return Err(err(
                "table",
                &table,
                "expected a letter followed by letters, digits, `_`, `-` or `.`",
            ));
        }
        let hook = match get(&["chain_hook"]).unwrap_or("input") {
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "prerouting" => Hook::Prerouting,
            "none" => Hook::None,
            h => {
                return Err(err(
                    "chain_hook",
                    h,
                    "expected input, forward, prerouting or none",
                ));
            }
        };
        // A chain the admin jumps to lives in the admin's table, beside an `input` chain
        // of theirs: it gets a name of its own.
        let default_chain = if hook.is_base() { "input" } else { "warden" };
        let chain = get(&["chain"]).unwrap_or(default_chain).to_string();
        if !is_identifier(&chain) {
            return Err(err(
                "chain",
                &chain,
                "expected a letter followed by letters, digits, `_`, `-` or `.`",
            ));
        }
        if let Some(t) = get(&["chain_type"])
            && t != "filter"
        {
            return Err(err("chain_type", t, "only filter chains are supported"));
        }
        let priority = match get(&["chain_priority"]) {
            None => DEFAULT_PRIORITY,
            Some(p) => parse_priority(p).ok_or_else(|| {
                err(
                    "chain_priority",
                    p,
                    "expected a number or a named priority such as `filter - 10`",
                )
            })?,
        };
        let blocktype = match get(&["blocktype"]) {
            None => BlockType::Drop,
            Some(b) => BlockType::parse(b).ok_or_else(|| {
                err(
                    "blocktype",
                    b,
                    "expected drop, reject, `reject with tcp reset` or `reject with icmpx CODE`",
                )
            })?,
        };
        let kill_states = match get(&["kill_states"]) {
            None => spec.kill_states,
            Some(k) => KillScope::parse(k)
                .ok_or_else(|| err("kill_states", k, "expected auto, all, ports or none"))?,
        };
        let kill_tools = match get(&["kill_tools"]) {
            None => KillTools {
                conntrack: true,
                ss: true,
            },
            Some(v) => {
                let mut t = KillTools {
                    conntrack: false,
                    ss: false,
                };
                for w in v.split(|c: char| c == ',' || c.is_whitespace()) {
                    match w {
                        "" => {}
                        "conntrack" => t.conntrack = true,
                        "ss" => t.ss = true,
                        "none" => {}
                        _ => {
                            return Err(err(
                                "kill_tools",
                                v,
                                "expected conntrack, ss, both or none",
                            ));
                        }
                    }
                }
                t
            }
        };
        let keep_on_stop = match get(&["keep_on_stop", "keep"]) {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| err("keep_on_stop", v, "expected yes or no"))?,
        };
        let cidr4 = match get(&["cidr", "cidr4"]) {
            None => 32,
            Some(v) => v
                .trim_start_matches('/')
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=32).contains(n))
                .ok_or_else(|| err("cidr", v, "expected a prefix length from 1 to 32"))?,
        };
        let cidr6 = match get(&["cidr6"]) {
            None => 128,
            Some(v) => v
                .trim_start_matches('/')
                .parse::<u8>()
                .ok()
                .filter(|n| (1..=128).contains(n))
                .ok_or_else(|| err("cidr6", v, "expected a prefix length from 1 to 128"))?,
        };
        let timeout = match get(&["timeout"]) {
            None => Duration::from_secs(60),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| err("timeout", v, "expected a number of seconds"))?,
        };

        let words: Vec<&str> = spec
            .protocols
            .iter()
            .flat_map(|p| p.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|w| !w.is_empty())
            .collect();
        let mut protocols = Vec::new();
        if !words.iter().any(|w| w.eq_ignore_ascii_case("all")) {
            for p in words {
                let l4 = L4::parse(p).ok_or_else(|| {
                    FirewallError::Config(format!(
                        "jail {}: protocol {p:?}: expected tcp, udp, udplite, sctp, dccp, icmp, icmpv6 or all",
                        spec.jail
                    ))
                })?;
                if !protocols.contains(&l4) {
                    protocols.push(l4);
                }
            }
        }
        protocols.sort();
        if let PortSpec::Ports(_) = spec.ports
            && let Some(p) = protocols.iter().find(|p| !p.has_ports())
        {
            return Err(FirewallError::Config(format!(
                "jail {}: protocol {} has no ports, but the jail bans ports {}",
                spec.jail,
                p.name(),
                spec.ports
            )));
        }
        if blocktype == BlockType::RejectTcpReset && protocols != [L4::Tcp] {
            return Err(err(
                "blocktype",
                "reject with tcp reset",
                "only for jails whose protocol is tcp alone",
            ));
        }

        Ok(NftOptions {
            nft,
            conntrack,
            ss,
            table,
            chain,
            hook,
            priority,
            blocktype,
            kill_states,
            kill_tools,
            keep_on_stop,
            cidr4,
            cidr6,
            protocols,
            ports: spec.ports.clone(),
            timeout,
        })
    }
}

/// A configured path, or the first of the usual places that holds the tool, or the bare
/// name for a PATH search (daemons often run with a PATH that lacks the sbin directories).
fn tool_path(configured: Option<&str>, name: &str) -> PathBuf {
    if let Some(p) = configured {
        return PathBuf::from(p);
    }
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// nft's identifier syntax, minus `/` and `\` (allowed by nft, confusing in messages).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && s.len() <= 64
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A number, or one of nft's named priorities with an optional offset (`filter - 10`).
pub fn parse_priority(s: &str) -> Option<i32> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let split = s.find(['+', '-']).unwrap_or(s.len());
    let (name, offset) = s.split_at(split);
    let base: i32 = match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        _ => return None,
    };
    let offset = if offset.is_empty() {
        0
    } else {
        offset
            .strip_prefix('+')
            .unwrap_or(offset)
            .parse::<i32>()
            .ok()?
    };
    base.checked_add(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(params: &[(&str, &str)]) -> JailSpec {
        crate::firewall::test_spec("ssh", &["tcp"], params)
    }

    #[test]
    fn defaults() {
        let o = NftOptions::from_spec(&spec(&[])).unwrap();
        assert_eq!(o.table, "warden");
        assert_eq!(o.chain, "input");
        assert_eq!(o.hook, Hook::Input);
        assert_eq!(o.priority, -10);
        assert_eq!(o.blocktype, BlockType::Drop);
        assert_eq!(o.kill_states, KillScope::Auto);
        assert!(o.kill_tools.conntrack && o.kill_tools.ss);
        assert!(!o.keep_on_stop);
        assert_eq!((o.cidr4, o.cidr6), (32, 128));
        assert_eq!(o.protocols, vec![L4::Tcp]);
    }

    #[test]
    fn reads_fail2ban_style_keys() {
        let o = NftOptions::from_spec(&spec(&[
            ("table", "f2b-table"),
            ("table_family", "inet"),
            ("chain", "f2b-chain"),
            ("chain_priority", "-1"),
            ("blocktype", "reject"),
            ("nftables", "/opt/nft"),
            ("keep-on-stop", "yes"),
            ("cidr6", "64"),
            ("kill_states", "none"),
            ("kill-tools", "ss"),
        ]))
        .unwrap();
        assert_eq!(o.table, "f2b-table");
        assert_eq!(o.chain, "f2b-chain");
        assert_eq!(o.priority, -1);
        assert_eq!(o.blocktype, BlockType::Reject);
        assert_eq!(o.nft, PathBuf::from("/opt/nft"));
        assert!(o.keep_on_stop);
        assert_eq!(o.cidr6, 64);
        assert_eq!(o.kill_states, KillScope::None);
        assert!(!o.kill_tools.conntrack && o.kill_tools.ss);
        let o = NftOptions::from_spec(&spec(&[
            ("table", "inet fw"),
            ("chain_priority", "filter - 5"),
        ]))
        .unwrap();
        assert_eq!((o.table.as_str(), o.priority), ("fw", -5));
    }

    #[test]
    fn rejects_what_could_reach_the_ruleset() {
        for (k, v) in [
            ("table", "ip warden"),
            ("table", "w; flush ruleset"),
            ("chain", "in\"put"),
            ("chain_hook", "output"),
            ("chain_priority", "filter - x"),
            ("blocktype", "accept"),
            ("blocktype", "reject with icmpx evil"),
            ("cidr6", "129"),
            ("cidr", "0"),
            ("keep_on_stop", "maybe"),
            ("kill_tools", "tcpkill"),
        ] {
            let e = NftOptions::from_spec(&spec(&[(k, v)])).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("jail sshd") && msg.contains(k), "{msg}");
        }
    }

    #[test]
    fn protocols_and_ports_must_fit() {
        let mut s = spec(&[]);
        s.protocols = vec!["tcp,udp".into()];
        assert_eq!(
            NftOptions::from_spec(&s).unwrap().protocols,
            vec![L4::Tcp, L4::Udp]
        );
        s.protocols = vec!["all".into()];
        assert!(NftOptions::from_spec(&s).unwrap().protocols.is_empty());
        s.protocols = vec!["icmp".into()];
        assert!(NftOptions::from_spec(&s).is_err());
        s.ports = PortSpec::All;
        assert!(NftOptions::from_spec(&s).is_ok());
        s.protocols = vec!["gre".into()];
        assert!(NftOptions::from_spec(&s).is_err());
        let mut s = spec(&[("blocktype", "reject with tcp reset")]);
        assert!(NftOptions::from_spec(&s).is_ok());
        s.protocols = vec!["udp".into()];
        assert!(NftOptions::from_spec(&s).is_err());
    }

    #[test]
    fn a_chain_without_hook_defaults_to_its_own_name() {
        let o =
            NftOptions::from_spec(&spec(&[("chain_hook", "none"), ("table", "hostfw")])).unwrap();
        assert_eq!(o.hook, Hook::None);
        assert!(!o.hook.is_base());
        assert_eq!((o.table.as_str(), o.chain.as_str()), ("hostfw", "warden"));
        let o = NftOptions::from_spec(&spec(&[("chain_hook", "none"), ("chain", "bans")])).unwrap();
        assert_eq!(o.chain, "bans");
        assert!(Hook::Input.is_base());
    }

    #[test]
    fn priorities() {
        assert_eq!(parse_priority("-10"), Some(-10));
        assert_eq!(parse_priority("filter"), Some(0));
        assert_eq!(parse_priority("filter - 10"), Some(-10));
        assert_eq!(parse_priority("raw+5"), Some(-295));
        assert_eq!(parse_priority("bogus"), None);
    }
}
