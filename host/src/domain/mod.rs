//! Pure types shared by every subsystem: no I/O, no async, no adapters.
//!
//! Wire names are camelCase because the frontends and the AI service read
//! these documents as JSON; timestamps are milliseconds since the Unix epoch
//! (UTC) everywhere, so no layer has to guess a unit.

mod changes;
mod contacts;
mod events;
mod login;
mod metadata;
mod runs;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use changes::*;
pub use contacts::*;
pub use events::*;
pub use login::*;
pub use metadata::*;
pub use runs::*;

/// Milliseconds since the Unix epoch, the one time unit of the project.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A validated session id.
///
/// Ids name browser profile folders and database keys, so validation is a
/// security boundary: only `^[A-Za-z0-9_-]{1,64}$` gets through, which rules
/// out path separators, `..`, whitespace and anything a shell or a file
/// system would read specially.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

/// Why a session id was refused; the message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionId {
    #[error("session id must not be empty")]
    Empty,
    #[error("session id must be at most 64 characters, got {0}")]
    TooLong(usize),
    #[error("session id may only contain A-Z, a-z, 0-9, '_' and '-'")]
    BadCharacter,
}

impl SessionId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidSessionId> {
        if raw.is_empty() {
            return Err(InvalidSessionId::Empty);
        }
        let len = raw.chars().count();
        if len > Self::MAX_LEN {
            return Err(InvalidSessionId::TooLong(len));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(InvalidSessionId::BadCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        SessionId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A chat as the provider reports it and as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    pub id: String,
    pub name: Option<String>,
    pub is_group: bool,
    pub unread_count: u32,
    pub archived: bool,
    pub pinned: bool,
    /// Last activity in the chat, ms; chats are listed newest activity first.
    pub last_message_at: Option<i64>,
}

/// A chat as read back from the store: the provider's fields plus what the
/// sync recorded about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredChat {
    pub session_id: String,
    #[serde(flatten)]
    pub chat: Chat,
    /// When the chat's messages were last written by a sync, ms.
    pub synced_at: Option<i64>,
    /// Messages stored for this chat.
    pub message_count: u64,
    /// A group's members, as the last sync found them (empty for a
    /// private chat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<Participant>,
}

/// A WhatsApp message, normalised across providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Provider message id (`_serialized` in WhatsApp Web); unique per session.
    pub id: String,
    pub chat_id: String,
    pub from: String,
    pub to: String,
    /// Sender inside a group; `None` in private chats.
    pub author: Option<String>,
    /// Text, or the caption of a media message.
    pub body: Option<String>,
    /// WhatsApp's message type (`chat`, `image`, `ptt`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Sent at, ms.
    pub timestamp: i64,
    pub from_me: bool,
    pub has_media: bool,
    /// Delivery state: -1 error, 0 pending, 1 server, 2 device, 3 read, 4 played.
    pub ack: i32,
    pub quoted_id: Option<String>,
    /// Labels added by plugins (a fail-open plugin that was skipped adds
    /// `plugin-skipped:<name>`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form key/values added by plugins.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, String>,
    /// What happened to the message after it was stored: edits, a delete
    /// for everyone, receipts, reactions ([`ChangeState`]).
    #[serde(flatten)]
    pub changes: ChangeState,
}

/// A message as stored: the message plus its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    pub session_id: String,
    #[serde(flatten)]
    pub message: Message,
}

/// The WhatsApp account a session is linked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: String,
    pub push_name: Option<String>,
}

#[cfg(test)]
mod tests;
