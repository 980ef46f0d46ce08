//! Cutting a banned address's existing connections on Linux.
//!
//! A firewall rule stops packets; it does not end connections. Two things outlive a ban:
//! - conntrack entries, which rulesets that accept `ct state established` early (and NAT,
//!   and forwarded traffic) keep honouring. They are deleted with `conntrack -D`.
//! - local sockets: a server process blocked on a connection from the banned address stays
//!   blocked until TCP gives up, which for an idle connection can be never. They are
//!   destroyed with `ss -K` (SOCK_DESTROY; needs a kernel with CONFIG_INET_DIAG_DESTROY),
//!   which aborts the socket: the process sees ECONNABORTED at once and the peer a reset.
//!
//! Both are optional: a missing tool or missing kernel support is reported once, and the
//! ban itself is unaffected. One `conntrack -L` dump per batch finds the flows to delete,
//! so a batch of addresses that have no flows costs one process; `ss -K` takes many
//! addresses in one filter.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ipnet::IpNet;

use crate::exec::{Cmd, ExecError};
use crate::firewall::{KillReport, KillScope, PortRange};

/// Addresses per `ss -K` call: ss compiles its filter into kernel bytecode whose jumps are
/// short, so very long filters are split.
const SS_CHUNK: usize = 32;

/// What to cut for each target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutScope {
    /// Every flow and socket of the address.
    All,
    /// Only flows and sockets between the address and these local ports.
    Ports {
        ports: Vec<PortRange>,
        /// Protocol names (`tcp`, `udp`, ...); empty means every protocol with ports.
        protocols: Vec<String>,
    },
}

impl CutScope {
    fn kill_scope(&self) -> KillScope {
        match self {
            CutScope::All => KillScope::All,
            CutScope::Ports { .. } => KillScope::Ports,
        }
    }

    fn covers_proto(&self, proto: &str) -> bool {
        match self {
            CutScope::All => true,
            CutScope::Ports { protocols, .. } if protocols.is_empty() => {
                matches!(proto, "tcp" | "udp" | "udplite" | "sctp" | "dccp")
            }
            CutScope::Ports { protocols, .. } => protocols.iter().any(|p| p == proto),
        }
    }

    fn covers_port(&self, port: u16) -> bool {
        match self {
            CutScope::All => true,
            CutScope::Ports { ports, .. } => ports.iter().any(|r| r.contains(port)),
        }
    }
}

/// The tools that cut connections; None disables one.
#[derive(Debug, Clone)]
pub struct Cutter {
    pub conntrack: Option<PathBuf>,
    pub ss: Option<PathBuf>,
    pub timeout: Duration,
}

/// A problem of one tool; reported, never fatal to a ban.
#[derive(Debug, thiserror::Error)]
pub enum CutError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{cmd}: {message}")]
    Output { cmd: String, message: String },
}

static CONNTRACK_MISSING: AtomicBool = AtomicBool::new(false);
static CONNTRACK_FAILED: AtomicBool = AtomicBool::new(false);
static SS_MISSING: AtomicBool = AtomicBool::new(false);
static SS_FAILED: AtomicBool = AtomicBool::new(false);
static SS_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

fn first_time(flag: &AtomicBool) -> bool {
    !flag.swap(true, Ordering::Relaxed)
}

fn is_missing(e: &CutError) -> bool {
    matches!(e, CutError::Exec(ExecError::Spawn { source, .. })
        if source.kind() == std::io::ErrorKind::NotFound)
}

