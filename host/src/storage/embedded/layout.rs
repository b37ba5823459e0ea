//! Which layout a store file is in, and the migration to the current one.
//!
//! The layout's number is kept in the `meta` table (`layout` → 2). A file
//! without it is either new (no tables: it is given the current layout) or
//! was written before layouts were numbered (it has layout 1's `messages`
//! table, see [`super::legacy`]). Opening a store brings it to
//! [`LAYOUT`] before any call is served, and refuses a file of a newer
//! layout than this build knows, so an older wasync never misreads what a
//! newer one wrote.
//!
//! The migration from layout 1 moves messages in steps of
//! [`MIGRATE_STEP`]: each step is one write transaction that deletes a
//! batch from the old tables and writes it into the new ones, so a crash at
//! any point leaves every message in exactly one layout, and the next open
//! goes on where the last committed step ended. Memory stays bounded by one
//! step whatever the store's size. The last step drops the old tables and
//! records the new layout, in the same transaction. Counts need no
//! migration: a chat's `messageCount` lives on the chat, whose table keeps
//! its shape.

use redb::{Database, ReadableDatabase, ReadableTable, TableError};

use super::legacy;
use super::messages::insert_new;
use super::tables::*;
use crate::domain::Message;
use crate::storage::{StoreError, StoreResult};

/// The layout this build writes: 2, messages clustered by chat and time
/// (binary records) with a small id index.
pub(super) const LAYOUT: u64 = 2;

/// Messages moved per write transaction of the migration.
pub(super) const MIGRATE_STEP: usize = 10_000;

/// The key of the layout's number in `meta`.
const LAYOUT_KEY: &str = "layout";

