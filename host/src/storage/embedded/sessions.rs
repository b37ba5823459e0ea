//! Session records in the embedded store, and a session's purge.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::tables::*;
use super::writes::put_session;
use super::{EmbeddedStore, Lane, contacts, webhooks};
use crate::domain::{OutboxEvent, SessionId};
use crate::storage::{SessionRecord, StoreResult};

/// Removes every key of `table` in `lo..hi`: the keys of one session, whose
/// id is the first element of each key. `hi` puts `"<sid>\0"` first, the
/// least string above every key starting with exactly `sid` (and below a
/// longer id such as `sid0`), so the purge visits that session's keys only,
/// not the rest of the table inside the store's single write transaction.
macro_rules! purge_prefix {
    ($txn:expr, $table:expr, $lo:expr, $hi:expr) => {{
        let mut t = $txn.open_table($table).db()?;
        t.retain_in($lo..$hi, |_, _| false).db()?;
    }};
}

impl EmbeddedStore {
    /// `Store::put_session`.
    pub(super) async fn put_session_record(&self, rec: &SessionRecord) -> StoreResult<()> {
        let rec = rec.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_session(&txn, &rec)?;
            txn.commit().db()
        })
        .await
    }

    /// `Store::get_session`.
    pub(super) async fn session_record(
        &self,
        id: &SessionId,
    ) -> StoreResult<Option<SessionRecord>> {
        let id = id.to_string();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(SESSIONS).db()?;
            t.get(id.as_str()).db()?.map(|g| dec(g.value())).transpose()
        })
        .await
    }

    /// `Store::list_sessions`.
    pub(super) async fn session_records(&self) -> StoreResult<Vec<SessionRecord>> {
        self.blocking(Lane::Read, |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(SESSIONS).db()?;
            let mut out = Vec::new();
            for row in t.iter().db()? {
                let (_, v) = row.db()?;
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// `Store::delete_session`: the record, and with `purge` everything
    /// the session owns, in one write transaction.
    pub(super) async fn remove_session(&self, id: &SessionId, purge: bool) -> StoreResult<()> {
        let sid = id.to_string();
        self.blocking(Lane::Write, move |db| {
            // The outbox is keyed by event id alone: its events of this
            // session are found in a read first, so the write transaction
            // only deletes (the outbox stays small: published events are
            // pruned).
            let (events, deliveries) = if purge {
                (
                    session_event_ids(db, &sid)?,
                    webhooks::session_deliveries(db, &sid)?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            let txn = db.begin_write().db()?;
            txn.open_table(SESSIONS).db()?.remove(sid.as_str()).db()?;
            if purge {
                let s = sid.as_str();
                let above = format!("{s}\0");
                let n = above.as_str();
                purge_prefix!(txn, CHATS, (s, ""), (n, ""));
                purge_prefix!(txn, CHATS_BY_ACTIVITY, (s, 0u64, ""), (n, 0u64, ""));
                purge_prefix!(txn, MESSAGES, (s, "", 0u64, ""), (n, "", 0u64, ""));
                purge_prefix!(txn, MESSAGE_IDS, (s, ""), (n, ""));
                purge_prefix!(txn, PENDING_CHANGES, (s, ""), (n, ""));
                purge_prefix!(txn, QUARANTINE, (s, ""), (n, ""));
                contacts::purge(&txn, s, n)?;
                let mut ids = Vec::new();
                {
                    let by_session = txn.open_table(RUNS_BY_SESSION).db()?;
                    for row in by_session.range((s, 0u64, "")..).db()? {
                        let (k, _) = row.db()?;
                        let (ks, _, sync_id) = k.value();
                        if ks != s {
                            break;
                        }
                        ids.push(sync_id.to_owned());
                    }
                }
                purge_prefix!(txn, RUNS_BY_SESSION, (s, 0u64, ""), (n, 0u64, ""));
                let mut runs = txn.open_table(SYNC_RUNS).db()?;
                for id in &ids {
                    runs.remove(id.as_str()).db()?;
                }
                let mut outbox = txn.open_table(OUTBOX).db()?;
                let mut pending = txn.open_table(OUTBOX_PENDING).db()?;
                for e in &events {
                    outbox.remove(e.as_str()).db()?;
                    pending.remove(e.as_str()).db()?;
                }
                // Deliveries carry their event's data (message bodies
                // among it), whatever their status.
                webhooks::remove_deliveries(&txn, &deliveries)?;
            }
            txn.commit().db()
        })
        .await
    }
}

/// Ids of every outbox event of session `sid`.
fn session_event_ids(db: &Database, sid: &str) -> StoreResult<Vec<String>> {
    let txn = db.begin_read().db()?;
    let outbox = txn.open_table(OUTBOX).db()?;
    let mut out = Vec::new();
    for row in outbox.iter().db()? {
        let (k, v) = row.db()?;
        let ev: OutboxEvent = dec(v.value())?;
        if ev.session_id == sid {
            out.push(k.value().to_owned());
        }
    }
    Ok(out)
}