impl Cutter {
    /// Cuts the flows and sockets of `targets` and reports, per target, how many went.
    /// Problems are logged (once per kind), never returned: the ban stands either way.
    pub fn cut(&self, jail: &str, targets: &[IpNet], scope: &CutScope) -> Vec<KillReport> {
        let mut killed: BTreeMap<IpNet, u64> = targets.iter().map(|t| (*t, 0)).collect();
        if targets.is_empty() {
            return Vec::new();
        }
        if let Some(ct) = &self.conntrack {
            match self.cut_flows(ct, targets, scope) {
                Ok(counts) => add_counts(&mut killed, counts),
                Err(e) if is_missing(&e) => {
                    if first_time(&CONNTRACK_MISSING) {
                        tracing::warn!(jail, tool = %ct.display(), "Conntrack tool not found: existing conntrack entries of banned addresses are not deleted");
                    }
                }
                Err(e) => {
                    if first_time(&CONNTRACK_FAILED) {
                        tracing::warn!(jail, error = %e, "Cannot delete conntrack entries of banned addresses (reported once)");
                    } else {
                        tracing::debug!(jail, error = %e, "Cannot delete conntrack entries");
                    }
                }
            }
        }
        if let Some(ss) = &self.ss {
            match self.cut_sockets(ss, targets, scope) {
                Ok(counts) => add_counts(&mut killed, counts),
                Err(e) if is_missing(&e) => {
                    if first_time(&SS_MISSING) {
                        tracing::warn!(jail, tool = %ss.display(), "Ss not found: open sockets of banned addresses are not destroyed");
                    }
                }
                Err(e) => {
                    if first_time(&SS_FAILED) {
                        tracing::warn!(jail, error = %e, "Cannot destroy sockets of banned addresses (reported once)");
                    } else {
                        tracing::debug!(jail, error = %e, "Cannot destroy sockets");
                    }
                }
            }
        }
        killed
            .into_iter()
            .map(|(target, killed)| KillReport {
                target,
                scope: scope.kill_scope(),
                killed,
            })
            .collect()
    }

    /// Deletes the conntrack entries of `targets`; counts per target.
    pub fn cut_flows(
        &self,
        conntrack: &Path,
        targets: &[IpNet],
        scope: &CutScope,
    ) -> Result<BTreeMap<IpNet, u64>, CutError> {
        let list = Cmd::new(conntrack)
            .arg("-L")
            .timeout(self.timeout)
            .run_checked(&[0])?;
        let flows = parse_flows(&list.stdout_text());
        let mut counts = BTreeMap::new();
        for args in plan_flow_deletes(&flows, targets, scope) {
            let out = Cmd::new(conntrack)
                .args(&args.argv)
                .timeout(self.timeout)
                .run()?;
            // conntrack exits 1 when nothing matched (the flow ended meanwhile).
            let n = match (out.code, parse_deleted(&out.stderr_text())) {
                (Some(0 | 1), Some(n)) => n,
                _ => {
                    return Err(CutError::Output {
                        cmd: out.cmd.clone(),
                        message: out.stderr_text().trim().to_string(),
                    });
                }
            };
            *counts.entry(args.target).or_insert(0) += n;
        }
        Ok(counts)
    }

    /// Destroys the local sockets connected to `targets`; counts per target.
    pub fn cut_sockets(
        &self,
        ss: &Path,
        targets: &[IpNet],
        scope: &CutScope,
    ) -> Result<BTreeMap<IpNet, u64>, CutError> {
        let kinds = socket_kinds(scope);
        if kinds.is_empty() {
            return Ok(BTreeMap::new());
        }
        if ss_destroy_supported(ss, self.timeout)? == Some(false) {
            if first_time(&SS_UNSUPPORTED) {
                tracing::warn!(tool = %ss.display(), "The kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY is off): open connections of banned addresses stay open until they end by themselves");
            }
            return Ok(BTreeMap::new());
        }
        let mut counts = BTreeMap::new();
        for chunk in targets.chunks(SS_CHUNK) {
            let mut cmd = Cmd::new(ss)
                .args(["-K", "-H", "-n"])
                .args(kinds.iter().copied())
                .timeout(self.timeout);
            cmd = cmd.args(ss_filter(chunk, scope));
            let out = cmd.run_checked(&[0])?;
            for peer in parse_ss_peers(&out.stdout_text()) {
                if let Some(t) = chunk.iter().find(|t| t.contains(&peer)) {
                    *counts.entry(*t).or_insert(0) += 1;
                }
            }
        }
        Ok(counts)
    }
}