/// The layout of the store file; `None` for a file without tables.
fn stored_layout(db: &Database) -> StoreResult<Option<u64>> {
    let txn = db.begin_read().db()?;
    match txn.open_table(META) {
        Ok(meta) => {
            if let Some(v) = meta.get(LAYOUT_KEY).db()? {
                return Ok(Some(v.value()));
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e).db(),
    }
    match txn.open_table(legacy::MESSAGES) {
        Ok(_) => Ok(Some(1)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e).db(),
    }
}

/// Brings the store file to [`LAYOUT`] (at open, before anything else).
pub(super) fn upgrade(db: &Database) -> StoreResult<()> {
    upgrade_with(db, MIGRATE_STEP, &mut |_| Ok(()))
}

/// [`upgrade`] in steps of `step` messages; `before_commit(n)` runs before
/// step `n` (from 0) commits, and an error from it abandons that step
/// uncommitted (the tests' crash).
pub(super) fn upgrade_with(
    db: &Database,
    step: usize,
    before_commit: &mut dyn FnMut(usize) -> StoreResult<()>,
) -> StoreResult<()> {
    match stored_layout(db)? {
        None => {
            let txn = db.begin_write().db()?;
            txn.open_table(META).db()?.insert(LAYOUT_KEY, LAYOUT).db()?;
            txn.commit().db()
        }
        Some(LAYOUT) => Ok(()),
        Some(1) => migrate_from_1(db, step, before_commit),
        Some(v) => Err(StoreError::Unavailable(format!(
            "the store file has layout {v}, newer than this build's {LAYOUT}: \
             it was written by a newer wasync; run that one (or a newer one)"
        ))),
    }
}

/// Moves layout 1's messages into layout 2's tables, `step` at a time.
fn migrate_from_1(
    db: &Database,
    step: usize,
    before_commit: &mut dyn FnMut(usize) -> StoreResult<()>,
) -> StoreResult<()> {
    let started = std::time::Instant::now();
    let mut moved = 0u64;
    let mut buf = Vec::new();
    for n in 0.. {
        let txn = db.begin_write().db()?;
        let batch = {
            let mut old = txn.open_table(legacy::MESSAGES).db()?;
            let mut old_index = txn.open_table(legacy::MESSAGES_BY_CHAT).db()?;
            let mut ids = txn.open_table(MESSAGE_IDS).db()?;
            let mut docs = txn.open_table(MESSAGES).db()?;
            let mut batch = Vec::with_capacity(step.min(1024));
            for row in old.iter().db()?.take(step) {
                let (k, v) = row.db()?;
                let (sid, mid) = k.value();
                batch.push((sid.to_owned(), mid.to_owned(), v.value().to_vec()));
            }
            for (sid, mid, json) in &batch {
                let mut m: Message = dec(json).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "cannot migrate message {mid} of session {sid}: {e}"
                    ))
                })?;
                // The key is the message's identity in layout 1.
                m.id.clone_from(mid);
                old.remove((sid.as_str(), mid.as_str())).db()?;
                old_index
                    .remove((
                        sid.as_str(),
                        m.chat_id.as_str(),
                        desc(Some(m.timestamp)),
                        mid.as_str(),
                    ))
                    .db()?;
                insert_new(&mut ids, &mut docs, sid, &m, &mut buf)?;
            }
            batch.len()
        };
        let done = batch < step;
        if done {
            txn.delete_table(legacy::MESSAGES).db()?;
            txn.delete_table(legacy::MESSAGES_BY_CHAT).db()?;
            txn.open_table(META).db()?.insert(LAYOUT_KEY, LAYOUT).db()?;
        }
        before_commit(n)?;
        txn.commit().db()?;
        moved += batch as u64;
        tracing::info!(
            moved,
            step = n,
            "embedded store: migrating messages to layout {LAYOUT}"
        );
        if done {
            break;
        }
    }
    tracing::info!(
        moved,
        ms = started.elapsed().as_millis() as u64,
        "embedded store: migrated to layout {LAYOUT}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use redb::{ReadableDatabase, ReadableTableMetadata, TableError};

    use super::super::tests::fixture_path;
    use super::super::{CACHE_BYTES, EmbeddedStore, fixture, legacy};
    use super::*;
    use crate::domain::{Message, SessionId};
    use crate::storage::Store;

    /// A copy of the checked-in layout-1 store in a temporary directory.
    fn layout1_copy() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasync.redb");
        std::fs::copy(fixture_path("redb"), &path).unwrap();
        (dir, path)
    }

    fn want() -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(fixture_path("json")).unwrap()).unwrap()
    }

    /// The layout number of the file at `path` and whether layout 1's
    /// tables are still there (the store must be closed).
    fn inspect(path: &Path) -> (Option<u64>, bool) {
        let db = Database::create(path).unwrap();
        let layout = stored_layout(&db).unwrap();
        let txn = db.begin_read().unwrap();
        let legacy = match txn.open_table(legacy::MESSAGES) {
            Ok(_) => true,
            Err(TableError::TableDoesNotExist(_)) => false,
            Err(e) => panic!("{e}"),
        };
        (layout, legacy)
    }

    /// A store written by layout 1 (the checked-in fixture, written by the
    /// code before layout 2) opens migrated and answers what layout 1
    /// answered, message for message; what it kept pending still lands.
    #[tokio::test]
    async fn a_layout_1_store_migrates_at_open() {
        let (_dir, path) = layout1_copy();
        assert_eq!(inspect(&path), (Some(1), true));
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(fixture::snapshot(&store).await, want());
        // The change kept pending in layout 1 applies when its message
        // comes.
        let s = SessionId::parse(fixture::SESSIONS[0]).unwrap();
        let m = fixture::waiting();
        let stats = store
            .put_messages(&s, std::slice::from_ref(&m))
            .await
            .unwrap();
        assert_eq!((stats.inserted, stats.changes_applied), (1, 1));
        let stored = store.get_message(&s, &m.id).await.unwrap().unwrap();
        assert_eq!(
            stored.message.body.as_deref(),
            Some("edited before it came")
        );
        drop(store);
        assert_eq!(inspect(&path), (Some(LAYOUT), false));
        // Opening again migrates nothing.
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.count_messages(&s, None).await.unwrap(), 20);
    }

    /// A migration stopped before one of its steps committed (the process
    /// killed) leaves a store that opens and migrates the rest, whichever
    /// step it was: the first, one in the middle, or the last (which drops
    /// the old tables and records the layout).
    #[tokio::test]
    async fn a_migration_stopped_midway_goes_on_at_the_next_open() {
        // 22 messages in steps of 4: steps 0..=5, the last one moves 2.
        for crash_at in [0, 2, 5] {
            let (_dir, path) = layout1_copy();
            let err = EmbeddedStore::open_upgraded(&path, CACHE_BYTES, |db| {
                upgrade_with(db, 4, &mut |n| {
                    if n == crash_at {
                        Err(StoreError::Backend("killed".into()))
                    } else {
                        Ok(())
                    }
                })
            })
            .unwrap_err();
            assert!(err.to_string().contains("killed"), "{err}");
            assert_eq!(
                inspect(&path),
                (Some(1), true),
                "stopped at step {crash_at}"
            );
            if crash_at > 0 {
                // The committed steps moved their messages: some are in
                // each layout now.
                let db = Database::create(&path).unwrap();
                let txn = db.begin_read().unwrap();
                let old = txn.open_table(legacy::MESSAGES).unwrap().len().unwrap();
                let new = txn.open_table(MESSAGE_IDS).unwrap().len().unwrap();
                assert_eq!((old, new), (22 - 4 * crash_at as u64, 4 * crash_at as u64));
            }
            let store = EmbeddedStore::open(&path).unwrap();
            assert_eq!(
                fixture::snapshot(&store).await,
                want(),
                "stopped at step {crash_at}"
            );
            drop(store);
            assert_eq!(inspect(&path), (Some(LAYOUT), false));
        }
    }

    /// More messages than one step, written the way layout 1 wrote them,
    /// all arrive, in each chat's order, with exact counts.
    #[tokio::test]
    async fn a_larger_layout_1_store_migrates_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasync.redb");
        let s = "big";
        let chats: Vec<String> = (0..25).map(|c| format!("49{c:03}@c.us")).collect();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            for (c, chat) in chats.iter().enumerate() {
                for n in 0..100i64 {
                    let mut m = crate::storage::contract::msg(chat, n);
                    // Two messages per second: ties broken by id.
                    m.timestamp = 1_700_000_000_000 + (n / 2) * 1000 + c as i64;
                    legacy::put(&txn, s, &m).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open_upgraded(&path, CACHE_BYTES, |db| {
            upgrade_with(db, 1_000, &mut |_| Ok(()))
        })
        .unwrap();
        let sid = SessionId::parse(s).unwrap();
        assert_eq!(store.count_messages(&sid, None).await.unwrap(), 2_500);
        for chat in &chats {
            let listed = store.list_messages(&sid, chat, 1_000, None).await.unwrap();
            assert_eq!(listed.len(), 100);
            let mut want: Vec<Message> = (0..100i64)
                .map(|n| {
                    let mut m = crate::storage::contract::msg(chat, n);
                    let c: i64 = chat[2..5].parse().unwrap();
                    m.timestamp = 1_700_000_000_000 + (n / 2) * 1000 + c;
                    m
                })
                .collect();
            want.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(a.id.cmp(&b.id)));
            let got: Vec<Message> = listed.into_iter().map(|m| m.message).collect();
            assert_eq!(got, want);
        }
    }

    /// A file of a newer layout is refused, untouched; a new file gets the
    /// current layout.
    #[tokio::test]
    async fn a_newer_layout_is_refused_and_a_new_file_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasync.redb");
        drop(EmbeddedStore::open(&path).unwrap());
        assert_eq!(inspect(&path), (Some(LAYOUT), false));
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(LAYOUT_KEY, LAYOUT + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = EmbeddedStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
        assert_eq!(inspect(&path), (Some(LAYOUT + 1), false));
    }
}
