//! Connecting: the URI's options with the store's defaults and durable
//! write concern, the database name checked up front, and the collections
//! and indexes made sure of on every start.

use std::collections::HashSet;

use mongodb::Client;
use mongodb::bson::Document;
use mongodb::error::ErrorKind;
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};

use super::commands::{DUPLICATE_KEY, command_code, map_err};
use super::schema::{self, CHATS, COLLECTIONS, MESSAGES, OUTBOX, QUARANTINE, SESSIONS, SYNC_RUNS};
use super::{MongoOptions, MongoStore, counts};
use crate::storage::{StoreError, StoreResult};

const NAMESPACE_EXISTS: i32 = 48;
const INDEX_OPTIONS_CONFLICT: i32 = 85;
const INDEX_KEY_SPECS_CONFLICT: i32 = 86;

/// MongoDB's rules for database names, checked up front so a bad
/// `MONGODB_DB` is a clear start-up error rather than a driver message.
fn validate_db_name(name: &str) -> StoreResult<()> {
    if name.is_empty() || name.len() > 63 {
        return Err(StoreError::Backend(format!(
            "invalid MongoDB database name {name:?}: must be 1 to 63 bytes"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'))
    {
        return Err(StoreError::Backend(format!(
            "invalid MongoDB database name {name:?}: it must not contain {bad:?}"
        )));
    }
    Ok(())
}

/// The durability the port promises, or the URI's own choice if it made
/// one that still waits for an acknowledgement.
fn durable_write_concern(from_uri: Option<WriteConcern>) -> StoreResult<WriteConcern> {
    let mut wc = from_uri.unwrap_or_default();
    if wc.w == Some(Acknowledgment::Nodes(0)) {
        return Err(StoreError::Backend(
            "MONGODB_URI asks for w=0 (unacknowledged writes); wasync needs acknowledged, \
             journaled writes to report only durable data"
                .into(),
        ));
    }
    if wc.w.is_none() {
        wc.w = Some(Acknowledgment::Majority);
    }
    if wc.journal.is_none() {
        wc.journal = Some(true);
    }
    Ok(wc)
}

impl MongoStore {
    /// Connects with default [`MongoOptions`] and makes sure the collections
    /// and indexes of DESIGN §6 exist (idempotent).
    ///
    /// Fails with `Unavailable` if the server cannot be reached within the
    /// server-selection timeout, and with a message naming the collection if
    /// a unique index cannot be built because the data already holds
    /// duplicates.
    pub async fn connect(uri: &str, db: &str) -> StoreResult<Self> {
        Self::connect_with(uri, db, MongoOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit options.
    pub async fn connect_with(uri: &str, db: &str, options: MongoOptions) -> StoreResult<Self> {
        validate_db_name(db)?;
        let mut opts = ClientOptions::parse(uri)
            .await
            .map_err(|e| match e.kind.as_ref() {
                ErrorKind::DnsResolve { .. } => {
                    StoreError::Unavailable(format!("cannot resolve MONGODB_URI: {e}"))
                }
                _ => StoreError::Backend(format!("invalid MONGODB_URI: {e}")),
            })?;
        opts.server_selection_timeout
            .get_or_insert(options.server_selection_timeout);
        opts.connect_timeout.get_or_insert(options.connect_timeout);
        opts.app_name.get_or_insert_with(|| "wasync".to_owned());
        let wc = durable_write_concern(opts.write_concern.take())?;
        opts.write_concern = Some(wc.clone());
        let write_concern = mongodb::bson::to_document(&wc)
            .map_err(|e| StoreError::Backend(format!("encode write concern: {e}")))?;
        let client = Client::with_options(opts)
            .map_err(|e| StoreError::Backend(format!("invalid MONGODB_URI: {e}")))?;
        let db = client.database(db);
        let mut store = Self {
            sessions: db.collection(SESSIONS),
            chats: db.collection(CHATS),
            messages: db.collection(MESSAGES),
            runs: db.collection(SYNC_RUNS),
            outbox: db.collection(OUTBOX),
            quarantine: db.collection(QUARANTINE),
            webhooks: db.collection(schema::WEBHOOKS),
            deliveries: db.collection(schema::WEBHOOK_DELIVERIES),
            pending: db.collection(schema::PENDING_CHANGES),
            chat_locks: counts::ChatLocks::default(),
            exact_modified_counts: false,
            write_concern,
            db,
        };
        store.ensure_schema().await?;
        if !options.read_back_every_write {
            store.exact_modified_counts = store.counts_only_changed_documents().await;
        }
        Ok(store)
    }

    /// Creates missing collections and indexes. Creating what exists is a
    /// no-op on the server, so every start runs it.
    pub(super) async fn ensure_schema(&self) -> StoreResult<()> {
        let existing: HashSet<String> = self
            .db
            .list_collection_names()
            .await
            .map_err(map_err)?
            .into_iter()
            .collect();
        for name in COLLECTIONS {
            if existing.contains(name) {
                continue;
            }
            if let Err(e) = self.db.create_collection(name).await
                && command_code(&e) != Some(NAMESPACE_EXISTS)
            {
                return Err(map_err(e));
            }
        }
        for (collection, name) in schema::RETIRED_INDEXES {
            // Absent (a new database, or dropped already) is the goal.
            let _ = self
                .db
                .collection::<Document>(collection)
                .drop_index(*name)
                .await;
        }
        for spec in schema::indexes() {
            let coll = self.db.collection::<Document>(spec.collection);
            if let Err(e) = coll.create_index(spec.model()).await {
                return Err(match command_code(&e) {
                    Some(DUPLICATE_KEY) => StoreError::Corrupt(format!(
                        "cannot build the unique index {} on collection `{}`: the collection \
                         already holds documents with the same {}; remove the duplicates and \
                         start again ({e})",
                        spec.name, spec.collection, spec.keys
                    )),
                    Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT) => {
                        StoreError::Corrupt(format!(
                            "collection `{}` already has an index that conflicts with {} {} \
                             (unique: {}); drop it and start again ({e})",
                            spec.collection, spec.name, spec.keys, spec.unique
                        ))
                    }
                    _ => map_err(e),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_checked() {
        assert!(validate_db_name("wasync").is_ok());
        assert!(validate_db_name("wasync_test-1").is_ok());
        for bad in ["", "a.b", "a/b", "a b", "a$b", &"x".repeat(64)] {
            let err = validate_db_name(bad).unwrap_err();
            assert!(err.to_string().contains("database name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn write_concern_is_durable_unless_the_uri_says_otherwise() {
        let wc = durable_write_concern(None).unwrap();
        assert_eq!(wc.w, Some(Acknowledgment::Majority));
        assert_eq!(wc.journal, Some(true));
        let wc = durable_write_concern(Some(WriteConcern::nodes(1))).unwrap();
        assert_eq!(wc.w, Some(Acknowledgment::Nodes(1)));
        assert_eq!(wc.journal, Some(true));
        assert!(durable_write_concern(Some(WriteConcern::nodes(0))).is_err());
    }

    #[tokio::test]
    async fn a_bad_uri_is_a_clear_error() {
        let err = MongoStore::connect("http://nope", "wasync")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid MONGODB_URI"), "{err}");
    }
}
