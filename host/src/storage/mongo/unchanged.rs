//! Writes that leave alone what is stored already.
//!
//! A sync stores the provider's whole chat list, address book and group
//! members on every run, and most of it has not changed since the last
//! one. A durable upsert per document costs the server a journaled write
//! each; one read of the session's documents (the fields the write would
//! set, nothing else) costs a fraction of that. So those writes read
//! first and send only the documents that differ: a re-sync of an
//! unchanged account writes none of them.
//!
//! A concurrent writer that changes a document between the read and the
//! (skipped) write is no different from one that writes just after this
//! write: the later write wins either way.
//!
//! The same read tells which documents are not stored at all (every one,
//! on a first sync). Those are inserted, not upserted: an insert has no
//! query to run before it writes, and on the test server it costs a
//! fraction of an upsert (1,000 chats: 0.2–0.4 s against 1.3–1.5 s). A
//! document another writer created between the read and the insert
//! fails the insert on the unique key and is upserted instead, so what is
//! stored is what the upserts alone would store.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::{MongoStore, duplicate_indexes, map_err};
use crate::storage::StoreResult;

impl MongoStore {
    /// `fields` of every document of session `sid` in `collection`, by the
    /// value of its `key` field.
    pub(super) async fn stored_fields(
        &self,
        collection: &str,
        sid: &str,
        key: &str,
        fields: &[String],
    ) -> StoreResult<HashMap<String, Document>> {
        let mut projection = doc! { "_id": 0, key: 1 };
        for f in fields {
            projection.insert(f.as_str(), 1);
        }
        let mut cursor = self
            .database()
            .collection::<Document>(collection)
            .find(doc! { "sessionId": sid })
            .projection(projection)
            .await
            .map_err(map_err)?;
        let mut out = HashMap::new();
        while let Some(mut d) = cursor.try_next().await.map_err(map_err)? {
            if let Some(Bson::String(k)) = d.remove(key) {
                out.insert(k, d);
            }
        }
        Ok(out)
    }

    /// Writes the documents of session `sid` in `collection` whose `fields`
    /// (by the value of their `key`) differ from `stored` (what
    /// [`Self::stored_fields`] read): the absent ones inserted, with
    /// `created` (the fields a new document starts with), the changed
    /// ones upserted, the others left alone (see the module docs).
    pub(super) async fn write_differing(
        &self,
        collection: &str,
        (sid, key): (&str, &str),
        stored: &HashMap<String, Document>,
        fields: Vec<(&str, Document)>,
        created: &Document,
    ) -> StoreResult<()> {
        let (mut absent, mut changed) = (Vec::new(), Vec::new());
        for (id, set) in fields {
            let have = stored.get(id);
            if have.is_some_and(|have| same_fields(&set, have)) {
                continue;
            }
            let mut update = doc! { "$set": &set };
            if !created.is_empty() {
                update.insert("$setOnInsert", created.clone());
            }
            let upsert = doc! {
                "q": { "sessionId": sid, key: id },
                "u": update,
                "upsert": true,
            };
            if have.is_some() {
                changed.push(upsert);
                continue;
            }
            let mut document = doc! { "sessionId": sid, key: id };
            document.extend(set);
            document.extend(created.clone());
            absent.push((document, upsert));
        }
        self.insert_absent(collection, absent).await?;
        if changed.is_empty() {
            return Ok(());
        }
        self.upsert_statements(collection, changed).await
    }

    /// Inserts `absent` (each a new document and its upsert) into
    /// `collection` with one unordered insert; the ones another writer
    /// stored meanwhile (a duplicate key) run their upserts instead.
    async fn insert_absent(
        &self,
        collection: &str,
        absent: Vec<(Document, Document)>,
    ) -> StoreResult<()> {
        if absent.is_empty() {
            return Ok(());
        }
        let (documents, upserts): (Vec<Document>, Vec<Document>) = absent.into_iter().unzip();
        let taken = duplicate_indexes(
            collection,
            self.database()
                .collection::<Document>(collection)
                .insert_many(documents)
                .ordered(false)
                .await,
        )?;
        let again: Vec<Document> = taken
            .into_iter()
            .filter_map(|i| upserts.get(i).cloned())
            .collect();
        self.upsert_statements(collection, again).await
    }
}

/// Whether the stored document `have` holds every field of `set` with the
/// same value (a field missing from `have` equals null).
pub(super) fn same_fields(set: &Document, have: &Document) -> bool {
    set.iter()
        .all(|(k, v)| have.get(k).unwrap_or(&Bson::Null) == v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_compare_with_missing_as_null() {
        let set = doc! { "name": Bson::Null, "pinned": true };
        assert!(same_fields(&set, &doc! { "pinned": true }));
        assert!(!same_fields(&set, &doc! { "pinned": false }));
        assert!(!same_fields(&set, &doc! { "name": "x", "pinned": true }));
        let members = doc! { "participants": [ { "id": "a", "isAdmin": true } ] };
        assert!(same_fields(&members, &members.clone()));
        assert!(!same_fields(
            &members,
            &doc! { "participants": [ { "id": "a", "isAdmin": false } ] }
        ));
    }
}
