//! Contacts and group members in the embedded store.
//!
//! A contact is one JSON document under `(sessionId, contactId)`; a second
//! table maps `(sessionId, lid)` to the contact id, so a message author
//! named by its `@lid` finds the same contact as its phone-number id.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::tables::{DbResult, dec, enc, page_after};
use super::{CHATS, EmbeddedStore, Lane};
use crate::domain::{Contact, GroupParticipants, SessionId, StoredChat, StoredContact};
use crate::storage::StoreResult;

/// `(sessionId, contactId)` → stored contact.
pub(super) const CONTACTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("contacts");
/// `(sessionId, lid)` → contact id.
pub(super) const CONTACT_LIDS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("contact_lids");

/// Creates the tables (at open).
pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(CONTACTS).db()?;
    txn.open_table(CONTACT_LIDS).db()?;
    Ok(())
}

/// Deletes the contacts of session `s` (inside its purge); `n` is
/// `"<s>\0"`, the least key above the session's.
pub(super) fn purge(txn: &WriteTransaction, s: &str, n: &str) -> StoreResult<()> {
    txn.open_table(CONTACTS)
        .db()?
        .retain_in((s, "")..(n, ""), |_, _| false)
        .db()?;
    txn.open_table(CONTACT_LIDS)
        .db()?
        .retain_in((s, "")..(n, ""), |_, _| false)
        .db()?;
    Ok(())
}

fn get(db: &Database, sid: &str, contact_id: &str) -> StoreResult<Option<StoredContact>> {
    let txn = db.begin_read().db()?;
    let contacts = txn.open_table(CONTACTS).db()?;
    if let Some(g) = contacts.get((sid, contact_id)).db()? {
        return dec(g.value()).map(Some);
    }
    let lids = txn.open_table(CONTACT_LIDS).db()?;
    let Some(owner) = lids.get((sid, contact_id)).db()? else {
        return Ok(None);
    };
    contacts
        .get((sid, owner.value()))
        .db()?
        .map(|g| dec(g.value()))
        .transpose()
}

impl EmbeddedStore {
    pub(super) async fn upsert_contacts_impl(
        &self,
        id: &SessionId,
        contacts: &[Contact],
    ) -> StoreResult<()> {
        let sid = id.to_string();
        let contacts = contacts.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            // An unchanged address book changes nothing: no fsync.
            let mut changed = false;
            {
                let mut table = txn.open_table(CONTACTS).db()?;
                let mut lids = txn.open_table(CONTACT_LIDS).db()?;
                let s = sid.as_str();
                for contact in contacts {
                    let old: Option<StoredContact> = table
                        .get((s, contact.id.as_str()))
                        .db()?
                        .map(|g| dec(g.value()))
                        .transpose()?;
                    if old.as_ref().is_some_and(|o| o.contact == contact) {
                        continue;
                    }
                    changed = true;
                    if let Some(old_lid) = old.and_then(|o| o.contact.lid) {
                        lids.remove((s, old_lid.as_str())).db()?;
                    }
                    if let Some(lid) = contact.lid.as_deref().filter(|l| *l != contact.id) {
                        // The person was stored by their `@lid` before the
                        // number was known: this contact replaces that one.
                        table.remove((s, lid)).db()?;
                        lids.insert((s, lid), contact.id.as_str()).db()?;
                    }
                    let stored = StoredContact {
                        session_id: sid.clone(),
                        contact,
                    };
                    table
                        .insert((s, stored.contact.id.as_str()), enc(&stored)?.as_slice())
                        .db()?;
                }
            }
            if changed {
                txn.commit().db()
            } else {
                txn.abort().db()
            }
        })
        .await
    }

    pub(super) async fn list_contacts_impl(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<StoredContact>> {
        let sid = id.to_string();
        let after = after.map(str::to_owned);
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            page_after(&txn, CONTACTS, &sid, limit, after.as_deref())
        })
        .await
    }

    pub(super) async fn find_contact_impl(
        &self,
        id: &SessionId,
        contact_id: &str,
    ) -> StoreResult<Option<StoredContact>> {
        let sid = id.to_string();
        let contact_id = contact_id.to_owned();
        self.blocking(Lane::Read, move |db| get(db, &sid, &contact_id))
            .await
    }

    pub(super) async fn count_contacts_impl(&self, id: &SessionId) -> StoreResult<u64> {
        let sid = id.to_string();
        self.blocking(Lane::Read, move |db| {
            let txn = db.begin_read().db()?;
            let table = txn.open_table(CONTACTS).db()?;
            let s = sid.as_str();
            let above = format!("{s}\0");
            let mut n = 0;
            for row in table.range((s, "")..(above.as_str(), "")).db()? {
                row.db()?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    pub(super) async fn put_participants_impl(
        &self,
        id: &SessionId,
        groups: &[GroupParticipants],
    ) -> StoreResult<()> {
        let sid = id.to_string();
        let groups = groups.to_vec();
        self.blocking(Lane::Write, move |db| {
            let txn = db.begin_write().db()?;
            let mut changed = false;
            {
                let mut chats = txn.open_table(CHATS).db()?;
                for g in groups {
                    let key = (sid.as_str(), g.chat_id.as_str());
                    let Some(mut chat) = chats
                        .get(key)
                        .db()?
                        .map(|v| dec::<StoredChat>(v.value()))
                        .transpose()?
                    else {
                        continue;
                    };
                    if chat.participants == g.participants {
                        continue;
                    }
                    changed = true;
                    chat.participants = g.participants;
                    chats.insert(key, enc(&chat)?.as_slice()).db()?;
                }
            }
            if changed {
                txn.commit().db()
            } else {
                txn.abort().db()
            }
        })
        .await
    }
}