fn add_counts(into: &mut BTreeMap<IpNet, u64>, counts: BTreeMap<IpNet, u64>) {
    for (t, n) in counts {
        *into.entry(t).or_insert(0) += n;
    }
}

/// One conntrack entry, original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub proto: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// Parses `conntrack -L` output (`tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=…`).
/// The first `src=`/`dst=`/`sport=`/`dport=` are the original direction.
pub fn parse_flows(text: &str) -> Vec<Flow> {
    let mut flows = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(proto) = words.next() else { continue };
        let (mut src, mut dst, mut sport, mut dport) = (None, None, None, None);
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            match k {
                "src" if src.is_none() => src = v.parse::<IpAddr>().ok(),
                "dst" if dst.is_none() => dst = v.parse::<IpAddr>().ok(),
                "sport" if sport.is_none() => sport = v.parse::<u16>().ok(),
                "dport" if dport.is_none() => dport = v.parse::<u16>().ok(),
                _ => {}
            }
        }
        if let (Some(src), Some(dst)) = (src, dst) {
            flows.push(Flow {
                proto: proto.to_string(),
                src,
                dst,
                sport,
                dport,
            });
        }
    }
    flows
}

/// The count in conntrack's `N flow entries have been deleted.`
pub fn parse_deleted(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let rest = l.trim().strip_suffix("flow entries have been deleted.")?;
        rest.split_whitespace().last()?.parse().ok()
    })
}

/// One `conntrack -D` call and the target it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDelete {
    pub target: IpNet,
    pub argv: Vec<String>,
}

/// The deletions that remove the flows of `targets`: one per address (and port, for port
/// scope) that has flows, naming the exact address so no CIDR support is needed.
pub fn plan_flow_deletes(flows: &[Flow], targets: &[IpNet], scope: &CutScope) -> Vec<FlowDelete> {
    /// A flow's protocol, port flag (`--dport`/`--sport`) and port, for port scope.
    type PortKey<'a> = Option<(String, &'a str, u16)>;
    // (target, direction flag, address, port key)
    let mut keys: BTreeSet<(IpNet, &str, IpAddr, PortKey)> = BTreeSet::new();
    for f in flows {
        if !scope.covers_proto(&f.proto) {
            continue;
        }
        for (flag, addr, port_flag, port) in [
            ("-s", f.src, "--dport", f.dport),
            ("-d", f.dst, "--sport", f.sport),
        ] {
            let Some(t) = targets.iter().find(|t| t.contains(&addr)) else {
                continue;
            };
            match scope {
                CutScope::All => {
                    keys.insert((*t, flag, addr, None));
                }
                CutScope::Ports { .. } => {
                    if let Some(p) = port
                        && scope.covers_port(p)
                    {
                        keys.insert((*t, flag, addr, Some((f.proto.clone(), port_flag, p))));
                    }
                }
            }
        }
    }
    keys.into_iter()
        .map(|(target, flag, addr, port)| {
            let mut argv = vec!["-D".to_string(), flag.to_string(), addr.to_string()];
            if let Some((proto, pflag, p)) = port {
                argv.extend(["-p".to_string(), proto, pflag.to_string(), p.to_string()]);
            }
            FlowDelete { target, argv }
        })
        .collect()
}

/// `-t`/`-u` for the socket kinds a scope covers (ss cannot destroy others).
pub fn socket_kinds(scope: &CutScope) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    if scope.covers_proto("tcp") {
        kinds.push("-t");
    }
    if scope.covers_proto("udp") {
        kinds.push("-u");
    }
    kinds
}

