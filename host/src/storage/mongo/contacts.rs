//! Contacts and group members in MongoDB.
//!
//! `contacts` holds one document per `(sessionId, contactId)` (a unique
//! index), with the contact's `lid` indexed beside it, so an author named
//! by its `@lid` finds the same contact as its phone-number id in one
//! indexed read. Group members are an array on the group's `chats`
//! document, set by the contacts phase of a sync.

use futures_util::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};

use super::schema::{CHATS, CONTACTS};
use super::unchanged::same_fields;
use super::{MongoStore, map_err};
use crate::domain::{Contact, GroupParticipants, SessionId, StoredContact};
use crate::storage::{StoreError, StoreResult};

/// A `contacts` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContactDoc {
    session_id: String,
    contact_id: String,
    name: Option<String>,
    pushname: Option<String>,
    number: Option<String>,
    #[serde(default)]
    is_business: bool,
    lid: Option<String>,
}

impl ContactDoc {
    fn into_stored(self) -> StoredContact {
        StoredContact {
            session_id: self.session_id,
            contact: Contact {
                id: self.contact_id,
                name: self.name,
                pushname: self.pushname,
                number: self.number,
                is_business: self.is_business,
                lid: self.lid,
            },
        }
    }
}

/// The fields an upsert sets: everything the provider reports.
fn fields(c: &Contact) -> Document {
    doc! {
        "name": c.name.clone(),
        "pushname": c.pushname.clone(),
        "number": c.number.clone(),
        "isBusiness": c.is_business,
        "lid": c.lid.clone(),
    }
}

impl MongoStore {
    fn contacts(&self) -> Collection<ContactDoc> {
        self.database().collection(CONTACTS)
    }

    pub(super) async fn upsert_contacts_impl(
        &self,
        id: &SessionId,
        contacts: &[Contact],
    ) -> StoreResult<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        let sid = id.as_str();
        // Only what differs from the stored contacts is written (see
        // `unchanged`); the same read finds the `@lid` documents to retire.
        let keys: Vec<String> = fields(&contacts[0]).keys().cloned().collect();
        let stored = self
            .stored_fields(CONTACTS, sid, "contactId", &keys)
            .await?;
        let wanted: Vec<(&str, Document)> = contacts
            .iter()
            .map(|c| (c.id.as_str(), fields(c)))
            .collect();
        self.write_differing(
            CONTACTS,
            (sid, "contactId"),
            &stored,
            wanted,
            &Document::new(),
        )
        .await?;
        // A person stored by their `@lid` before their number was known is
        // replaced by the contact that carries that lid (after it is
        // written, so a failure between the two loses nobody).
        let lids: Vec<&str> = contacts
            .iter()
            .filter_map(|c| c.lid.as_deref().filter(|l| *l != c.id))
            .filter(|l| stored.contains_key(*l))
            .collect();
        if !lids.is_empty() {
            self.contacts()
                .delete_many(doc! { "sessionId": sid, "contactId": { "$in": lids } })
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    pub(super) async fn list_contacts_impl(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<StoredContact>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "sessionId": id.as_str() };
        if let Some(a) = after {
            filter.insert("contactId", doc! { "$gt": a });
        }
        let docs: Vec<ContactDoc> = self
            .contacts()
            .find(filter)
            .sort(doc! { "contactId": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        Ok(docs.into_iter().map(ContactDoc::into_stored).collect())
    }

    pub(super) async fn find_contact_impl(
        &self,
        id: &SessionId,
        contact_id: &str,
    ) -> StoreResult<Option<StoredContact>> {
        let sid = id.as_str();
        if let Some(d) = self
            .contacts()
            .find_one(doc! { "sessionId": sid, "contactId": contact_id })
            .await
            .map_err(map_err)?
        {
            return Ok(Some(d.into_stored()));
        }
        Ok(self
            .contacts()
            .find_one(doc! { "sessionId": sid, "lid": contact_id })
            .await
            .map_err(map_err)?
            .map(ContactDoc::into_stored))
    }

    pub(super) async fn count_contacts_impl(&self, id: &SessionId) -> StoreResult<u64> {
        self.contacts()
            .count_documents(doc! { "sessionId": id.as_str() })
            .await
            .map_err(map_err)
    }

    pub(super) async fn put_participants_impl(
        &self,
        id: &SessionId,
        groups: &[GroupParticipants],
    ) -> StoreResult<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let sid = id.as_str();
        let stored = self
            .stored_fields(CHATS, sid, "chatId", &["participants".to_owned()])
            .await?;
        let mut statements = Vec::with_capacity(groups.len());
        for g in groups {
            let members = mongodb::bson::to_bson(&g.participants)
                .map_err(|e| StoreError::Backend(format!("encode participants: {e}")))?;
            let set = doc! { "participants": members };
            // Members that are stored already are not written again.
            if stored
                .get(&g.chat_id)
                .is_some_and(|have| same_fields(&set, have))
            {
                continue;
            }
            statements.push(doc! {
                "q": { "sessionId": sid, "chatId": &g.chat_id },
                "u": { "$set": set },
            });
        }
        if statements.is_empty() {
            return Ok(());
        }
        let reply = self.update_statements(CHATS, statements, false).await?;
        match reply.write_errors.first() {
            None => Ok(()),
            Some((_, code, msg)) => Err(StoreError::Backend(format!(
                "setting group members failed ({code}): {msg}"
            ))),
        }
    }
}
