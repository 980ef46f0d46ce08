//! The `log` backend: touches no firewall and records what it would do.
//!
//! Used for dry runs, on hosts where no firewall tool is usable, and by tests, which read
//! the record file (`logfile` parameter): one JSON object per call with the operation, the
//! jail and the targets.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;
use tracing::info;

use super::{Action, Ban, FirewallError, JailSpec, KillReport, KillScope};

/// One recorded call.
#[derive(Debug, Serialize)]
struct Record<'a> {
    time: i64,
    jail: &'a str,
    op: &'a str,
    targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bantime: Option<Vec<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<KillScope>,
}

/// Records bans instead of applying them.
pub struct LogAction {
    jail: String,
    file: Option<PathBuf>,
    kill: KillScope,
    ports: super::PortSpec,
    held: BTreeSet<IpNet>,
}

impl LogAction {
    pub fn new(spec: &JailSpec) -> LogAction {
        LogAction {
            jail: spec.jail.clone(),
            file: spec
                .params
                .get("logfile")
                .filter(|s| !s.trim().is_empty())
                .map(PathBuf::from),
            kill: spec.kill_states,
            ports: spec.ports.clone(),
            held: BTreeSet::new(),
        }
    }

    fn record(
        &self,
        op: &str,
        targets: &[IpNet],
        bantime: Option<Vec<i64>>,
        scope: Option<KillScope>,
    ) -> Result<(), FirewallError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let rec = Record {
            time: crate::now_epoch(),
            jail: &self.jail,
            op,
            targets: targets.iter().map(super::shell::target_text).collect(),
            bantime,
            scope,
        };
        let mut line = serde_json::to_string(&rec).expect("record serialises");
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| FirewallError::Config(format!("{}: {e}", path.display())))?;
        f.write_all(line.as_bytes())
            .map_err(|e| FirewallError::Config(format!("{}: {e}", path.display())))
    }
}

impl Action for LogAction {
    fn describe(&self) -> String {
        match &self.file {
            Some(f) => format!("log backend (recording to {})", f.display()),
            None => "log backend".to_string(),
        }
    }

    fn start(&mut self, active: &[Ban]) -> Result<(), FirewallError> {
        self.held = active.iter().map(|b| b.target).collect();
        let targets: Vec<IpNet> = self.held.iter().copied().collect();
        info!(jail = %self.jail, restored = targets.len(), "Log backend started; no firewall is touched.");
        self.record("start", &targets, None, None)
    }

    fn ban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        let targets: Vec<IpNet> = bans.iter().map(|b| b.target).collect();
        for b in bans {
            info!(jail = %self.jail, target = %b.target, bantime = b.bantime, "Would ban.");
        }
        self.held.extend(targets.iter().copied());
        self.record(
            "ban",
            &targets,
            Some(bans.iter().map(|b| b.bantime).collect()),
            None,
        )
    }

    fn kill_states(&mut self, bans: &[Ban]) -> Result<Vec<KillReport>, FirewallError> {
        let scope = self.kill.resolve(&self.ports);
        if scope == KillScope::None || bans.is_empty() {
            return Ok(Vec::new());
        }
        let targets: Vec<IpNet> = bans.iter().map(|b| b.target).collect();
        self.record("kill", &targets, None, Some(scope))?;
        Ok(targets
            .into_iter()
            .map(|target| KillReport {
                target,
                scope,
                killed: 0,
            })
            .collect())
    }

    fn unban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        let targets: Vec<IpNet> = bans.iter().map(|b| b.target).collect();
        for t in &targets {
            info!(jail = %self.jail, target = %t, "Would unban.");
            self.held.remove(t);
        }
        self.record("unban", &targets, None, None)
    }

    fn list(&mut self) -> Result<Option<Vec<IpNet>>, FirewallError> {
        Ok(Some(self.held.iter().copied().collect()))
    }

    fn stop(&mut self) -> Result<(), FirewallError> {
        let targets: Vec<IpNet> = std::mem::take(&mut self.held).into_iter().collect();
        self.record("stop", &targets, None, None)
    }

    fn entry_key(&self, target: &IpNet) -> String {
        format!("log:{}:{target}", self.jail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::PortSpec;

    #[test]
    fn records_every_call_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fw.jsonl");
        let spec = JailSpec {
            jail: "sshd".into(),
            ports: PortSpec::parse("ssh").unwrap(),
            protocols: vec!["tcp".into()],
            kill_states: KillScope::Auto,
            params: [("logfile".to_string(), file.display().to_string())].into(),
        };
        let mut a = LogAction::new(&spec);
        let ban = Ban {
            jail: "sshd".into(),
            target: "192.0.2.7/32".parse().unwrap(),
            start: 0,
            expires: Some(600),
            bantime: 600,
            failures: 5,
            bancount: 1,
            matches: vec![],
            fields: Default::default(),
            restored: false,
        };
        a.start(&[]).unwrap();
        a.ban(std::slice::from_ref(&ban)).unwrap();
        let kills = a.kill_states(std::slice::from_ref(&ban)).unwrap();
        assert_eq!(kills[0].scope, KillScope::Ports);
        assert_eq!(a.list().unwrap().unwrap().len(), 1);
        a.unban(std::slice::from_ref(&ban)).unwrap();
        assert_eq!(a.list().unwrap().unwrap().len(), 0);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ops: Vec<&str> = lines.iter().map(|l| l["op"].as_str().unwrap()).collect();
        assert_eq!(ops, ["start", "ban", "kill", "unban"]);
        assert_eq!(lines[1]["targets"][0], "192.0.2.7");
        assert_eq!(lines[2]["scope"], "ports");
    }
}
