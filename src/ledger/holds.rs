//! Holds: which jail bans which target until when. Recording a ban, ending and extending
//! holds, and the questions the daemon asks (what is active, what expires next, who
//! holds an address, how often was it banned).

use std::collections::BTreeMap;

use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use tracing::error;

use super::store::{sql_err, sql_err_with};
use super::target;
use super::{Ledger, LedgerError, LedgerOptions};
use crate::Epoch;
use crate::firewall::Ban;
use crate::jail::escalation::Escalate;

/// Where a ban came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A jail's filter counted enough failures.
    Filter,
    /// An administrator's `warden ban`.
    Manual,
    /// Re-recorded from an earlier record (an imported database, a log line read again
    /// after a restart). Does not count as a new ban: no escalation, no recidive.
    Restored,
    /// The built-in recidive jail, fed by other jails' bans.
    Recidive,
    /// Received from another host.
    Remote,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Filter => "filter",
            Origin::Manual => "manual",
            Origin::Restored => "restored",
            Origin::Recidive => "recidive",
            Origin::Remote => "remote",
        }
    }

    pub fn parse(s: &str) -> Option<Origin> {
        Some(match s {
            "filter" => Origin::Filter,
            "manual" => Origin::Manual,
            "restored" => Origin::Restored,
            "recidive" => Origin::Recidive,
            "remote" => Origin::Remote,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A jail's ban of one target, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hold {
    pub target: IpNet,
    pub jail: String,
    pub start: Epoch,
    /// None for a permanent ban.
    pub expires: Option<Epoch>,
    /// Seconds after escalation; -1 permanent.
    pub bantime: i64,
    /// How many times this jail banned the target, this ban included (the count is kept
    /// after the ban ends, until purge).
    pub bancount: u32,
    pub failures: u32,
    /// The last matched lines (at most `dbmaxmatches`).
    pub matches: Vec<String>,
    pub fields: BTreeMap<String, String>,
    pub origin: Origin,
    /// When the hold ended (its expiry, or an unban); None while it stands.
    pub ended: Option<Epoch>,
}

impl Hold {
    /// Whether the hold bans its target at `now`.
    pub fn is_active(&self, now: Epoch) -> bool {
        self.ended.is_none() && self.expires.is_none_or(|e| e > now)
    }

    /// The firewall's view of this hold.
    pub fn to_ban(&self, restored: bool) -> Ban {
        Ban {
            jail: self.jail.clone(),
            target: self.target,
            start: self.start,
            expires: self.expires,
            bantime: self.bantime,
            failures: self.failures,
            bancount: self.bancount,
            matches: self.matches.clone(),
            fields: self.fields.clone(),
            restored,
        }
    }
}

/// A ban to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBan {
    pub target: IpNet,
    pub jail: String,
    /// When the ban starts (normally now).
    pub start: Epoch,
    /// The jail's ban time in seconds before escalation; -1 permanent.
    pub bantime: i64,
    /// Escalation for repeat offenders; None records `bantime` as it is.
    pub escalation: Option<Escalate>,
    pub failures: u32,
    /// The matched lines; only the last `dbmaxmatches` are kept.
    pub matches: Vec<String>,
    pub fields: BTreeMap<String, String>,
    pub origin: Origin,
}

impl NewBan {
    /// A filter ban without escalation, failures or matches; set the rest by field.
    pub fn new(target: IpNet, jail: impl Into<String>, start: Epoch, bantime: i64) -> NewBan {
        NewBan {
            target,
            jail: jail.into(),
            start,
            bantime,
            escalation: None,
            failures: 0,
            matches: Vec::new(),
            fields: BTreeMap::new(),
            origin: Origin::Filter,
        }
    }
}

/// What recording a ban did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The jail did not hold the target: a new hold, counted in the history.
    New,
    /// The jail already held the target and the new ban ends later: the hold's expiry
    /// moved (not counted as a new ban, as in fail2ban).
    Extended,
    /// The jail already held the target at least as long: nothing changed.
    AlreadyHeld,
}

/// The result of [`Ledger::record_ban`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The hold as stored now.
    pub hold: Hold,
    pub outcome: Outcome,
    /// Earlier bans that escalation counted: in this jail, or in every jail when the
    /// escalation has `overalljails`.
    pub prior: u32,
    /// `prior + 1` for a new ban (what actions see as `<bancount>`); the hold's count
    /// otherwise.
    pub bancount: u32,
    /// The history event written, for a new ban.
    pub event: Option<i64>,
}

