//! fail2ban-compatible shell actions from `action.d`, run as fail2ban runs them.
//!
//! Commands (`actionstart`, `actionstop`, `actioncheck`, `actionban`, `actionunban`,
//! `actionflush`, `actionrepair`) are rendered with [`super::tags`] and run with `/bin/sh -c`
//! under the action's `timeout`. Untrusted values reach the shell only as positional
//! parameters. When a command fails and the action has an `actioncheck`, the check runs; if
//! the environment is broken it is repaired (`actionrepair`, or stop and start) and the
//! command is tried once more. Actions with `?family=` keys start on demand per family.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use tracing::{debug, warn};

use super::tags::{render_dynamic, render_static};
use super::{Action, Ban, FirewallError, JailSpec};
use crate::exec::Cmd;

const STARTED: u8 = 1;
const HAS_ITEMS: u8 = 2;

/// A shell action of one jail.
pub struct ShellAction {
    jail: String,
    actname: String,
    props: BTreeMap<String, String>,
    shell: PathBuf,
    timeout: Duration,
    on_demand: bool,
    norestored: bool,
    families: Vec<&'static str>,
    started: HashMap<&'static str, u8>,
    held: BTreeMap<IpNet, Ban>,
}

fn family_of(target: &IpNet) -> &'static str {
    match target {
        IpNet::V4(_) => "inet4",
        IpNet::V6(_) => "inet6",
    }
}

fn truthy(v: Option<&String>) -> Option<bool> {
    v.map(|s| {
        matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "1" | "yes" | "true" | "on"
        )
    })
}

/// `<ip-rev>`: the reverse-lookup name prefix, with its trailing dot.
fn ip_rev(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(64);
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s
        }
    }
}

/// The text of `<ip>`: a host without its prefix length, a network with it.
pub fn target_text(t: &IpNet) -> String {
    if t.prefix_len() == t.max_prefix_len() {
        t.addr().to_string()
    } else {
        t.to_string()
    }
}

