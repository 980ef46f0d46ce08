//! The ban history: one event per ban, read by the recidive jail and by status, and
//! purged after `dbpurgeage` together with hold records nobody needs any more.

use ipnet::IpNet;
use rusqlite::{Row, TransactionBehavior, params};
use tracing::debug;

use super::holds::clamp_u32;
use super::store::{sql_err, sql_err_with};
use super::{Ledger, LedgerError, Origin, target};
use crate::Epoch;

/// How many ban times past its purge age an ended hold's record is kept: fail2ban's
/// "outdated factor" for its latest-ban-per-address table. A long ban's count is thus
/// remembered longer than a short one's, so persistent offenders keep escalating.
pub const OUTDATED_FACTOR: i64 = 3;

/// One recorded ban.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BanEvent {
    /// Increasing id (never reused), usable as a stream cursor.
    pub id: i64,
    pub target: IpNet,
    pub jail: String,
    pub at: Epoch,
    pub bantime: i64,
    /// The ban count the ban was given (escalation's view, this ban included).
    pub bancount: u32,
    pub failures: u32,
    pub origin: Origin,
}

/// What [`Ledger::purge`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// History events.
    pub events: usize,
    /// Ended hold records (and with them their ban counts).
    pub holds: usize,
}

const EVENT_COLUMNS: &str = "id, target, jail, at, bantime, bancount, failures, origin";

struct RawEvent {
    id: i64,
    target: String,
    jail: String,
    at: i64,
    bantime: i64,
    bancount: i64,
    failures: i64,
    origin: String,
}

impl RawEvent {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
        Ok(RawEvent {
            id: r.get(0)?,
            target: r.get(1)?,
            jail: r.get(2)?,
            at: r.get(3)?,
            bantime: r.get(4)?,
            bancount: r.get(5)?,
            failures: r.get(6)?,
            origin: r.get(7)?,
        })
    }

    fn into_event(self, path: &std::path::Path) -> Result<BanEvent, LedgerError> {
        let corrupt = |what, value: &str| LedgerError::Corrupt {
            path: path.to_path_buf(),
            table: "bans",
            what,
            value: value.to_string(),
        };
        Ok(BanEvent {
            id: self.id,
            target: target::parse_key(&self.target)
                .ok_or_else(|| corrupt("target", &self.target))?,
            jail: self.jail,
            at: self.at,
            bantime: self.bantime,
            bancount: clamp_u32(self.bancount),
            failures: clamp_u32(self.failures),
            origin: Origin::parse(&self.origin).ok_or_else(|| corrupt("origin", &self.origin))?,
        })
    }
}

impl Ledger {
    /// Bans recorded at or after `since`, oldest first, without restored ones and without
    /// those of `exclude_jail` (the recidive jail does not feed on its own bans).
    pub fn recent_bans(
        &self,
        since: Epoch,
        exclude_jail: Option<&str>,
    ) -> Result<Vec<BanEvent>, LedgerError> {
        self.query_events(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM bans WHERE at >= :since AND origin != 'restored' \
                 AND (:jail IS NULL OR jail != :jail) ORDER BY at, id"
            ),
            rusqlite::named_params! {":since": since, ":jail": exclude_jail},
        )
    }

    /// Up to `limit` bans with an id above `after`, by id, without restored ones and
    /// without those of `exclude_jail`: a stream to follow with a saved cursor.
    pub fn bans_after(
        &self,
        after: i64,
        exclude_jail: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BanEvent>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query_events(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM bans WHERE id > :after AND origin != 'restored' \
                 AND (:jail IS NULL OR jail != :jail) ORDER BY id LIMIT :limit"
            ),
            rusqlite::named_params! {":after": after, ":jail": exclude_jail, ":limit": limit},
        )
    }

    /// Bans of exactly `target` recorded at or after `since`, in one jail or in all,
    /// restored ones excluded.
    pub fn history_count(
        &self,
        target: &IpNet,
        jail: Option<&str>,
        since: Epoch,
    ) -> Result<u32, LedgerError> {
        let key = target::key(target);
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM bans WHERE target = :target AND at >= :since \
                 AND origin != 'restored' AND (:jail IS NULL OR jail = :jail)",
            )
            .and_then(|mut s| {
                s.query_row(
                    rusqlite::named_params! {":target": key, ":since": since, ":jail": jail},
                    |r| r.get(0),
                )
            })
            .map_err(sql_err_with(&self.path, || {
                format!("count bans of {target}")
            }))?;
        Ok(clamp_u32(n))
    }

    /// Deletes history events older than `dbpurgeage` and ended hold records that are
    /// outdated: older than `dbpurgeage` plus [`OUTDATED_FACTOR`] times their ban time
    /// (a permanent ban that was lifted: `dbpurgeage` after it ended). Active holds,
    /// permanent or not, are never touched.
    pub fn purge(&mut self, now: Epoch) -> Result<Purged, LedgerError> {
        let cutoff = now.saturating_sub(self.opts.purge_age);
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(path, "purge"))?;
        let events = tx
            .execute("DELETE FROM bans WHERE at < ?1", params![cutoff])
            .map_err(sql_err(path, "purge history"))?;
        let holds = tx
            .execute(
                "DELETE FROM holds \
                 WHERE (ended IS NOT NULL OR (expires IS NOT NULL AND expires <= ?1)) \
                 AND CASE WHEN bantime > 0 THEN start + ?3 * bantime \
                     ELSE coalesce(ended, expires, start) END < ?2",
                params![now, cutoff, OUTDATED_FACTOR],
            )
            .map_err(sql_err(path, "purge holds"))?;
        // Prefix lengths no hold uses any more; cheap, as there are only a few rows.
        tx.execute(
            "DELETE FROM prefixes WHERE NOT EXISTS (SELECT 1 FROM holds \
             WHERE length(target) = prefixes.width \
             AND substr(target, -3) = printf('%03d', prefixes.plen))",
            [],
        )
        .map_err(sql_err(path, "purge prefixes"))?;
        tx.commit().map_err(sql_err(path, "purge"))?;
        debug!(events, holds, cutoff, "Purged the ledger.");
        Ok(Purged { events, holds })
    }

    fn query_events<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<Vec<BanEvent>, LedgerError> {
        let path = &self.path;
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(sql_err(path, "read ban history"))?;
        let raws = stmt
            .query_map(params, RawEvent::from_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_err(path, "read ban history"))?;
        raws.into_iter().map(|r| r.into_event(path)).collect()
    }
}
