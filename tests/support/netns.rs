//! Network namespaces for tests that touch the kernel's firewall and connections.
//!
//! - [`Netns`]: a namespace with a unique name (`ip netns add`), deleted on drop, even when
//!   the test panics. Code runs inside it on a thread that entered it with `setns` (sockets
//!   made there stay in the namespace; processes spawned from that thread start in it), or
//!   as a command under `ip netns exec`.
//! - [`Lan`]: hosts joined by a bridge in a hub namespace. IPv4 hosts share 10.203.0.0/24;
//!   each IPv6 host has its own /64 inside fd00:203::/48, which is on-link for all, so a
//!   ban of one host's /64 leaves the others reachable. These ranges exist only inside the
//!   namespaces.
//! - [`Service`]: a small line-oriented TCP service that writes a fail2ban-style failure
//!   line (`Failed password for USER from ADDR port P ssh2`) per bad login to a log, and
//!   records when each connection ends and how.
//! - [`Client`]: a connection opened from a namespace, with a liveness check.
//!
//! Everything needs root, `ip` (iproute2) and a kernel with network namespaces.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Fails the test early with a clear message when it cannot create namespaces.
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test creates network namespaces and must run as root");
    }
}

/// Runs a command and returns its output, panicking with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out
}

/// A network namespace owned by the test.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `wdn<pid>-<n>-<role>` with its loopback up.
    pub fn new(role: &str) -> Netns {
        require_root();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let role: String = role
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let name = format!("wdn{}-{n}-{role}", std::process::id());
        // A namespace left behind by an earlier process with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, for `setns`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    fn enter(&self) {
        let f =
            File::open(self.path()).unwrap_or_else(|e| panic!("{}: {e}", self.path().display()));
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
    }

    /// Runs `f` on a thread inside the namespace and returns its result (a panic in `f`
    /// is resumed here).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                self.enter();
                f()
            });
            match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// Starts `f` on a thread inside the namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> JoinHandle<R> {
        let path = self.path();
        let name = self.name.clone();
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into {name}: {e}"));
            f()
        })
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `ip -n NS ARGS…`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run_ok(Command::new("ip").args(["-n", &self.name]).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a program inside the namespace and returns its stdout, panicking on failure.
    pub fn sh(&self, program: &str, args: &[&str]) -> String {
        let out = run_ok(self.command(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies an nft script inside the namespace.
    pub fn nft(&self, script: &str) {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f - failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `nft -j ARGS…` inside the namespace, parsed.
    pub fn nft_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = self.sh("nft", &all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("nft -j {args:?}: {e}: {text}"))
    }

    /// conntrack flows in the namespace whose original source is `addr`.
    pub fn flows_from(&self, addr: &str) -> usize {
        let out = self.command("conntrack").args(["-L"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("src={addr} ")))
            .count()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// One host on a [`Lan`].
#[derive(Debug)]
pub struct Host {
    pub role: String,
    pub ns: Netns,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Host {
    /// The host's IPv6 /64.
    pub fn v6_net(&self) -> String {
        let s = self.v6.segments();
        format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
    }
}

/// Hosts on one bridge. Dropping it removes every namespace.
#[derive(Debug)]
pub struct Lan {
    pub hosts: Vec<Host>,
    hub: Netns,
}

impl Lan {
    /// One host per role, numbered in order: the first is 10.203.0.1 and
    /// fd00:203:0:1::1, the second 10.203.0.2 and fd00:203:0:2::2, and so on.
    pub fn new(roles: &[&str]) -> Lan {
        let hub = Netns::new("hub");
        hub.ip(&["link", "add", "br0", "type", "bridge"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let n = u8::try_from(i + 1).expect("fewer than 255 hosts");
            let ns = Netns::new(role);
            let port = format!("p{n}");
            hub.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ]);
            hub.ip(&["link", "set", &port, "master", "br0", "up"]);
            let v4 = Ipv4Addr::new(10, 203, 0, n);
            let v6 = Ipv6Addr::new(0xfd00, 0x203, 0, u16::from(n), 0, 0, 0, u16::from(n));
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            ns.ip(&["-6", "route", "add", "fd00:203::/48", "dev", "eth0"]);
            hosts.push(Host {
                role: role.to_string(),
                ns,
                v4,
                v6,
            });
        }
        Lan { hosts, hub }
    }

    pub fn host(&self, role: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.role == role)
            .unwrap_or_else(|| panic!("no host {role}"))
    }

    pub fn hub(&self) -> &Netns {
        &self.hub
    }
}

/// How a connection ended, as the service saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed it (or `QUIT`).
    Eof,
    /// A read failed (ECONNABORTED when the socket was destroyed, ECONNRESET on a reset).
    Error(io::ErrorKind),
}

#[derive(Debug, Default)]
struct ServiceState {
    /// Peers seen, with their ending once known.
    conns: Vec<(SocketAddr, Option<Ended>)>,
    failures: usize,
    lines: Vec<(SocketAddr, String)>,
}

struct Shared {
    state: Mutex<ServiceState>,
    changed: Condvar,
    streams: Mutex<Vec<TcpStream>>,
    log: Option<Mutex<File>>,
    password: String,
}

/// The password [`Service`] accepts; any other gets a failure line.
pub const GOOD_PASSWORD: &str = "open-sesame";

/// A TCP service inside a namespace. Protocol, one line each way:
/// `PING` → `PONG`; `LOGIN USER PASSWORD` → `OK` or `DENIED` (and a failure line in the
/// log); `QUIT` closes; anything else → `ECHO <line>`.
pub struct Service {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Service {
    /// Listens on every address of the namespace (IPv4 and IPv6) at `port`; failure lines
    /// go to `log` when given.
    pub fn spawn(ns: &Netns, port: u16, log: Option<&Path>) -> Service {
        let log = log.map(|p| {
            Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            )
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(ServiceState::default()),
            changed: Condvar::new(),
            streams: Mutex::new(Vec::new()),
            log,
            password: GOOD_PASSWORD.to_string(),
        });
        let listener = ns.run(|| {
            TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
                .unwrap_or_else(|e| panic!("bind [::]:{port}: {e}"))
        });
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            stream.set_nonblocking(false).unwrap();
                            let peer = unmap(peer);
                            if let Ok(c) = stream.try_clone() {
                                shared.streams.lock().unwrap().push(c);
                            }
                            shared.state.lock().unwrap().conns.push((peer, None));
                            shared.changed.notify_all();
                            let shared = shared.clone();
                            std::thread::spawn(move || serve(stream, peer, &shared));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Service {
            port,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until a connection from `peer` has been accepted.
    pub fn wait_accepted(&self, peer: SocketAddr, timeout: Duration) -> bool {
        self.wait(timeout, |s| s.conns.iter().any(|(p, _)| *p == peer))
    }

    /// Waits until the connection from `peer` ends; how it ended, or None on timeout.
    pub fn wait_ended(&self, peer: SocketAddr, timeout: Duration) -> Option<Ended> {
        let mut found = None;
        self.wait(timeout, |s| {
            found = s
                .conns
                .iter()
                .find(|(p, e)| *p == peer && e.is_some())
                .and_then(|(_, e)| e.clone());
            found.is_some()
        });
        found
    }

    /// Whether the service still holds the connection from `peer` open.
    pub fn is_open(&self, peer: SocketAddr) -> bool {
        let s = self.shared.state.lock().unwrap();
        s.conns.iter().any(|(p, e)| *p == peer && e.is_none())
    }

    /// Bad logins so far (each wrote one failure line).
    pub fn failures(&self) -> usize {
        self.shared.state.lock().unwrap().failures
    }

    /// Lines received from `peer`.
    pub fn lines_from(&self, peer: SocketAddr) -> Vec<String> {
        let s = self.shared.state.lock().unwrap();
        s.lines
            .iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn wait(&self, timeout: Duration, mut done: impl FnMut(&ServiceState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.state.lock().unwrap();
        loop {
            if done(&s) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap()
                .0;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.shared.streams.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        _ => a,
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let ended = loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break Ended::Eof,
            Ok(_) => {}
            Err(e) => break Ended::Error(e.kind()),
        }
        let line = line.trim_end().to_string();
        shared
            .state
            .lock()
            .unwrap()
            .lines
            .push((peer, line.clone()));
        shared.changed.notify_all();
        let mut words = line.split_whitespace();
        let reply = match words.next() {
            Some("PING") => "PONG".to_string(),
            Some("QUIT") => break Ended::Eof,
            Some("LOGIN") => {
                let user = words.next().unwrap_or("");
                let pass = words.next().unwrap_or("");
                if pass == shared.password {
                    "OK".to_string()
                } else {
                    if let Some(log) = &shared.log {
                        let ts = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
                        let mut f = log.lock().unwrap();
                        let _ = writeln!(
                            f,
                            "{ts} testhost sshd[{}]: Failed password for {user} from {} port {} ssh2",
                            std::process::id(),
                            peer.ip(),
                            peer.port()
                        );
                        let _ = f.flush();
                    }
                    shared.state.lock().unwrap().failures += 1;
                    "DENIED".to_string()
                }
            }
            _ => format!("ECHO {line}"),
        };
        if writeln!(out, "{reply}").is_err() {
            // The write error shows again on the next read.
            continue;
        }
    };
    let _ = out.shutdown(Shutdown::Both);
    let mut s = shared.state.lock().unwrap();
    if let Some(c) = s.conns.iter_mut().find(|(p, e)| *p == peer && e.is_none()) {
        c.1 = Some(ended);
    }
    drop(s);
    shared.changed.notify_all();
}

/// A connection to a [`Service`], opened from inside a namespace.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects from `ns` to `to`, giving up after `timeout`.
    pub fn connect(ns: &Netns, to: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = ns.run(|| TcpStream::connect_timeout(&to, timeout))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client { stream, reader })
    }

    /// This end's address, as the service sees the peer.
    pub fn local_addr(&self) -> SocketAddr {
        unmap(self.stream.local_addr().expect("connected socket"))
    }

    /// Sends one line and reads the reply line.
    pub fn request(&mut self, line: &str, timeout: Duration) -> io::Result<String> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.write_all(format!("{line}\n").as_bytes())?;
        let mut reply = String::new();
        let n = self.reader.read_line(&mut reply)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(reply.trim_end().to_string())
    }

    /// Sends a line without waiting for a reply.
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        self.stream.write_all(format!("{line}\n").as_bytes())
    }

    /// Whether the connection still carries a request and its reply within `timeout`.
    pub fn alive(&mut self, timeout: Duration) -> bool {
        matches!(self.request("PING", timeout).as_deref(), Ok("PONG"))
    }

    /// Tries a login; Ok(true) when accepted.
    pub fn login(&mut self, user: &str, password: &str, timeout: Duration) -> io::Result<bool> {
        Ok(self.request(&format!("LOGIN {user} {password}"), timeout)? == "OK")
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