impl ShellAction {
    /// Builds the action from its resolved parameters. `actname` is the action's name in
    /// the jail.
    pub fn new(spec: &JailSpec, actname: &str) -> Result<ShellAction, FirewallError> {
        let mut props = spec.params.clone();
        props
            .entry("name".to_string())
            .or_insert_with(|| spec.jail.clone());
        props
            .entry("actname".to_string())
            .or_insert_with(|| actname.to_string());
        if !props.contains_key("actionban") {
            return Err(FirewallError::Config(format!(
                "action {actname} of jail {} has no actionban",
                spec.jail
            )));
        }
        let timeout = match props.get("timeout") {
            Some(t) => crate::config::parse_duration(t)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| {
                    FirewallError::Config(format!("action {actname}: bad timeout {t:?}"))
                })? as u64,
            None => 60,
        };
        let has_cond = props.keys().any(|k| k.contains("?family="));
        let on_demand = truthy(props.get("actionstart_on_demand")).unwrap_or(has_cond);
        let families = if has_cond {
            vec!["inet4", "inet6"]
        } else {
            vec![""]
        };
        // Validate the static layer once so configuration mistakes show at start.
        for fam in &families {
            for op in ["actionstart", "actionstop", "actionban", "actionunban"] {
                render_static(
                    &format!("<{op}>"),
                    &props,
                    Some(*fam).filter(|f| !f.is_empty()),
                )
                .map_err(|e| FirewallError::Config(format!("action {actname}, {op}: {e}")))?;
            }
        }
        Ok(ShellAction {
            jail: spec.jail.clone(),
            actname: actname.to_string(),
            norestored: truthy(props.get("norestored")).unwrap_or(false),
            props,
            shell: PathBuf::from("/bin/sh"),
            timeout: Duration::from_secs(timeout),
            on_demand,
            families,
            started: HashMap::new(),
            held: BTreeMap::new(),
        })
    }

    fn fam_key(&self, target: &IpNet) -> &'static str {
        if self.families == [""] {
            ""
        } else {
            family_of(target)
        }
    }

    fn values(&self, ban: &Ban) -> BTreeMap<String, String> {
        let ip = target_text(&ban.target);
        let matches = ban.matches.join("\n");
        let mut v = BTreeMap::new();
        v.insert("ip".into(), ip.clone());
        v.insert("fid".into(), ip.clone());
        v.insert("ip-host".into(), ip);
        v.insert("ip-rev".into(), ip_rev(ban.target.addr()));
        v.insert("family".into(), family_of(&ban.target).into());
        v.insert("failures".into(), ban.failures.to_string());
        v.insert("ipfailures".into(), ban.failures.to_string());
        v.insert("ipjailfailures".into(), ban.failures.to_string());
        v.insert("time".into(), ban.start.to_string());
        v.insert("bantime".into(), ban.bantime.to_string());
        v.insert("bancount".into(), ban.bancount.to_string());
        v.insert("restored".into(), u8::from(ban.restored).to_string());
        v.insert("matches".into(), matches.clone());
        v.insert("ipmatches".into(), matches.clone());
        v.insert("ipjailmatches".into(), matches);
        v
    }

    /// Renders and runs one operation. Returns Ok(false) when the action has no such
    /// command.
    fn exec_op(&self, op: &str, family: &str, ban: Option<&Ban>) -> Result<bool, FirewallError> {
        let fam = Some(family).filter(|f| !f.is_empty());
        let rendered = render_static(&format!("<{op}>"), &self.props, fam)
            .map_err(|e| FirewallError::Config(format!("action {}, {op}: {e}", self.actname)))?;
        if rendered.trim().is_empty() || rendered == format!("<{op}>") {
            return Ok(false);
        }
        let empty = BTreeMap::new();
        let (values, fields) = match ban {
            Some(b) => (self.values(b), &b.fields),
            None => (BTreeMap::new(), &empty),
        };
        let script = render_dynamic(&rendered, &values, fields);
        let cmd = Cmd::new(&self.shell)
            .args(script.argv())
            .timeout(self.timeout);
        debug!(jail = %self.jail, action = %self.actname, op, "Running action command.");
        cmd.run_checked(&[0])?;
        Ok(true)
    }

    fn start_family(&mut self, family: &'static str) -> Result<(), FirewallError> {
        self.exec_op("actionstart", family, None)?;
        *self.started.entry(family).or_insert(0) |= STARTED;
        Ok(())
    }

    fn stop_family(&mut self, family: &'static str) -> Result<(), FirewallError> {
        self.started.remove(family);
        self.exec_op("actionstop", family, None).map(|_| ())
    }

    /// Runs `op`; on failure checks the environment, repairs it and tries once more, as
    /// fail2ban does.
    fn process(&mut self, op: &str, family: &'static str, ban: &Ban) -> Result<(), FirewallError> {
        let first = match self.exec_op(op, family, Some(ban)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if self.exec_op("actioncheck", family, None).is_ok() {
            // The environment is sane (or there is no check): the failure stands.
            return Err(first);
        }
        if op == "actionunban" && !truthy(self.props.get("actionrepair_on_unban")).unwrap_or(false)
        {
            return Err(first);
        }
        warn!(jail = %self.jail, action = %self.actname, error = %first,
              "Invariant check failed; restoring the action's environment.");
        let repaired = match self.exec_op("actionrepair", family, None) {
            Ok(true) => true,
            Ok(false) => {
                let _ = self.stop_family(family);
                self.start_family(family).is_ok()
            }
            Err(_) => false,
        };
        if !repaired {
            self.started.remove(family);
            return Err(first);
        }
        self.exec_op(op, family, Some(ban)).map(|_| ())
    }
}

impl Action for ShellAction {
    fn describe(&self) -> String {
        format!("shell action {}", self.actname)
    }

    fn start(&mut self, active: &[Ban]) -> Result<(), FirewallError> {
        if !self.on_demand {
            for fam in self.families.clone() {
                self.start_family(fam)?;
            }
        }
        let restore: Vec<Ban> = active
            .iter()
            .filter(|b| !(self.norestored && b.restored))
            .cloned()
            .collect();
        self.ban(&restore)
    }

