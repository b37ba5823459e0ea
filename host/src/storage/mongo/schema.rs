//! The MongoDB schema (DESIGN §6): collection names, indexes, and the
//! mapping between domain types and stored documents.
//!
//! Field names are the camelCase of the API, so the AI service and ad-hoc
//! shell queries read the same names the REST API returns. Instants the
//! domain keeps as epoch milliseconds are stored as BSON dates, so range
//! queries, TTL indexes and `$dateToString` work on them in the database;
//! a BSON date is itself milliseconds since the epoch, so the round trip is
//! exact. Counters and enums keep their plain JSON shape.
//!
//! Messages and chats (the hot path) have typed mirror structs the driver
//! encodes directly into BSON, with no intermediate `Document`. The
//! low-volume collections (sessions, runs, outbox, quarantine) go through
//! the domain type's own serde shape with the date fields swapped in, so a
//! field added to the domain type is stored without touching this file.

use std::collections::BTreeMap;

use mongodb::IndexModel;
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use mongodb::options::IndexOptions;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::{
    ChangeState, Chat, Message, Participant, Reaction, RemovedReaction, StoredChat, StoredMessage,
};
use crate::storage::{StoreError, StoreResult};

pub const SESSIONS: &str = "sessions";
pub const CHATS: &str = "chats";
pub const MESSAGES: &str = "messages";
pub const SYNC_RUNS: &str = "sync_runs";
pub const OUTBOX: &str = "outbox";
pub const QUARANTINE: &str = "quarantine";
pub const WEBHOOKS: &str = "webhooks";
pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries";
/// Changes of messages not stored yet (see `Store::apply_changes`).
pub const PENDING_CHANGES: &str = "pending_changes";
pub const CONTACTS: &str = "contacts";

/// Every collection the store creates at start.
pub const COLLECTIONS: [&str; 10] = [
    SESSIONS,
    CHATS,
    MESSAGES,
    SYNC_RUNS,
    OUTBOX,
    QUARANTINE,
    WEBHOOKS,
    WEBHOOK_DELIVERIES,
    PENDING_CHANGES,
    CONTACTS,
];

/// Date fields of each low-volume collection (top level of the document).
pub const SESSION_DATES: &[&str] = &["createdAt", "updatedAt"];
pub const RUN_DATES: &[&str] = &["startedAt", "finishedAt"];
pub const OUTBOX_DATES: &[&str] = &["createdAt", "publishedAt"];
pub const QUARANTINE_DATES: &[&str] = &["quarantinedAt"];
pub const WEBHOOK_DATES: &[&str] = &["createdAt"];
pub const DELIVERY_DATES: &[&str] = &[
    "createdAt",
    "queuedAt",
    "nextAttemptAt",
    "lastAttemptAt",
    "finishedAt",
];

/// One index the store maintains: its collection, name, keys and whether it
/// is unique. Names are fixed so a start-up can tell "already there" from
/// "something else is in the way".
#[derive(Debug, Clone)]
pub struct IndexSpec {
    pub collection: &'static str,
    pub name: &'static str,
    pub keys: Document,
    pub unique: bool,
}

impl IndexSpec {
    pub fn model(&self) -> IndexModel {
        IndexModel::builder()
            .keys(self.keys.clone())
            .options(
                IndexOptions::builder()
                    .name(self.name.to_owned())
                    .unique(self.unique.then_some(true))
                    .build(),
            )
            .build()
    }
}

/// The indexes of DESIGN §6 (beyond each collection's `_id`).
///
/// Two small additions over the table, both to keep reads on an index:
/// `chats` sorts ties of `lastMessageAt` by `chatId`, so that key ends the
/// activity index and the paging cursor can seek on it; `outbox` has a
/// `(sessionId, createdAt)` index for a session's event history.
/// Indexes earlier versions made that the current schema replaced:
/// dropped at start (`(collection, name)`).
pub const RETIRED_INDEXES: &[(&str, &str)] = &[
    // Replaced by `session_chat_time_id`, whose message id orders a burst of
    // one second the way the paging cursor needs.
    (MESSAGES, "session_chat_time"),
    // The conditional rewrite once matched `(sessionId, messageId, rev)`;
    // the unique `(sessionId, messageId)` index already pins one document,
    // so this index only cost every insert a fourth index entry (about a
    // fifth of SecantusDB's CPU per inserted message, BENCHMARKS P1).
    (MESSAGES, "session_message_rev"),
];