impl Recorded {
    /// The ban to hand the firewall, with the escalation's view of the ban count.
    pub fn to_ban(&self) -> Ban {
        let mut ban = self.hold.to_ban(false);
        ban.bancount = self.bancount;
        ban
    }
}

/// Earlier bans of a target, as escalation counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prior {
    pub bans: u32,
    /// Start of the latest of those bans.
    pub last_start: Option<Epoch>,
}

/// Per-jail numbers for status output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JailCounts {
    pub jail: String,
    /// Holds active now.
    pub active: u64,
    /// Bans in the kept history (restored ones excluded).
    pub total: u64,
}

pub(super) const HOLD_COLUMNS: &str =
    "target, jail, start, expires, bantime, bancount, failures, matches, fields, origin, ended";

/// A hold row as read, before its text columns are checked.
pub(super) struct RawHold {
    target: String,
    jail: String,
    start: i64,
    expires: Option<i64>,
    bantime: i64,
    bancount: i64,
    failures: i64,
    matches: Option<String>,
    fields: Option<String>,
    origin: String,
    ended: Option<i64>,
}

impl RawHold {
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<RawHold> {
        Ok(RawHold {
            target: r.get(0)?,
            jail: r.get(1)?,
            start: r.get(2)?,
            expires: r.get(3)?,
            bantime: r.get(4)?,
            bancount: r.get(5)?,
            failures: r.get(6)?,
            matches: r.get(7)?,
            fields: r.get(8)?,
            origin: r.get(9)?,
            ended: r.get(10)?,
        })
    }

    pub(super) fn into_hold(self, path: &std::path::Path) -> Result<Hold, LedgerError> {
        let corrupt = |what, value: &str| LedgerError::Corrupt {
            path: path.to_path_buf(),
            table: "holds",
            what,
            value: value.to_string(),
        };
        let target =
            target::parse_key(&self.target).ok_or_else(|| corrupt("target", &self.target))?;
        let origin = Origin::parse(&self.origin).ok_or_else(|| corrupt("origin", &self.origin))?;
        let matches = match &self.matches {
            None => Vec::new(),
            Some(j) => serde_json::from_str(j).map_err(|_| corrupt("matches", j))?,
        };
        let fields = match &self.fields {
            None => BTreeMap::new(),
            Some(j) => serde_json::from_str(j).map_err(|_| corrupt("fields", j))?,
        };
        Ok(Hold {
            target,
            jail: self.jail,
            start: self.start,
            expires: self.expires,
            bantime: self.bantime,
            bancount: clamp_u32(self.bancount),
            failures: clamp_u32(self.failures),
            matches,
            fields,
            origin,
            ended: self.ended,
        })
    }
}

pub(super) fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

/// The SQL condition for "active at ?now" (the parameter is named `:now`).
const ACTIVE: &str = "ended IS NULL AND (expires IS NULL OR expires > :now)";

impl Ledger {
    /// Records a ban: creates or renews the jail's hold on the target and writes a history
    /// event, in one transaction, escalating the ban time from the earlier bans when the
    /// ban asks for it. Committed when this returns.
    pub fn record_ban(&mut self, ban: &NewBan) -> Result<Recorded, LedgerError> {
        let mut out = self.record_bans(std::slice::from_ref(ban))?;
        Ok(out.remove(0))
    }

