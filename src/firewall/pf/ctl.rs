//! Running pfctl: argument vectors, addresses on stdin, the action's timeout, and the
//! reading of what pfctl prints (table counts, kill counts, error classes).

use std::path::PathBuf;
use std::time::Duration;

use tracing::debug;

use crate::exec::Cmd;
use crate::firewall::FirewallError;

/// The pfctl program of one action.
#[derive(Debug, Clone)]
pub struct Pfctl {
    pub program: PathBuf,
    pub timeout: Duration,
}

/// What one pfctl call printed.
#[derive(Debug, Clone)]
pub struct Reply {
    pub cmd: String,
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Kernel ESRCH/ENOENT on a table command (exit 255): the table or the anchor is
    /// gone. FreeBSD ends the messages with a period, OpenBSD does not.
    pub fn table_missing(&self) -> bool {
        self.code == Some(255)
            && (self.stderr.contains("Table does not exist")
                || self.stderr.contains("Anchor or Ruleset does not exist")
                || self.stderr.contains("Anchor does not exist"))
    }

    /// The anchor did not exist for a command that needs it (`-F`, `-s Tables`).
    pub fn anchor_missing(&self) -> bool {
        self.stderr.contains("Anchor or Ruleset does not exist")
            || self.stderr.contains("Anchor does not exist")
            || self.stderr.contains("not found.")
    }

    /// The failure as an error. pfctl failures are transient for the daemon's worker:
    /// the ban stays in the ledger and the batch is tried again, which is what a passing
    /// condition (a pfctl racing another, `/dev/pf` not yet readable, a reload) needs.
    pub fn error(&self) -> FirewallError {
        let status = match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        };
        let stderr = self.stderr.trim();
        let message = if stderr.is_empty() {
            status
        } else {
            format!("{status}: {}", stderr.replace('\n', "; "))
        };
        FirewallError::Command {
            cmd: self.cmd.clone(),
            message,
        }
    }

    /// Ok(self) on exit 0, the failure otherwise.
    pub fn checked(self) -> Result<Reply, FirewallError> {
        if self.ok() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }
}

impl Pfctl {
    /// Runs pfctl. Exec failures (not found, timeout) are errors; exit statuses are the
    /// caller's to judge.
    pub fn run(&self, args: &[&str], stdin: Option<String>) -> Result<Reply, FirewallError> {
        let mut cmd = Cmd::new(&self.program).args(args).timeout(self.timeout);
        if let Some(input) = stdin {
            cmd = cmd.stdin(input);
        }
        let out = cmd.run()?;
        debug!(cmd = %out.cmd, code = ?out.code, elapsed_ms = out.elapsed.as_millis() as u64,
               "Ran pfctl.");
        Ok(Reply {
            cmd: out.cmd.clone(),
            code: out.code,
            stdout: out.stdout_text(),
            stderr: out.stderr_text(),
        })
    }
}

/// Counts of a `-T add|delete|replace` reply (stderr, without `-q`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableCounts {
    pub created: bool,
    pub added: u64,
    pub deleted: u64,
    pub changed: u64,
    /// `B` of `A/B`, when printed.
    pub submitted: Option<u64>,
}

/// Reads `1 table created.`, `A/B addresses added.`, `N addresses deleted.`, … .
pub fn table_counts(stderr: &str) -> TableCounts {
    let mut c = TableCounts::default();
    for line in stderr.lines() {
        let line = line.trim().trim_end_matches('.');
        let mut words = line.split_whitespace();
        let (Some(n), Some(what), Some(verb)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if what == "table" && verb == "created" {
            c.created = true;
            continue;
        }
        if what != "addresses" {
            continue;
        }
        let (a, b) = match n.split_once('/') {
            Some((a, b)) => (a, b.parse::<u64>().ok()),
            None => (n, None),
        };
        let Ok(a) = a.parse::<u64>() else { continue };
        match verb {
            "added" => c.added += a,
            "deleted" => c.deleted += a,
            "changed" => c.changed += a,
            _ => continue,
        }
        if b.is_some() {
            c.submitted = b;
        }
    }
    c
}

/// The count of `killed N states…`.
pub fn killed_count(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("killed ")?;
        let (n, tail) = rest.split_once(' ')?;
        tail.starts_with("states").then(|| n.parse().ok()).flatten()
    })
}

/// The entries of `-T show`: three columns of padding, an optional `!` (negated, which
/// warden never adds), the address, `/len` for networks, OpenBSD's `@if` suffix.
pub fn show_entries(stdout: &str) -> (Vec<ipnet::IpNet>, Vec<String>) {
    let mut nets = Vec::new();
    let mut other = Vec::new();
    for line in stdout.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let t = t.split('@').next().unwrap_or(t);
        let parsed = if t.starts_with('!') {
            None
        } else if t.contains('/') {
            t.parse::<ipnet::IpNet>().ok()
        } else {
            t.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
        };
        match parsed {
            Some(n) => nets.push(n),
            None => other.push(t.to_string()),
        }
    }
    (nets, other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_table_counts() {
        let c = table_counts("1 table created.\n2/3 addresses added.\n");
        assert_eq!(
            c,
            TableCounts {
                created: true,
                added: 2,
                submitted: Some(3),
                ..TableCounts::default()
            }
        );
        let c = table_counts("4 addresses added.\n1 addresses deleted.\n2 addresses changed.\n");
        assert_eq!((c.added, c.deleted, c.changed, c.created), (4, 1, 2, false));
        assert_eq!(table_counts("no changes.\n"), TableCounts::default());
        let c = table_counts("0/5 addresses deleted.\n");
        assert_eq!((c.deleted, c.submitted), (0, Some(5)));
    }

    #[test]
    fn reads_kill_counts() {
        assert_eq!(
            killed_count("killed 3 states from 1 sources and 0 destinations\n"),
            Some(3)
        );
        assert_eq!(killed_count("killed 0 states\n"), Some(0));
        assert_eq!(killed_count("killed 2 src nodes from 1 sources\n"), None);
        assert_eq!(killed_count(""), None);
    }

    #[test]
    fn reads_show_output() {
        let (nets, other) = show_entries(
            "   192.0.2.7\n   10.0.0.0/8\n  !10.1.0.0/16\n   2001:db8::/64\n   2001:db8::1@em0\n",
        );
        let want: Vec<ipnet::IpNet> = [
            "192.0.2.7/32",
            "10.0.0.0/8",
            "2001:db8::/64",
            "2001:db8::1/128",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(nets, want);
        assert_eq!(other, vec!["!10.1.0.0/16"]);
    }

    #[test]
    fn classifies_missing_tables() {
        let r = |code, stderr: &str| Reply {
            cmd: "pfctl".into(),
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
        };
        assert!(r(255, "pfctl: Table does not exist.\n").table_missing());
        assert!(r(255, "pfctl: Table does not exist\n").table_missing());
        assert!(r(255, "pfctl: Anchor does not exist\n").table_missing());
        assert!(!r(1, "pfctl: /dev/pf: Permission denied\n").table_missing());
        let e = r(1, "pfctl: /dev/pf: Permission denied\n").error();
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "pfctl: exit status 1: pfctl: /dev/pf: Permission denied"
        );
    }
}