pub fn indexes() -> Vec<IndexSpec> {
    vec![
        IndexSpec {
            collection: CHATS,
            name: "uniq_session_chat",
            keys: doc! { "sessionId": 1, "chatId": 1 },
            unique: true,
        },
        IndexSpec {
            collection: CHATS,
            name: "session_activity",
            keys: doc! { "sessionId": 1, "lastMessageAt": -1, "chatId": 1 },
            unique: false,
        },
        IndexSpec {
            collection: MESSAGES,
            name: "uniq_session_message",
            keys: doc! { "sessionId": 1, "messageId": 1 },
            unique: true,
        },
        IndexSpec {
            collection: MESSAGES,
            name: "session_chat_time_id",
            keys: doc! { "sessionId": 1, "chatId": 1, "timestamp": -1, "messageId": 1 },
            unique: false,
        },
        IndexSpec {
            collection: SYNC_RUNS,
            name: "session_started",
            keys: doc! { "sessionId": 1, "startedAt": -1 },
            unique: false,
        },
        IndexSpec {
            collection: OUTBOX,
            name: "pending_created",
            keys: doc! { "publishedAt": 1, "createdAt": 1 },
            unique: false,
        },
        IndexSpec {
            collection: OUTBOX,
            name: "session_created",
            keys: doc! { "sessionId": 1, "createdAt": 1 },
            unique: false,
        },
        IndexSpec {
            collection: QUARANTINE,
            name: "uniq_session_message",
            keys: doc! { "sessionId": 1, "messageId": 1 },
            unique: true,
        },
        // One contact per person and session; listed by id.
        IndexSpec {
            collection: CONTACTS,
            name: "uniq_session_contact",
            keys: doc! { "sessionId": 1, "contactId": 1 },
            unique: true,
        },
        // An author named by its `@lid` finds its contact.
        IndexSpec {
            collection: CONTACTS,
            name: "session_lid",
            keys: doc! { "sessionId": 1, "lid": 1 },
            unique: false,
        },
        // An endpoint's pending window, its dead list, and paging by status.
        IndexSpec {
            collection: WEBHOOK_DELIVERIES,
            name: "webhook_status_created",
            keys: doc! { "webhookId": 1, "status": 1, "createdAt": 1, "eventId": 1 },
            unique: false,
        },
        // A session's deliveries, for its purge.
        IndexSpec {
            collection: WEBHOOK_DELIVERIES,
            name: "session",
            keys: doc! { "sessionId": 1 },
            unique: false,
        },
        // Retention of delivered and dead deliveries.
        IndexSpec {
            collection: WEBHOOK_DELIVERIES,
            name: "status_created",
            keys: doc! { "status": 1, "createdAt": 1 },
            unique: false,
        },
        // The changes waiting for the messages of a write (found by chat,
        // as the write's read-back is), and their expiry.
        IndexSpec {
            collection: PENDING_CHANGES,
            name: "session_chat_message",
            keys: doc! { "sessionId": 1, "chatId": 1, "messageId": 1 },
            unique: false,
        },
        IndexSpec {
            collection: PENDING_CHANGES,
            name: "received",
            keys: doc! { "receivedAt": 1 },
            unique: false,
        },
    ]
}

/// A `messages` document. `_id` is left to the driver (an ObjectId): the
/// unique `(sessionId, messageId)` index is what makes a message exist once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDoc {
    pub session_id: String,
    pub message_id: String,
    pub chat_id: String,
    pub from: String,
    pub to: String,
    pub author: Option<String>,
    pub body: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: DateTime,
    pub from_me: bool,
    pub has_media: bool,
    pub ack: i32,
    pub quoted_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// What changed after the sync (see `domain::ChangeState`); absent in
    /// documents written before changes were kept.
    #[serde(default)]
    pub edited_at: Option<DateTime>,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub revoked_at: Option<DateTime>,
    #[serde(default)]
    pub ack_at: Option<DateTime>,
    #[serde(default)]
    pub reactions: Vec<ReactionDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions_removed: Vec<ReactionDoc>,
    /// The document's version: 0 when inserted, a new random token with
    /// every rewrite, so a read-modify-write (a change, a merged re-sync)
    /// only lands on the version it read (`changes`); `None` for a
    /// document written before it existed. A rewritten document also
    /// keeps its last versions in `priorRevs`, which this type leaves to
    /// the server.
    #[serde(default)]
    pub rev: Option<i64>,
}

