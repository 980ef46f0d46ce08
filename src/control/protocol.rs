//! The control protocol: one JSON object per line in each direction over a Unix stream
//! socket. A client sends one request and reads one response; it may send more on the same
//! connection.

use serde::{Deserialize, Serialize};

/// Version of this protocol; the daemon reports it in `version` answers.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request from the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Ping,
    Version,
    /// Daemon-wide status, or one jail's.
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
    },
    /// Ban addresses or networks in a jail.
    Ban {
        jail: String,
        addrs: Vec<String>,
    },
    /// Lift bans: of the given addresses (in one jail or all), or every ban.
    Unban {
        #[serde(default)]
        addrs: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
        #[serde(default)]
        all: bool,
    },
    /// Current bans, all or of the given addresses.
    Banned {
        #[serde(default)]
        addrs: Vec<String>,
    },
    /// Reload the configuration, all jails or one.
    Reload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
    },
    Stop,
    /// Metrics in the OpenMetrics text format.
    Metrics,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Ok { ok: Okay, result: Answer },
    Err { ok: NotOkay, error: String },
}

/// `true` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "bool", into = "bool")]
pub struct Okay;
impl TryFrom<bool> for Okay {
    type Error = &'static str;
    fn try_from(b: bool) -> Result<Self, Self::Error> {
        if b { Ok(Okay) } else { Err("expected true") }
    }
}
impl From<Okay> for bool {
    fn from(_: Okay) -> bool {
        true
    }
}

/// `false` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "bool", into = "bool")]
pub struct NotOkay;
impl TryFrom<bool> for NotOkay {
    type Error = &'static str;
    fn try_from(b: bool) -> Result<Self, Self::Error> {
        if b {
            Err("expected false")
        } else {
            Ok(NotOkay)
        }
    }
}
impl From<NotOkay> for bool {
    fn from(_: NotOkay) -> bool {
        false
    }
}

impl Response {
    pub fn ok(result: Answer) -> Response {
        Response::Ok { ok: Okay, result }
    }
    pub fn err(error: impl Into<String>) -> Response {
        Response::Err {
            ok: NotOkay,
            error: error.into(),
        }
    }
}

/// The result of a successful request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Answer {
    Pong,
    Version(VersionInfo),
    Status(DaemonStatus),
    Jail(JailStatus),
    Ban(BanOutcome),
    Unban(UnbanOutcome),
    Banned(BannedList),
    Reload(ReloadOutcome),
    Stopping,
    Metrics { text: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub protocol: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime: i64,
    pub jails: Vec<JailSummary>,
    /// Firewall problems still being retried.
    #[serde(default)]
    pub pending_firewall_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JailSummary {
    pub name: String,
    pub currently_failed: u64,
    pub total_failed: u64,
    pub currently_banned: u64,
    pub total_banned: u64,
}

/// One jail in detail (the layout of fail2ban-client's `status JAIL`, plus more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JailStatus {
    pub name: String,
    pub filter: FilterStatus,
    pub actions: ActionsStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterStatus {
    pub currently_failed: u64,
    pub total_failed: u64,
    /// Files being followed (or the journal matches / pflog file).
    pub sources: Vec<String>,
    pub lines_read: u64,
    pub lines_matched: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionsStatus {
    pub currently_banned: u64,
    pub total_banned: u64,
    pub banned: Vec<String>,
    /// The firewall actions serving the jail.
    pub actions: Vec<String>,
    /// Existing connections cut, per ban.
    #[serde(default)]
    pub kills: Vec<KillSummary>,
    /// Firewall problems of this jail still being retried.
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillSummary {
    pub target: String,
    pub scope: String,
    pub killed: u64,
    pub time: i64,
}

/// One hold in the ledger as the client shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanEntry {
    pub target: String,
    pub jail: String,
    pub start: i64,
    /// None for a permanent ban.
    pub expires: Option<i64>,
    pub bantime: i64,
    pub bancount: u32,
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanOutcome {
    pub banned: Vec<String>,
    /// Already held by the jail (the hold was refreshed).
    pub already: Vec<String>,
    /// Not addresses or networks; each with the reason.
    pub invalid: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnbanOutcome {
    /// Holds lifted, as `target (jail)`.
    pub unbanned: Vec<String>,
    /// Given addresses that no jail held.
    pub not_banned: Vec<String>,
    pub invalid: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BannedList {
    pub now: i64,
    pub bans: Vec<BanEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Configuration errors (file:line: reason); the jails they concern were not changed.
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let r = Request::Unban {
            addrs: vec!["192.0.2.7".into()],
            jail: Some("sshd".into()),
            all: false,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"cmd":"unban","addrs":["192.0.2.7"],"jail":"sshd","all":false}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status { jail: None }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
    }

    #[test]
    fn responses_distinguish_ok_and_error() {
        let ok = serde_json::to_string(&Response::ok(Answer::Pong)).unwrap();
        assert_eq!(ok, r#"{"ok":true,"result":{"kind":"pong"}}"#);
        let err = serde_json::to_string(&Response::err("no such jail: x")).unwrap();
        assert_eq!(err, r#"{"ok":false,"error":"no such jail: x"}"#);
        assert!(matches!(
            serde_json::from_str::<Response>(&err).unwrap(),
            Response::Err { .. }
        ));
        assert!(matches!(
            serde_json::from_str::<Response>(&ok).unwrap(),
            Response::Ok {
                result: Answer::Pong,
                ..
            }
        ));
    }
}