/// The ss filter selecting sockets whose peer is one of `targets` (and, for port scope,
/// whose local port is one of the jail's).
pub fn ss_filter(targets: &[IpNet], scope: &CutScope) -> Vec<String> {
    let mut f: Vec<String> = vec!["(".into()];
    for (i, t) in targets.iter().enumerate() {
        if i > 0 {
            f.push("or".into());
        }
        f.push("dst".into());
        f.push(match t {
            IpNet::V4(n) => format!("{}/{}", n.addr(), n.prefix_len()),
            IpNet::V6(n) => format!("[{}/{}]", n.addr(), n.prefix_len()),
        });
    }
    f.push(")".into());
    if let CutScope::Ports { ports, .. } = scope {
        f.extend(["and".into(), "(".into()]);
        for (i, r) in ports.iter().enumerate() {
            if i > 0 {
                f.push("or".into());
            }
            if r.start == r.end {
                f.extend(["sport".into(), "=".into(), format!(":{}", r.start)]);
            } else {
                f.extend([
                    "(".into(),
                    "sport".into(),
                    ">=".into(),
                    format!(":{}", r.start),
                    "and".into(),
                    "sport".into(),
                    "<=".into(),
                    format!(":{}", r.end),
                    ")".into(),
                ]);
            }
        }
        f.push(")".into());
    }
    f
}

/// The peer addresses of the sockets `ss -H -n` lists (mapped IPv4 turned back to IPv4).
pub fn parse_ss_peers(text: &str) -> Vec<IpAddr> {
    let mut peers = Vec::new();
    for line in text.lines() {
        let socks: Vec<SocketAddr> = line
            .split_whitespace()
            .filter_map(parse_ss_sockaddr)
            .collect();
        if let Some(peer) = socks.get(1) {
            let ip = match peer.ip() {
                IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
                a => a,
            };
            peers.push(ip);
        }
    }
    peers
}

