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

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::{MongoStore, map_err};
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