/// A reaction (or, without `emoji`, a taken-back one) in a message
/// document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionDoc {
    pub reactor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    pub at: DateTime,
}

impl MessageDoc {
    pub fn new(session_id: &str, m: &Message) -> Self {
        Self {
            session_id: session_id.to_owned(),
            message_id: m.id.clone(),
            chat_id: m.chat_id.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            author: m.author.clone(),
            body: m.body.clone(),
            kind: m.kind.clone(),
            timestamp: DateTime::from_millis(m.timestamp),
            from_me: m.from_me,
            has_media: m.has_media,
            ack: m.ack,
            quoted_id: m.quoted_id.clone(),
            tags: m.tags.clone(),
            attributes: m.attributes.clone(),
            edited_at: m.changes.edited_at.map(DateTime::from_millis),
            revoked: m.changes.revoked,
            revoked_at: m.changes.revoked_at.map(DateTime::from_millis),
            ack_at: m.changes.ack_at.map(DateTime::from_millis),
            reactions: m
                .changes
                .reactions
                .iter()
                .map(|r| ReactionDoc {
                    reactor: r.reactor.clone(),
                    emoji: Some(r.emoji.clone()),
                    at: DateTime::from_millis(r.at),
                })
                .collect(),
            reactions_removed: m
                .changes
                .reactions_removed
                .iter()
                .map(|r| ReactionDoc {
                    reactor: r.reactor.clone(),
                    emoji: None,
                    at: DateTime::from_millis(r.at),
                })
                .collect(),
            rev: Some(0),
        }
    }

    pub fn into_message(self) -> Message {
        Message {
            id: self.message_id,
            chat_id: self.chat_id,
            from: self.from,
            to: self.to,
            author: self.author,
            body: self.body,
            kind: self.kind,
            timestamp: self.timestamp.timestamp_millis(),
            from_me: self.from_me,
            has_media: self.has_media,
            ack: self.ack,
            quoted_id: self.quoted_id,
            tags: self.tags,
            attributes: self.attributes,
            changes: ChangeState {
                edited_at: self.edited_at.map(|d| d.timestamp_millis()),
                revoked: self.revoked,
                revoked_at: self.revoked_at.map(|d| d.timestamp_millis()),
                ack_at: self.ack_at.map(|d| d.timestamp_millis()),
                reactions: self
                    .reactions
                    .into_iter()
                    .map(|r| Reaction {
                        reactor: r.reactor,
                        emoji: r.emoji.unwrap_or_default(),
                        at: r.at.timestamp_millis(),
                    })
                    .collect(),
                reactions_removed: self
                    .reactions_removed
                    .into_iter()
                    .map(|r| RemovedReaction {
                        reactor: r.reactor,
                        at: r.at.timestamp_millis(),
                    })
                    .collect(),
            },
        }
    }

    pub fn into_stored(self) -> StoredMessage {
        StoredMessage {
            session_id: self.session_id.clone(),
            message: self.into_message(),
        }
    }

    /// The fields a changed message overwrites (everything but its key).
    /// A document without `reactionsRemoved` unsets a stored one.
    pub fn update_set(&self) -> StoreResult<Document> {
        let mut d = to_document(self)?;
        d.remove("sessionId");
        d.remove("messageId");
        d.entry("reactionsRemoved".to_owned())
            .or_insert_with(|| Bson::Array(Vec::new()));
        Ok(d)
    }
}

/// A `chats` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatDoc {
    pub session_id: String,
    pub chat_id: String,
    pub name: Option<String>,
    pub is_group: bool,
    pub unread_count: i64,
    pub archived: bool,
    pub pinned: bool,
    pub last_message_at: Option<DateTime>,
    #[serde(default)]
    pub synced_at: Option<DateTime>,
    #[serde(default)]
    pub message_count: i64,
    /// A group's members, set by the contacts phase of a sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<Participant>,
}

impl ChatDoc {
    /// The provider-owned fields an upsert sets; `syncedAt` and
    /// `messageCount` belong to the sync and are only set on insert.
    pub fn provider_fields(chat: &Chat) -> Document {
        doc! {
            "name": chat.name.clone(),
            "isGroup": chat.is_group,
            "unreadCount": i64::from(chat.unread_count),
            "archived": chat.archived,
            "pinned": chat.pinned,
            "lastMessageAt": chat.last_message_at.map(DateTime::from_millis),
        }
    }