fn parse_ss_sockaddr(word: &str) -> Option<SocketAddr> {
    let (host, port) = word.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // Link-local peers carry their interface (`fe80::1%eth0`).
    let host = host.split('%').next()?;
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Whether this kernel lets `ss -K` destroy sockets, found once (per ss program) by
/// aborting a loopback connection made for the purpose. None when it cannot be told (no
/// loopback).
pub fn ss_destroy_supported(ss: &Path, timeout: Duration) -> Result<Option<bool>, CutError> {
    static SUPPORTED: OnceLock<Mutex<BTreeMap<PathBuf, bool>>> = OnceLock::new();
    let known = SUPPORTED.get_or_init(|| Mutex::new(BTreeMap::new()));
    if let Some(s) = known.lock().unwrap_or_else(|e| e.into_inner()).get(ss) {
        return Ok(Some(*s));
    }
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        return Ok(None);
    };
    let Ok(server) = listener.local_addr() else {
        return Ok(None);
    };
    let Ok(client) = TcpStream::connect_timeout(&server, Duration::from_secs(1)) else {
        return Ok(None);
    };
    let Ok(local) = client.local_addr() else {
        return Ok(None);
    };
    let out = Cmd::new(ss)
        .args(["-K", "-H", "-n", "-t", "dst", "127.0.0.1"])
        .args([
            "and",
            "sport",
            "=",
            &format!(":{}", local.port()),
            "and",
            "dport",
            "=",
            &format!(":{}", server.port()),
        ])
        .timeout(timeout)
        .run_checked(&[0])?;
    let supported = !parse_ss_peers(&out.stdout_text()).is_empty();
    drop(listener);
    known
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(ss.to_path_buf(), supported);
    Ok(Some(supported))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
tcp      6 431999 ESTABLISHED src=10.77.0.2 dst=10.77.0.1 sport=57142 dport=2222 src=10.77.0.1 dst=10.77.0.2 sport=2222 dport=57142 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=fd77::2 dst=fd77::1 sport=59186 dport=80 src=fd77::1 dst=fd77::2 sport=80 dport=59186 [ASSURED] mark=0 use=1
udp      17 29 src=10.77.0.1 dst=10.77.0.2 sport=53 dport=40000 [UNREPLIED] src=10.77.0.2 dst=10.77.0.1 sport=40000 dport=53 mark=0 use=1
icmp     1 29 src=10.77.0.2 dst=10.77.0.1 type=8 code=0 id=7 src=10.77.0.1 dst=10.77.0.2 type=0 code=0 id=7 mark=0 use=1
";

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_flows() {
        let f = parse_flows(LIST);
        assert_eq!(f.len(), 4);
        assert_eq!(
            f[0],
            Flow {
                proto: "tcp".into(),
                src: "10.77.0.2".parse().unwrap(),
                dst: "10.77.0.1".parse().unwrap(),
                sport: Some(57142),
                dport: Some(2222)
            }
        );
        assert_eq!(f[3].dport, None);
    }

    #[test]
    fn plans_deletes_by_scope() {
        let flows = parse_flows(LIST);
        let argv = |d: Vec<FlowDelete>| d.into_iter().map(|d| d.argv.join(" ")).collect::<Vec<_>>();
        let all = plan_flow_deletes(
            &flows,
            &[n("10.77.0.2/32"), n("fd77::2/128")],
            &CutScope::All,
        );
        assert_eq!(
            argv(all),
            vec!["-D -d 10.77.0.2", "-D -s 10.77.0.2", "-D -s fd77::2"]
        );
        let ports = CutScope::Ports {
            ports: vec![PortRange::single(2222), PortRange::single(53)],
            protocols: vec!["tcp".into()],
        };
        assert_eq!(
            argv(plan_flow_deletes(
                &flows,
                &[n("10.77.0.2/32"), n("fd77::2/128")],
                &ports
            )),
            vec!["-D -s 10.77.0.2 -p tcp --dport 2222"]
        );
        let any_proto = CutScope::Ports {
            ports: vec![PortRange::single(53)],
            protocols: vec![],
        };
        assert_eq!(
            argv(plan_flow_deletes(&flows, &[n("10.77.0.2/32")], &any_proto)),
            vec!["-D -d 10.77.0.2 -p udp --sport 53"]
        );
        assert!(plan_flow_deletes(&flows, &[n("192.0.2.1/32")], &CutScope::All).is_empty());
    }

    #[test]
    fn parses_deleted_counts() {
        assert_eq!(
            parse_deleted(
                "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n"
            ),
            Some(2)
        );
        assert_eq!(
            parse_deleted(
                "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"
            ),
            Some(0)
        );
        assert_eq!(
            parse_deleted("conntrack v1.4.7 (conntrack-tools): Operation not permitted\n"),
            None
        );
    }

    #[test]
    fn builds_ss_filters() {
        let f = ss_filter(&[n("10.0.0.1/32"), n("fd00::/64")], &CutScope::All).join(" ");
        assert_eq!(f, "( dst 10.0.0.1/32 or dst [fd00::/64] )");
        let f = ss_filter(
            &[n("10.0.0.1/32")],
            &CutScope::Ports {
                ports: vec![
                    PortRange::single(22),
                    PortRange {
                        start: 6000,
                        end: 6010,
                    },
                ],
                protocols: vec!["tcp".into()],
            },
        )
        .join(" ");
        assert_eq!(
            f,
            "( dst 10.0.0.1/32 ) and ( sport = :22 or ( sport >= :6000 and sport <= :6010 ) )"
        );
        assert_eq!(socket_kinds(&CutScope::All), vec!["-t", "-u"]);
        assert!(
            socket_kinds(&CutScope::Ports {
                ports: vec![],
                protocols: vec!["sctp".into()]
            })
            .is_empty()
        );
    }

    #[test]
    fn parses_ss_output() {
        let text = "\
ESTAB 0      0      [::ffff:10.77.0.1]:2222 [::ffff:10.77.0.2]:58660
ESTAB 0      0      [fd77::1]:2222 [fd77::2]:37198
tcp   ESTAB 0      0      10.0.0.1:22 10.0.0.9:40000 users:((\"sshd\",pid=1,fd=3))
udp   UNCONN 0 0 [fe80::1%eth0]:546 [fe80::2%eth0]:547
";
        let peers: Vec<String> = parse_ss_peers(text).iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, vec!["10.77.0.2", "fd77::2", "10.0.0.9", "fe80::2"]);
    }
}