    /// Records several bans in one transaction (one commit for the batch), in order.
    pub fn record_bans(&mut self, bans: &[NewBan]) -> Result<Vec<Recorded>, LedgerError> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(path, "begin recording bans"))?;
        let mut out = Vec::with_capacity(bans.len());
        for ban in bans {
            out.push(record_in(&tx, path, &self.opts, ban)?);
        }
        tx.commit().map_err(sql_err(path, "commit recorded bans"))?;
        Ok(out)
    }

    /// Ends the jail's hold on `target` at `now` (an unban). With `forget`, the jail's
    /// record and history of the target are deleted too, so a later ban starts counting
    /// from one again (what fail2ban's `unbanip` does). Returns the hold if it was active.
    pub fn unban(
        &mut self,
        target: &IpNet,
        jail: &str,
        now: Epoch,
        forget: bool,
    ) -> Result<Option<Hold>, LedgerError> {
        let key = target::key(target);
        let path = &self.path;
        let op = || format!("unban {target} in jail {jail}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err_with(path, op))?;
        let held = select_hold(&tx, path, &key, jail)?.filter(|h| h.is_active(now));
        if forget {
            tx.execute(
                "DELETE FROM holds WHERE target = ?1 AND jail = ?2",
                params![key, jail],
            )
            .map_err(sql_err_with(path, op))?;
            tx.execute(
                "DELETE FROM bans WHERE target = ?1 AND jail = ?2",
                params![key, jail],
            )
            .map_err(sql_err_with(path, op))?;
        } else if held.is_some() {
            tx.execute(
                "UPDATE holds SET ended = ?3 WHERE target = ?1 AND jail = ?2",
                params![key, jail, now],
            )
            .map_err(sql_err_with(path, op))?;
        }
        tx.commit().map_err(sql_err_with(path, op))?;
        Ok(held.map(|mut h| {
            h.ended = Some(now);
            h
        }))
    }

    /// Ends every active hold of `jail` (or of every jail) at `now`; with `forget`, deletes
    /// their records and history as [`Ledger::unban`] does. Returns the holds that were
    /// active.
    pub fn unban_all(
        &mut self,
        jail: Option<&str>,
        now: Epoch,
        forget: bool,
    ) -> Result<Vec<Hold>, LedgerError> {
        let path = &self.path;
        let op = || format!("unban all in jail {}", jail.unwrap_or("(all)"));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err_with(path, op))?;
        let sql = format!(
            "UPDATE holds SET ended = :now WHERE {ACTIVE} AND (:jail IS NULL OR jail = :jail) \
             RETURNING {HOLD_COLUMNS}"
        );
        let raws = {
            let mut stmt = tx.prepare(&sql).map_err(sql_err_with(path, op))?;
            stmt.query_map(
                rusqlite::named_params! {":now": now, ":jail": jail},
                RawHold::from_row,
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_err_with(path, op))?
        };
        if forget {
            for table in ["holds", "bans"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE ?1 IS NULL OR jail = ?1"),
                    params![jail],
                )
                .map_err(sql_err_with(path, op))?;
            }
        }
        tx.commit().map_err(sql_err_with(path, op))?;
        let mut holds = ended_holds(raws, path);
        holds.sort_by(|a, b| {
            (target::key(&a.target), &a.jail).cmp(&(target::key(&b.target), &b.jail))
        });
        Ok(holds)
    }

    /// Ends every hold whose expiry has passed at `now` (setting `ended` to its expiry) and
    /// returns them, soonest first: the unban timer's work list. Holds already ended are
    /// not returned again.
    pub fn expire_due(&mut self, now: Epoch) -> Result<Vec<Hold>, LedgerError> {
        let path = &self.path;
        let sql = format!(
            "UPDATE holds SET ended = expires \
             WHERE ended IS NULL AND expires IS NOT NULL AND expires <= ?1 \
             RETURNING {HOLD_COLUMNS}"
        );
        let raws = {
            let mut stmt = self
                .conn
                .prepare_cached(&sql)
                .map_err(sql_err(path, "expire holds"))?;
            stmt.query_map(params![now], RawHold::from_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(sql_err(path, "expire holds"))?
        };
        let mut holds = ended_holds(raws, path);
        holds.sort_by_key(|h| h.expires);
        Ok(holds)
    }

    /// Moves the expiry of the jail's active hold on `target` to `expires` (None:
    /// permanent) if that is later. Returns the hold as it is afterwards, or None when the
    /// jail holds no active ban of the target at `now`.
    pub fn extend(
        &mut self,
        target: &IpNet,
        jail: &str,
        now: Epoch,
        expires: Option<Epoch>,
    ) -> Result<Option<Hold>, LedgerError> {
        let key = target::key(target);
        let path = &self.path;
        let op = || format!("extend {target} in jail {jail}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err_with(path, op))?;
        let Some(mut hold) = select_hold(&tx, path, &key, jail)?.filter(|h| h.is_active(now))
        else {
            return Ok(None);
        };
        if later(expires, hold.expires) {
            hold.expires = expires;
            hold.bantime = expires.map_or(-1, |e| e - hold.start);
            tx.execute(
                "UPDATE holds SET expires = ?3, bantime = ?4 WHERE target = ?1 AND jail = ?2",
                params![key, jail, hold.expires, hold.bantime],
            )
            .map_err(sql_err_with(path, op))?;
        }
        tx.commit().map_err(sql_err_with(path, op))?;
        Ok(Some(hold))
    }

    /// The holds active at `now`, of one jail or of all, ordered by target then jail.
    pub fn active(&self, now: Epoch, jail: Option<&str>) -> Result<Vec<Hold>, LedgerError> {
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE {ACTIVE} AND (:jail IS NULL OR jail = :jail) \
             ORDER BY target, jail"
        );
        self.query_holds(
            &sql,
            rusqlite::named_params! {":now": now, ":jail": jail},
            "list active holds",
        )
    }

    /// The earliest expiry among holds not yet ended (possibly already past, when
    /// [`Ledger::expire_due`] has not run since); None when no hold will expire.
    pub fn next_expiry(&self) -> Result<Option<Epoch>, LedgerError> {
        self.conn
            .prepare_cached("SELECT min(expires) FROM holds WHERE ended IS NULL")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(self.sql("find next expiry"))
    }

    /// Up to `limit` holds not yet ended that expire, soonest first.
    pub fn next_expiries(&self, limit: usize) -> Result<Vec<Hold>, LedgerError> {
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE ended IS NULL AND expires IS NOT NULL \
             ORDER BY expires, target, jail LIMIT :limit"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_holds(
            &sql,
            rusqlite::named_params! {":limit": limit},
            "list next expiries",
        )
    }

    /// The active holds at `now` on `target` or on any network overlapping it (a network
    /// containing it, or one inside it), ordered by target then jail. The firewall entry
    /// for `target` may go only when no hold here shares it.
    pub fn holders(&self, target: &IpNet, now: Epoch) -> Result<Vec<Hold>, LedgerError> {
        let (low, high) = target::range(target);
        // Keys of the other family have another length and could sort into the range.
        let width = low.len() as i64;
        let op = || format!("find holders of {target}");
        let inner = format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE target BETWEEN :low AND :high \
             AND length(target) = :width AND {ACTIVE}"
        );
        let mut holds = self.query_holds_with(
            &inner,
            rusqlite::named_params! {":low": low, ":high": high, ":width": width, ":now": now},
            op,
        )?;
        // Containing networks sort below the range: look each up by its exact key, for
        // the prefix lengths holds have used.
        let plen = target::canonical(target).prefix_len();
        let path = &self.path;
        let lengths: Vec<u8> = self
            .conn
            .prepare_cached("SELECT plen FROM prefixes WHERE width = ?1 AND plen < ?2")
            .and_then(|mut s| {
                s.query_map(params![width, plen], |r| r.get(0))?
                    .collect::<Result<Vec<u8>, _>>()
            })
            .map_err(sql_err_with(path, op))?;
        let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE target = :key AND {ACTIVE}");
        for p in lengths {
            if let Some(key) = target::supernet_key(target, p) {
                holds.extend(self.query_holds_with(
                    &sql,
                    rusqlite::named_params! {":key": key, ":now": now},
                    op,
                )?);
            }
        }
        holds.sort_by(|a, b| {
            (target::key(&a.target), &a.jail).cmp(&(target::key(&b.target), &b.jail))
        });
        Ok(holds)
    }

    /// The jail's record of `target`, active or not (None once purged or forgotten).
    pub fn hold(&self, target: &IpNet, jail: &str) -> Result<Option<Hold>, LedgerError> {
        select_hold(&self.conn, &self.path, &target::key(target), jail)
    }

    /// The earlier bans of `target` that escalation counts: the jail's ban count, or with
    /// `overall` the sum over every jail's count. Counts live as long as the hold record
    /// (see [`Ledger::purge`]).
    pub fn prior_bans(
        &self,
        target: &IpNet,
        jail: &str,
        overall: bool,
    ) -> Result<Prior, LedgerError> {
        prior_in(&self.conn, &self.path, &target::key(target), jail, overall)
    }

    /// Active and total bans per jail (jails with neither are absent), ordered by jail.
    pub fn jail_counts(&self, now: Epoch) -> Result<Vec<JailCounts>, LedgerError> {
        let active = self.count_by_jail(
            &format!("SELECT jail, count(*) FROM holds WHERE {ACTIVE} GROUP BY jail"),
            rusqlite::named_params! {":now": now},
            "count holds",
        )?;
        let total = self.count_by_jail(
            "SELECT jail, count(*) FROM bans WHERE origin != 'restored' GROUP BY jail",
            [],
            "count bans",
        )?;
        let mut by_jail: BTreeMap<String, JailCounts> = BTreeMap::new();
        fn of(by_jail: &mut BTreeMap<String, JailCounts>, jail: String) -> &mut JailCounts {
            by_jail.entry(jail.clone()).or_insert_with(|| JailCounts {
                jail,
                ..Default::default()
            })
        }
        for (jail, n) in active {
            of(&mut by_jail, jail).active = n as u64;
        }
        for (jail, n) in total {
            of(&mut by_jail, jail).total = n as u64;
        }
        Ok(by_jail.into_values().collect())
    }

    /// Runs a `SELECT jail, count(*) ... GROUP BY jail` query.
    fn count_by_jail<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        op: &str,
    ) -> Result<Vec<(String, i64)>, LedgerError> {
        let path = &self.path;
        let mut stmt = self.conn.prepare_cached(sql).map_err(sql_err(path, op))?;
        stmt.query_map(params, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err(path, op))
    }

    fn query_holds<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        op: &str,
    ) -> Result<Vec<Hold>, LedgerError> {
        self.query_holds_with(sql, params, || op.to_string())
    }

    fn query_holds_with<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        op: impl Fn() -> String,
    ) -> Result<Vec<Hold>, LedgerError> {
        let path = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(sql_err_with(path, &op))?;
        let raws = stmt
            .query_map(params, RawHold::from_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_err_with(path, &op))?;
        raws.into_iter().map(|r| r.into_hold(path)).collect()
    }
}

