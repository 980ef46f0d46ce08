//! The simulated kernel state (the JSON file of `PFCTL_SIM_STATE`): anchors with their
//! rules and tables, table entries with `tzero` and counters, states, source nodes,
//! limits and the enabled flag. Loading normalises entry keys to `addr/prefix`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::addr::{self, Net};

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_zero2(v: &[u64; 2]) -> bool {
    *v == [0, 0]
}

fn minus_one() -> i64 {
    -1
}

fn is_minus_one(v: &i64) -> bool {
    *v == -1
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// This host's id (8 hex digits): what `-k id -k ID` without `/creator` matches.
    /// Unset: such a kill matches the id whatever the state's creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostid: Option<String>,
    /// Overrides of the per-OS default limits (`-s memory`, `table-entries`, `tables`).
    #[serde(default)]
    pub limits: BTreeMap<String, u64>,
    /// Key `""` is the main ruleset; other keys are full anchor paths.
    #[serde(default)]
    pub anchors: BTreeMap<String, Anchor>,
    #[serde(default)]
    pub states: Vec<PfState>,
    #[serde(default)]
    pub src_nodes: Vec<SrcNode>,
}

impl Default for State {
    fn default() -> Self {
        State {
            enabled: true,
            hostid: None,
            limits: BTreeMap::new(),
            anchors: BTreeMap::new(),
            states: Vec::new(),
            src_nodes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub tables: BTreeMap<String, Table>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    #[serde(default)]
    pub persist: bool,
    #[serde(default, rename = "const")]
    pub konst: bool,
    #[serde(default)]
    pub counters: bool,
    /// False for a table that only exists because a rule references it (flags `----r--`):
    /// such a table is invisible to `-s Tables` and table commands answer ESRCH.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
    /// Time the table was created or last zeroed (`-vv -s Tables` "Cleared").
    #[serde(default)]
    pub tzero: i64,
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub evaluations: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub in_block: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub in_match: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub in_pass: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub in_xpass: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub out_block: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub out_match: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub out_pass: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub out_xpass: [u64; 2],
    #[serde(default)]
    pub entries: BTreeMap<String, Entry>,
}

impl Table {
    pub fn new(persist: bool, now: i64) -> Self {
        Table {
            persist,
            konst: false,
            counters: false,
            active: true,
            tzero: now,
            evaluations: [0, 0],
            in_block: [0, 0],
            in_match: [0, 0],
            in_pass: [0, 0],
            in_xpass: [0, 0],
            out_block: [0, 0],
            out_match: [0, 0],
            out_pass: [0, 0],
            out_xpass: [0, 0],
            entries: BTreeMap::new(),
        }
    }

    /// Entries in kernel radix order with their parsed keys.
    pub fn sorted_entries(&self) -> Vec<(Net, &Entry)> {
        let mut v: Vec<(Net, &Entry)> = self
            .entries
            .iter()
            .map(|(k, e)| (addr::parse_key(k).expect("keys are normalised on load"), e))
            .collect();
        v.sort_by_key(|(n, _)| n.sort_key());
        v
    }

    pub fn clear_counters(&mut self, now: i64) {
        self.tzero = now;
        self.evaluations = [0, 0];
        for c in [
            &mut self.in_block,
            &mut self.in_match,
            &mut self.in_pass,
            &mut self.in_xpass,
            &mut self.out_block,
            &mut self.out_match,
            &mut self.out_pass,
            &mut self.out_xpass,
        ] {
            *c = [0, 0];
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Time the entry was inserted or last zeroed.
    #[serde(default)]
    pub tzero: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub not: bool,
    #[serde(default)]
    pub in_block: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub in_match: [u64; 2],
    #[serde(default)]
    pub in_pass: [u64; 2],
    #[serde(default)]
    pub out_block: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub out_match: [u64; 2],
    #[serde(default)]
    pub out_pass: [u64; 2],
}

impl Entry {
    pub fn new(not: bool, now: i64) -> Self {
        Entry {
            tzero: now,
            not,
            ..Entry::default()
        }
    }

    pub fn has_counts(&self) -> bool {
        [
            self.in_block,
            self.in_match,
            self.in_pass,
            self.out_block,
            self.out_match,
            self.out_pass,
        ]
        .iter()
        .any(|c| *c != [0, 0])
    }

    pub fn clear(&mut self, now: i64) {
        let not = self.not;
        *self = Entry::new(not, now);
    }
}

/// One state. `src`/`sport` is the initiator and `dst`/`dport` the responder as seen on
/// the wire; `src_state`/`dst_state` are the initiator's and responder's peer states
/// (pfctl prints them swapped for inbound states, as it swaps the hosts).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PfState {
    pub id: String,
    #[serde(default = "default_creator")]
    pub creatorid: String,
    #[serde(default = "default_ifname")]
    pub ifname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_ifname: Option<String>,
    #[serde(default = "default_proto")]
    pub proto: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub af: Option<u8>,
    #[serde(default = "default_dir")]
    pub dir: String,
    pub src: String,
    #[serde(default)]
    pub sport: u16,
    pub dst: String,
    #[serde(default)]
    pub dport: u16,
    /// Addresses after translation (the stack side), when NAT/rdr applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_dport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_state: Option<String>,
    /// `[seqlo, window]` of each peer for the `-v` TCP line; `[0, 0]` when unset.
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub src_seq: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero2")]
    pub dst_seq: [u64; 2],
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub src_wscale: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub dst_wscale: u32,
    #[serde(default)]
    pub label: String,
    #[serde(default = "minus_one")]
    pub rule: i64,
    #[serde(default = "minus_one")]
    pub anchor: i64,
    #[serde(default)]
    pub age: u64,
    #[serde(default)]
    pub expires: u64,
    #[serde(default)]
    pub pkts: [u64; 2],
    #[serde(default)]
    pub bytes: [u64; 2],
    /// `route-to`, `reply-to` or `dup-to` with its gateway (FreeBSD `-k gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_ifname: Option<String>,
    #[serde(default = "minus_one", skip_serializing_if = "is_minus_one")]
    pub rtableid: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub rdomain: u32,
}

fn default_creator() -> String {
    "00000000".into()
}
fn default_ifname() -> String {
    "all".into()
}
fn default_proto() -> String {
    "tcp".into()
}
fn default_dir() -> String {
    "in".into()
}

/// A parsed view of a state's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl PfState {
    pub fn wire(&self) -> Key {
        Key {
            src: self.src.parse().expect("validated on load"),
            sport: self.sport,
            dst: self.dst.parse().expect("validated on load"),
            dport: self.dport,
        }
    }

    pub fn stack(&self) -> Key {
        let w = self.wire();
        Key {
            src: self
                .stack_src
                .as_deref()
                .map_or(w.src, |s| s.parse().expect("validated")),
            sport: self.stack_sport.unwrap_or(w.sport),
            dst: self
                .stack_dst
                .as_deref()
                .map_or(w.dst, |s| s.parse().expect("validated")),
            dport: self.stack_dport.unwrap_or(w.dport),
        }
    }

    pub fn is_v6(&self) -> bool {
        self.wire().src.is_ipv6()
    }

    pub fn outbound(&self) -> bool {
        self.dir == "out"
    }

    pub fn proto_number(&self) -> Option<u8> {
        proto_number(&self.proto)
    }

    fn validate(&self) -> Result<(), String> {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&self.id, 16) {
            return Err(format!("state id '{}' is not 16 hex digits", self.id));
        }
        if !hex(&self.creatorid, 8) {
            return Err(format!(
                "creatorid '{}' is not 8 hex digits",
                self.creatorid
            ));
        }
        if self.dir != "in" && self.dir != "out" {
            return Err(format!("state {}: dir must be in or out", self.id));
        }
        let mut fam = None;
        for a in [
            Some(&self.src),
            Some(&self.dst),
            self.stack_src.as_ref(),
            self.stack_dst.as_ref(),
            self.rt_addr.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let ip: IpAddr = a
                .parse()
                .map_err(|_| format!("state {}: invalid address '{a}'", self.id))?;
            if *fam.get_or_insert(ip.is_ipv4()) != ip.is_ipv4() {
                return Err(format!("state {}: mixed address families", self.id));
            }
        }
        let v4 = fam.unwrap_or(true);
        if let Some(af) = self.af
            && ((af == 4) != v4 || (af != 4 && af != 6))
        {
            return Err(format!(
                "state {}: af {af} does not match its addresses",
                self.id
            ));
        }
        if self.proto_number().is_none() {
            return Err(format!(
                "state {}: unknown protocol '{}'",
                self.id, self.proto
            ));
        }
        Ok(())
    }
}

/// Protocol numbers of the names `/etc/protocols` gives the protocols PF tracks.
pub fn proto_number(p: &str) -> Option<u8> {
    let n = match p {
        "icmp" | "ICMP" => 1,
        "igmp" | "IGMP" => 2,
        "tcp" | "TCP" => 6,
        "udp" | "UDP" => 17,
        "gre" | "GRE" => 47,
        "esp" | "ESP" => 50,
        "ah" | "AH" => 51,
        "ipv6-icmp" | "IPv6-ICMP" | "icmp6" => 58,
        "sctp" | "SCTP" => 132,
        "carp" | "CARP" => 112,
        "pfsync" | "PFSYNC" => 240,
        other => return other.parse().ok(),
    };
    Some(n)
}

/// `pfctl_proto2name()`.
pub fn proto_name(n: u8) -> String {
    match n {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        51 => "ah".into(),
        58 => "ipv6-icmp".into(),
        112 => "carp".into(),
        132 => "sctp".into(),
        240 => "pfsync".into(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrcNode {
    pub addr: String,
    /// Translation or route address; unspecified prints as `0.0.0.0` / `::`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raddr: Option<String>,
    #[serde(default = "minus_one")]
    pub rule: i64,
    #[serde(default)]
    pub states: u32,
    #[serde(default)]
    pub conn: u32,
    /// `[count (x1000), seconds]` of the connection-rate tracker.
    #[serde(default)]
    pub rate: [u32; 2],
    #[serde(default)]
    pub age: u64,
    #[serde(default)]
    pub expires: u64,
    #[serde(default)]
    pub pkts: [u64; 2],
    #[serde(default)]
    pub bytes: [u64; 2],
}

impl SrcNode {
    pub fn addr(&self) -> IpAddr {
        self.addr.parse().expect("validated on load")
    }

    pub fn raddr(&self) -> IpAddr {
        match &self.raddr {
            Some(a) => a.parse().expect("validated on load"),
            None if self.addr().is_ipv4() => IpAddr::from([0u8; 4]),
            None => IpAddr::from([0u16; 8]),
        }
    }
}

impl State {
    /// Checks and canonicalises what a test wrote: entry keys become `addr/prefix`,
    /// empty anchors are dropped. The error names the offending field.
    pub fn normalise(&mut self) -> Result<(), String> {
        for (aname, anchor) in self.anchors.iter_mut() {
            for (tname, table) in anchor.tables.iter_mut() {
                let mut fixed = BTreeMap::new();
                for (k, e) in std::mem::take(&mut table.entries) {
                    let n = addr::parse_key(&k).map_err(|m| {
                        format!("anchors.\"{aname}\".tables.\"{tname}\".entries: {m}")
                    })?;
                    fixed.insert(n.key(), e);
                }
                table.entries = fixed;
            }
        }
        for s in &self.states {
            s.validate()?;
        }
        for n in &self.src_nodes {
            let a: IpAddr = n
                .addr
                .parse()
                .map_err(|_| format!("src_nodes: invalid address '{}'", n.addr))?;
            if let Some(r) = &n.raddr {
                let r: IpAddr = r
                    .parse()
                    .map_err(|_| format!("src_nodes: invalid address '{r}'"))?;
                if r.is_ipv4() != a.is_ipv4() {
                    return Err(format!(
                        "src_nodes: mixed address families for '{}'",
                        n.addr
                    ));
                }
            }
        }
        if let Some(h) = &self.hostid
            && (h.len() != 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("hostid '{h}' is not 8 hex digits"));
        }
        self.prune();
        Ok(())
    }

    /// Drops stored anchors without rules or tables; existence is computed, not stored.
    pub fn prune(&mut self) {
        self.anchors
            .retain(|_, a| !a.rules.is_empty() || !a.tables.is_empty());
    }

    pub fn anchor(&self, path: &str) -> Option<&Anchor> {
        self.anchors.get(path)
    }

    pub fn anchor_mut(&mut self, path: &str) -> &mut Anchor {
        self.anchors.entry(path.to_string()).or_default()
    }

    /// Every ruleset the kernel would have: the main one, anchors with rules or tables,
    /// anchors named by anchor-call rules, and all their ancestors.
    pub fn existing_anchors(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        out.insert(String::new());
        let add = |p: &str, out: &mut BTreeSet<String>| {
            let mut cur = String::new();
            for comp in p.split('/').filter(|c| !c.is_empty()) {
                if !cur.is_empty() {
                    cur.push('/');
                }
                cur.push_str(comp);
                out.insert(cur.clone());
            }
        };
        for (path, a) in &self.anchors {
            if !a.rules.is_empty() || !a.tables.is_empty() {
                add(path, &mut out);
            }
            for r in &a.rules {
                if let Some((target, _)) = crate::rules::anchor_call_target(path, r) {
                    add(&target, &mut out);
                }
            }
        }
        out
    }

    pub fn anchor_exists(&self, path: &str) -> bool {
        path.is_empty() || self.existing_anchors().contains(path)
    }

    /// Number of rule references to `<name>` in the anchor.
    pub fn rule_refs(&self, anchor: &str, name: &str) -> usize {
        let pat = format!("<{name}>");
        self.anchor(anchor)
            .map(|a| a.rules.iter().map(|r| r.matches(&pat).count()).sum())
            .unwrap_or(0)
    }

    pub fn total_entries(&self) -> usize {
        self.anchors
            .values()
            .flat_map(|a| a.tables.values())
            .map(|t| t.entries.len())
            .sum()
    }

    pub fn total_tables(&self) -> usize {
        self.anchors.values().map(|a| a.tables.len()).sum()
    }

    /// A table losing its active flag (`-T kill`, `-F Tables`): referenced ones stay as
    /// empty inactive tables with no user flags, the others disappear.
    pub fn deactivate_table(&mut self, anchor: &str, name: &str) {
        let referenced = self.rule_refs(anchor, name) > 0;
        let a = self.anchor_mut(anchor);
        if referenced {
            if let Some(t) = a.tables.get_mut(name) {
                t.active = false;
                t.persist = false;
                t.konst = false;
                t.counters = false;
                t.entries.clear();
            }
        } else {
            a.tables.remove(name);
        }
    }

    /// After rules changed: unreferenced non-persistent tables go away, referenced
    /// tables that do not exist yet are attached as inactive ones.
    pub fn settle_tables(&mut self, anchor: &str, now: i64) {
        let referenced: BTreeSet<String> = self
            .anchor(anchor)
            .map(|a| {
                a.rules
                    .iter()
                    .flat_map(|r| crate::rules::table_refs(r))
                    .collect()
            })
            .unwrap_or_default();
        let a = self.anchor_mut(anchor);
        a.tables
            .retain(|name, t| referenced.contains(name) || (t.active && t.persist));
        for name in referenced {
            a.tables.entry(name).or_insert_with(|| {
                let mut t = Table::new(false, now);
                t.active = false;
                t
            });
        }
    }
}