    pub fn into_stored(self) -> StoredChat {
        StoredChat {
            session_id: self.session_id,
            chat: Chat {
                id: self.chat_id,
                name: self.name,
                is_group: self.is_group,
                unread_count: u32::try_from(self.unread_count.max(0)).unwrap_or(u32::MAX),
                archived: self.archived,
                pinned: self.pinned,
                last_message_at: self.last_message_at.map(|d| d.timestamp_millis()),
            },
            synced_at: self.synced_at.map(|d| d.timestamp_millis()),
            message_count: u64::try_from(self.message_count.max(0)).unwrap_or(0),
            participants: self.participants,
        }
    }
}

/// Optional epoch milliseconds as a BSON date or null.
pub fn date(ms: Option<i64>) -> Bson {
    match ms {
        Some(ms) => Bson::DateTime(DateTime::from_millis(ms)),
        None => Bson::Null,
    }
}

pub fn to_document<T: Serialize>(v: &T) -> StoreResult<Document> {
    bson::to_document(v).map_err(|e| StoreError::Backend(format!("encode document: {e}")))
}

/// Encodes a domain value through its own serde shape and turns the named
/// top-level millisecond fields into BSON dates.
pub fn encode<T: Serialize>(v: &T, dates: &[&str]) -> StoreResult<Document> {
    let mut d = to_document(v)?;
    for field in dates {
        if let Some(slot) = d.get_mut(*field) {
            match slot {
                Bson::Int64(ms) => *slot = Bson::DateTime(DateTime::from_millis(*ms)),
                Bson::Int32(ms) => *slot = Bson::DateTime(DateTime::from_millis(i64::from(*ms))),
                _ => {}
            }
        }
    }
    Ok(d)
}

/// Inverse of [`encode`]: dates back to milliseconds, `_id` dropped (the
/// domain type carries its key as a named field).
pub fn decode<T: DeserializeOwned>(mut d: Document, dates: &[&str]) -> StoreResult<T> {
    d.remove("_id");
    for field in dates {
        if let Some(slot) = d.get_mut(*field)
            && let Bson::DateTime(dt) = slot
        {
            *slot = Bson::Int64(dt.timestamp_millis());
        }
    }
    bson::from_document(d).map_err(|e| StoreError::Corrupt(format!("decode document: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OutboxEvent, SessionId};

    fn message() -> Message {
        Message {
            id: "m1".into(),
            chat_id: "a@c.us".into(),
            from: "a@c.us".into(),
            to: "me@c.us".into(),
            author: None,
            body: Some("hi".into()),
            kind: "chat".into(),
            timestamp: 1_700_000_000_123,
            from_me: false,
            has_media: false,
            ack: 2,
            quoted_id: None,
            tags: vec!["t".into()],
            attributes: [("k".to_owned(), "v".to_owned())].into(),
            changes: Default::default(),
        }
    }

    #[test]
    fn message_documents_use_design_names_and_dates() {
        let d = to_document(&MessageDoc::new("s1", &message())).unwrap();
        for k in [
            "sessionId",
            "messageId",
            "chatId",
            "from",
            "to",
            "author",
            "body",
            "type",
            "timestamp",
            "fromMe",
            "hasMedia",
            "ack",
            "quotedId",
            "tags",
            "attributes",
        ] {
            assert!(d.contains_key(k), "{k} missing in {d}");
        }
        assert!(matches!(d.get("timestamp"), Some(Bson::DateTime(_))));
        assert_eq!(d.get("author"), Some(&Bson::Null));
        let back: MessageDoc = bson::from_document(d).unwrap();
        assert_eq!(back.into_message(), message());
    }

    #[test]
    fn domain_values_round_trip_with_dates() {
        let sid = SessionId::parse("s1").unwrap();
        let mut ev = OutboxEvent::new("session_ready", &sid, serde_json::json!({"chats": ["a"]}));
        ev.published_at = Some(5);
        let d = encode(&ev, OUTBOX_DATES).unwrap();
        assert!(matches!(d.get("createdAt"), Some(Bson::DateTime(_))));
        assert!(matches!(d.get("publishedAt"), Some(Bson::DateTime(_))));
        let back: OutboxEvent = decode(d, OUTBOX_DATES).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn a_foreign_document_is_corrupt_not_a_panic() {
        let err = decode::<OutboxEvent>(doc! {"eventId": 3}, OUTBOX_DATES).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }
}