/// The holds a committed change has ended. A row that cannot be read is logged and left
/// out rather than failing the whole list: it has ended already, and failing would keep
/// the caller from acting on the rows that can be read.
fn ended_holds(raws: Vec<RawHold>, path: &std::path::Path) -> Vec<Hold> {
    raws.into_iter()
        .filter_map(|r| match r.into_hold(path) {
            Ok(h) => Some(h),
            Err(e) => {
                error!(error = %e, "Skipped an unreadable hold that was ended.");
                None
            }
        })
        .collect()
}

/// Whether expiry `a` is later than `b` (None is forever).
fn later(a: Option<Epoch>, b: Option<Epoch>) -> bool {
    match (a, b) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
    }
}

fn select_hold(
    conn: &Connection,
    path: &std::path::Path,
    key: &str,
    jail: &str,
) -> Result<Option<Hold>, LedgerError> {
    let op = || format!("read hold {key} in jail {jail}");
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds WHERE target = ?1 AND jail = ?2"
        ))
        .and_then(|mut s| {
            s.query_row(params![key, jail], RawHold::from_row)
                .optional()
        })
        .map_err(sql_err_with(path, op))?;
    raw.map(|r| r.into_hold(path)).transpose()
}

fn prior_in(
    conn: &Connection,
    path: &std::path::Path,
    key: &str,
    jail: &str,
    overall: bool,
) -> Result<Prior, LedgerError> {
    let op = || format!("count earlier bans of {key} in jail {jail}");
    let read = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?));
    let (bans, last_start): (i64, Option<i64>) = if overall {
        conn.prepare_cached(
            "SELECT coalesce(sum(bancount), 0), max(start) FROM holds WHERE target = ?1",
        )
        .and_then(|mut s| s.query_row(params![key], read))
    } else {
        conn.prepare_cached(
            "SELECT coalesce(sum(bancount), 0), max(start) FROM holds \
             WHERE target = ?1 AND jail = ?2",
        )
        .and_then(|mut s| s.query_row(params![key, jail], read))
    }
    .map_err(sql_err_with(path, op))?;
    Ok(Prior {
        bans: clamp_u32(bans),
        last_start,
    })
}

