//! Sync runs and the outbox in the embedded store: JSON documents by id,
//! with `sync_runs_by_session` for a session's runs and `outbox_pending`
//! for the events not yet published.

use std::borrow::Cow;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::tables::*;
use super::writes::{EncodedEvent, put_event, put_run};
use super::{EmbeddedStore, Lane};
use crate::domain::{OutboxEvent, SessionId, SyncRun};
use crate::storage::{StoreError, StoreResult};

/// A stored [`OutboxEvent`] with its `data` left as the JSON it is stored
/// as: counting an attempt rewrites two numbers, and does not decode and
/// encode the event's body (a `session_ready` of 10,000 chats is ~250 KB).
/// Its fields are the event's, in its order (a unit test holds them equal).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEvent<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    pattern: Cow<'a, str>,
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
    created_at: i64,
    published_at: Option<i64>,
    attempts: u32,
}

/// The stored event `bytes` with one more attempt, published at `at` if
/// given.
fn count_attempt(bytes: &[u8], at: Option<i64>) -> StoreResult<Vec<u8>> {
    let mut ev: StoredEvent =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))?;
    if at.is_some() {
        ev.published_at = at;
    }
    ev.attempts += 1;
    enc(&ev)
}

impl EmbeddedStore {
    /// `Store::put_sync_run`.
    pub(super) async fn put_run(&self, run: &SyncRun) -> StoreResult<()> {
        let run = run.clone();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_run(&txn, &run)?;
            txn.commit().db()
        })
        .await
    }

    /// `Store::get_sync_run`.
    pub(super) async fn run(&self, sync_id: &str) -> StoreResult<Option<SyncRun>> {
        let sync_id = sync_id.to_owned();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let t = txn.open_table(SYNC_RUNS).db()?;
            t.get(sync_id.as_str())
                .db()?
                .map(|g| dec(g.value()))
                .transpose()
        })
        .await
    }

    /// `Store::latest_sync_run`: the session's last run by start time.
    pub(super) async fn latest_run(&self, id: &SessionId) -> StoreResult<Option<SyncRun>> {
        let sid = id.to_string();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let by_session = txn.open_table(RUNS_BY_SESSION).db()?;
            let runs = txn.open_table(SYNC_RUNS).db()?;
            let s = sid.as_str();
            let mut last: Option<String> = None;
            for row in by_session.range((s, 0u64, "")..).db()? {
                let (k, _) = row.db()?;
                let (ks, _, sync_id) = k.value();
                if ks != s {
                    break;
                }
                last = Some(sync_id.to_owned());
            }
            match last {
                Some(id) => runs
                    .get(id.as_str())
                    .db()?
                    .map(|g| dec(g.value()))
                    .transpose(),
                None => Ok(None),
            }
        })
        .await
    }

    /// `Store::finish_sync`: the run and its events in one transaction.
    pub(super) async fn finish_run(
        &self,
        run: &SyncRun,
        events: &[OutboxEvent],
    ) -> StoreResult<()> {
        let run = run.clone();
        let events = events
            .iter()
            .map(EncodedEvent::new)
            .collect::<StoreResult<Vec<_>>>()?;
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_run(&txn, &run)?;
            for ev in &events {
                put_event(&txn, ev)?;
            }
            txn.commit().db()
        })
        .await
    }

    /// `Store::enqueue_event`.
    pub(super) async fn enqueue(&self, event: &OutboxEvent) -> StoreResult<()> {
        let event = EncodedEvent::new(event)?;
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            put_event(&txn, &event)?;
            txn.commit().db()
        })
        .await
    }

    /// `Store::pending_events`: oldest first (event ids sort by time).
    pub(super) async fn pending(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let pending = txn.open_table(OUTBOX_PENDING).db()?;
            let outbox = txn.open_table(OUTBOX).db()?;
            let mut out = Vec::new();
            for row in pending.iter().db()? {
                if out.len() as u32 >= limit {
                    break;
                }
                let (k, _) = row.db()?;
                if let Some(g) = outbox.get(k.value()).db()? {
                    out.push(dec(g.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// `Store::count_pending_events`.
    pub(super) async fn count_pending(&self) -> StoreResult<u64> {
        self.blocking(Lane::Read, |db| {
            let txn = db.begin_read().db()?;
            txn.open_table(OUTBOX_PENDING).db()?.len().db()
        })
        .await
    }

    /// `Store::mark_published` (`at: Some`) and `Store::record_attempt`
    /// (`None`): each counts an attempt; a publish also leaves the pending
    /// set.
    pub(super) async fn attempted(&self, event_ids: &[String], at: Option<i64>) -> StoreResult<()> {
        let ids = event_ids.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            {
                let mut outbox = txn.open_table(OUTBOX).db()?;
                let mut pending = txn.open_table(OUTBOX_PENDING).db()?;
                for id in &ids {
                    let old = outbox.get(id.as_str()).db()?.map(|g| g.value().to_vec());
                    if let Some(old) = old {
                        let new = count_attempt(&old, at)?;
                        outbox.insert(id.as_str(), new.as_slice()).db()?;
                    }
                    if at.is_some() {
                        pending.remove(id.as_str()).db()?;
                    }
                }
            }
            txn.commit().db()
        })
        .await
    }

    /// `Store::session_events`.
    pub(super) async fn events_of(&self, id: &SessionId) -> StoreResult<Vec<OutboxEvent>> {
        let sid = id.to_string();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let outbox = txn.open_table(OUTBOX).db()?;
            let mut out = Vec::new();
            for row in outbox.iter().db()? {
                let (_, v) = row.db()?;
                let ev: OutboxEvent = dec(v.value())?;
                if ev.session_id == sid {
                    out.push(ev);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_counted_without_touching_the_body() {
        let sid = SessionId::parse("s1").unwrap();
        let ev = OutboxEvent::new(
            "session_ready",
            &sid,
            serde_json::json!({"chats": ["1@c.us", "a\"b\\c"], "n": 2, "nested": {"x": [1.5, null]}}),
        );
        // `StoredEvent` mirrors every field: a field added to the event
        // stops this from compiling until the mirror has it too.
        let OutboxEvent {
            event_id: _,
            pattern: _,
            session_id: _,
            data: _,
            created_at: _,
            published_at: _,
            attempts: _,
        } = &ev;
        let stored = enc(&ev).unwrap();
        // Not yet published: one attempt, still pending.
        let tried: OutboxEvent = dec(&count_attempt(&stored, None).unwrap()).unwrap();
        assert_eq!(
            tried,
            OutboxEvent {
                attempts: 1,
                ..ev.clone()
            }
        );
        // Published: the time and a second attempt, byte for byte what the
        // event itself encodes to (no field missed, none renamed, the body
        // as it was).
        let published = count_attempt(&enc(&tried).unwrap(), Some(42)).unwrap();
        let expected = OutboxEvent {
            attempts: 2,
            published_at: Some(42),
            ..ev
        };
        assert_eq!(published, enc(&expected).unwrap());
    }

    #[test]
    fn a_record_that_is_not_an_event_is_corrupt() {
        for bad in [&b"[]"[..], b"{}", b"not json", b""] {
            let err = count_attempt(bad, None).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        }
    }
}