    fn ban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        let mut failed = Vec::new();
        let mut first = None;
        for ban in bans {
            let fam = self.fam_key(&ban.target);
            if self.on_demand
                && self.started.get(fam).copied().unwrap_or(0) & STARTED == 0
                && let Err(e) = self.start_family(fam)
            {
                failed.push(ban.target);
                first.get_or_insert(e);
                continue;
            }
            match self.process("actionban", fam, ban) {
                Ok(()) => {
                    *self.started.entry(fam).or_insert(0) |= STARTED | HAS_ITEMS;
                    self.held.insert(ban.target, ban.clone());
                }
                Err(e) => {
                    failed.push(ban.target);
                    first.get_or_insert(e);
                }
            }
        }
        finish(bans.len(), failed, first)
    }

    fn unban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        let mut failed = Vec::new();
        let mut first = None;
        for ban in bans {
            let fam = self.fam_key(&ban.target);
            if self.started.get(fam).copied().unwrap_or(0) & HAS_ITEMS == 0 {
                continue;
            }
            match self.process("actionunban", fam, ban) {
                Ok(()) => {
                    self.held.remove(&ban.target);
                }
                Err(e) => {
                    failed.push(ban.target);
                    first.get_or_insert(e);
                }
            }
        }
        finish(bans.len(), failed, first)
    }

    fn stop(&mut self) -> Result<(), FirewallError> {
        let mut first = None;
        let families: Vec<&'static str> = self.started.keys().copied().collect();
        for fam in &families {
            let flags = self.started.get(fam).copied().unwrap_or(0);
            if flags & HAS_ITEMS == 0 {
                continue;
            }
            match self.exec_op("actionflush", fam, None) {
                Ok(true) => {}
                Ok(false) => {
                    let held: Vec<Ban> = self
                        .held
                        .values()
                        .filter(|b| self.fam_key(&b.target) == *fam)
                        .cloned()
                        .collect();
                    for b in &held {
                        if let Err(e) = self.exec_op("actionunban", fam, Some(b)) {
                            first.get_or_insert(e);
                        }
                    }
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        self.held.clear();
        for fam in families {
            if let Err(e) = self.stop_family(fam) {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn entry_key(&self, target: &IpNet) -> String {
        let fam = Some(self.fam_key(target)).filter(|f| !f.is_empty());
        let rendered = render_static("<actionunban>", &self.props, fam).unwrap_or_default();
        let mut values = BTreeMap::new();
        values.insert("ip".to_string(), target_text(target));
        values.insert("fid".to_string(), target_text(target));
        values.insert("family".to_string(), family_of(target).to_string());
        let script = render_dynamic(&rendered, &values, &BTreeMap::new());
        format!("shell:{}", script.script)
    }
}

fn finish(
    total: usize,
    failed: Vec<IpNet>,
    first: Option<FirewallError>,
) -> Result<(), FirewallError> {
    match first {
        None => Ok(()),
        Some(e) if failed.len() == total && total == 1 => Err(e),
        Some(e) => Err(FirewallError::Partial {
            failed,
            first: Box::new(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{KillScope, PortSpec};

    fn spec(dir: &std::path::Path, extra: &[(&str, &str)]) -> JailSpec {
        let log = dir.join("calls");
        let mut params: BTreeMap<String, String> = [
            ("actionstart", "echo start <name> >> <log>"),
            ("actionstop", "echo stop <name> >> <log>"),
            (
                "actionban",
                "echo ban <ip> <family> <bantime> \"<F-USER>\" >> <log>",
            ),
            ("actionunban", "echo unban <ip> >> <log>"),
            ("log", log.to_str().unwrap()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            params.insert(k.to_string(), v.to_string());
        }
        JailSpec {
            jail: "sshd".into(),
            ports: PortSpec::All,
            protocols: vec!["tcp".into()],
            kill_states: KillScope::None,
            params,
        }
    }

    fn ban(ip: &str) -> Ban {
        Ban {
            jail: "sshd".into(),
            target: ip.parse::<IpAddr>().map(IpNet::from).unwrap(),
            start: 1_700_000_000,
            expires: Some(1_700_000_600),
            bantime: 600,
            failures: 5,
            bancount: 1,
            matches: vec!["line one".into(), "line `two`".into()],
            fields: [("user".to_string(), "r00t $(id)".to_string())].into(),
            restored: false,
        }
    }

    fn calls(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn start_ban_unban_stop_run_the_commands() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ShellAction::new(&spec(dir.path(), &[]), "test").unwrap();
        a.start(&[]).unwrap();
        a.ban(&[ban("192.0.2.7"), ban("2001:db8::1")]).unwrap();
        a.unban(&[ban("192.0.2.7")]).unwrap();
        a.stop().unwrap();
        assert_eq!(
            calls(dir.path()),
            vec![
                "start sshd",
                "ban 192.0.2.7 inet4 600 r00t $(id)",
                "ban 2001:db8::1 inet6 600 r00t $(id)",
                "unban 192.0.2.7",
                // No actionflush: the remaining ban is lifted one by one, then stop.
                "unban 2001:db8::1",
                "stop sshd",
            ]
        );
    }

    #[test]
    fn family_conditional_actions_start_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ShellAction::new(
            &spec(
                dir.path(),
                &[
                    ("actionstart?family=inet6", "echo start6 <name> >> <log>"),
                    ("actionban?family=inet6", "echo ban6 <ip> >> <log>"),
                ],
            ),
            "test",
        )
        .unwrap();
        a.start(&[]).unwrap();
        assert!(calls(dir.path()).is_empty(), "nothing starts before a ban");
        a.ban(&[ban("2001:db8::5")]).unwrap();
        a.ban(&[ban("192.0.2.9")]).unwrap();
        assert_eq!(
            calls(dir.path()),
            vec![
                "start6 sshd",
                "ban6 2001:db8::5",
                "start sshd",
                "ban 192.0.2.9 inet4 600 r00t $(id)"
            ]
        );
    }

    #[test]
    fn failed_ban_runs_check_and_repair_then_retries() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("broken");
        std::fs::write(&flag, "").unwrap();
        let f = flag.to_str().unwrap();
        let mut a = ShellAction::new(
            &spec(
                dir.path(),
                &[
                    (
                        "actionban",
                        &format!("test ! -e {f} && echo ban <ip> >> <log>"),
                    ),
                    ("actioncheck", &format!("test ! -e {f}")),
                    ("actionrepair", &format!("rm {f} && echo repaired >> <log>")),
                ],
            ),
            "test",
        )
        .unwrap();
        a.ban(&[ban("192.0.2.7")]).unwrap();
        assert_eq!(calls(dir.path()), vec!["repaired", "ban 192.0.2.7"]);
    }

    #[test]
    fn partial_failure_names_the_failed_targets() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ShellAction::new(
            &spec(
                dir.path(),
                &[(
                    "actionban",
                    "case <ip> in 192.0.2.8) exit 3;; esac; echo ban <ip> >> <log>",
                )],
            ),
            "test",
        )
        .unwrap();
        let err = a
            .ban(&[ban("192.0.2.7"), ban("192.0.2.8"), ban("192.0.2.9")])
            .unwrap_err();
        match err {
            FirewallError::Partial { failed, .. } => {
                assert_eq!(failed, vec!["192.0.2.8/32".parse::<IpNet>().unwrap()])
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(calls(dir.path()), vec!["ban 192.0.2.7", "ban 192.0.2.9"]);
    }

    #[test]
    fn timeout_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ShellAction::new(
            &spec(dir.path(), &[("actionban", "sleep 5"), ("timeout", "1")]),
            "test",
        )
        .unwrap();
        let err = a.ban(&[ban("192.0.2.7")]).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[test]
    fn entry_keys_tell_shared_entries_apart() {
        let dir = tempfile::tempdir().unwrap();
        let per_jail = ShellAction::new(&spec(dir.path(), &[]), "a").unwrap();
        let mut other = spec(dir.path(), &[]);
        other.jail = "nginx".into();
        other
            .params
            .insert("actionunban".into(), "echo unban <ip> from <name>".into());
        let other = ShellAction::new(&other, "a").unwrap();
        let t: IpNet = "192.0.2.7/32".parse().unwrap();
        // Same unban command → one shared entry; a jail-specific one → separate entries.
        let mut shared = spec(dir.path(), &[]);
        shared.jail = "nginx".into();
        let shared = ShellAction::new(&shared, "a").unwrap();
        assert_eq!(per_jail.entry_key(&t), shared.entry_key(&t));
        assert_ne!(per_jail.entry_key(&t), other.entry_key(&t));
    }

    #[test]
    fn ip_rev_forms() {
        assert_eq!(ip_rev("192.0.2.7".parse().unwrap()), "7.2.0.192.");
        assert!(ip_rev("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0."));
        assert!(ip_rev("2001:db8::1".parse().unwrap()).ends_with("8.b.d.0.1.0.0.2."));
    }
}