/// One ban inside the caller's transaction.
fn record_in(
    conn: &Connection,
    path: &std::path::Path,
    opts: &LedgerOptions,
    ban: &NewBan,
) -> Result<Recorded, LedgerError> {
    let key = target::key(&ban.target);
    let target = target::canonical(&ban.target);
    let jail = ban.jail.as_str();
    let op = || format!("record ban of {target} in jail {jail}");
    let existing = select_hold(conn, path, &key, jail)?;

    if let Some(mut hold) = existing.clone().filter(|h| h.is_active(ban.start)) {
        // Already banned: fail2ban neither counts nor escalates this; the hold only
        // grows if the new ban would end later.
        let expires = (ban.bantime >= 0).then(|| ban.start.saturating_add(ban.bantime));
        let outcome = if later(expires, hold.expires) {
            hold.expires = expires;
            hold.bantime = expires.map_or(-1, |e| e - hold.start);
            conn.prepare_cached(
                "UPDATE holds SET expires = ?3, bantime = ?4 WHERE target = ?1 AND jail = ?2",
            )
            .and_then(|mut s| s.execute(params![key, jail, hold.expires, hold.bantime]))
            .map_err(sql_err_with(path, op))?;
            Outcome::Extended
        } else {
            Outcome::AlreadyHeld
        };
        let bancount = hold.bancount;
        return Ok(Recorded {
            hold,
            outcome,
            prior: bancount.saturating_sub(1),
            bancount,
            event: None,
        });
    }

    let own_prior = existing.as_ref().map_or(0, |h| h.bancount);
    let restored = ban.origin == Origin::Restored;
    let (prior, bantime) = match &ban.escalation {
        Some(esc) if !restored => {
            let prior = if esc.overall() {
                prior_in(conn, path, &key, jail, true)?.bans
            } else {
                own_prior
            };
            (prior, esc.ban_time(ban.bantime, prior))
        }
        _ => (own_prior, ban.bantime),
    };
    // A restored ban was counted when it first happened.
    let (bancount, shown) = if restored {
        let n = own_prior.max(1);
        (n, n)
    } else {
        (own_prior.saturating_add(1), prior.saturating_add(1))
    };
    let expires = (bantime >= 0).then(|| ban.start.saturating_add(bantime));
    let keep = ban.matches.len().saturating_sub(opts.max_matches as usize);
    let matches = &ban.matches[keep..];
    let matches_json =
        (!matches.is_empty()).then(|| serde_json::to_string(matches).expect("strings serialise"));
    let fields_json = (!ban.fields.is_empty())
        .then(|| serde_json::to_string(&ban.fields).expect("strings serialise"));

    conn.prepare_cached(
        "INSERT INTO holds (target, jail, start, expires, bantime, bancount, failures, matches, \
         fields, origin, ended) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL) \
         ON CONFLICT (target, jail) DO UPDATE SET start = excluded.start, \
         expires = excluded.expires, bantime = excluded.bantime, bancount = excluded.bancount, \
         failures = excluded.failures, matches = excluded.matches, fields = excluded.fields, \
         origin = excluded.origin, ended = NULL",
    )
    .and_then(|mut s| {
        s.execute(params![
            key,
            jail,
            ban.start,
            expires,
            bantime,
            bancount,
            ban.failures,
            matches_json,
            fields_json,
            ban.origin.as_str(),
        ])
    })
    .map_err(sql_err_with(path, op))?;
    conn.prepare_cached("INSERT OR IGNORE INTO prefixes (width, plen) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![key.len() as i64, target.prefix_len()]))
        .map_err(sql_err_with(path, op))?;
    conn.prepare_cached(
        "INSERT INTO bans (target, jail, at, bantime, bancount, failures, origin) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            key,
            jail,
            ban.start,
            bantime,
            shown,
            ban.failures,
            ban.origin.as_str()
        ])
    })
    .map_err(sql_err_with(path, op))?;
    let event = conn.last_insert_rowid();

    Ok(Recorded {
        hold: Hold {
            target,
            jail: ban.jail.clone(),
            start: ban.start,
            expires,
            bantime,
            bancount,
            failures: ban.failures,
            matches: matches.to_vec(),
            fields: ban.fields.clone(),
            origin: ban.origin,
            ended: None,
        },
        outcome: Outcome::New,
        prior,
        bancount: shown,
        event: Some(event),
    })
}
