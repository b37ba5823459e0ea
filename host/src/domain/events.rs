//! What leaves a session: outbox events, snapshots, WebSocket events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

/// An event waiting in (or published from) the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEvent {
    /// Unique id; published as the AMQP `message_id` so consumers dedupe.
    pub event_id: String,
    /// NestJS pattern, e.g. `session_ready`.
    pub pattern: String,
    pub session_id: String,
    /// The `data` of the envelope.
    pub data: serde_json::Value,
    pub created_at: i64,
    pub published_at: Option<i64>,
    pub attempts: u32,
}

impl OutboxEvent {
    pub fn new(pattern: &str, session_id: &SessionId, data: serde_json::Value) -> Self {
        Self::with_id(uuid::Uuid::now_v7().to_string(), pattern, session_id, data)
    }

    /// The event announcing the end of run `sync_id`: its id is derived
    /// from the run (a UUIDv8 of the pattern and the run id), so two hosts that both complete one run (an owner
    /// that lost its lease mid-write, and its successor) queue one event,
    /// and a consumer sees at most the same `message_id` twice.
    pub fn for_run(
        pattern: &str,
        session_id: &SessionId,
        sync_id: &str,
        data: serde_json::Value,
    ) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{pattern}/{sync_id}").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        // Run ids are UUIDv7: keeping their 48-bit time prefix keeps event
        // ids sorting by time, which the embedded outbox's order relies on.
        if let Ok(run) = uuid::Uuid::parse_str(sync_id) {
            bytes[..6].copy_from_slice(&run.as_bytes()[..6]);
        }
        let id = uuid::Uuid::new_v8(bytes).to_string();
        Self::with_id(id, pattern, session_id, data)
    }

    fn with_id(
        event_id: String,
        pattern: &str,
        session_id: &SessionId,
        data: serde_json::Value,
    ) -> Self {
        Self {
            event_id,
            pattern: pattern.to_owned(),
            session_id: session_id.to_string(),
            data,
            created_at: now_ms(),
            published_at: None,
            attempts: 0,
        }
    }

    /// The body a NestJS `@EventPattern(pattern)` consumer reads, as JSON
    /// bytes: `{"pattern": …, "data": …}`. Serialized straight from the
    /// event, so a large `data` (a `session_ready` of 10,000 chats) is not
    /// copied into a second tree on the way.
    pub fn envelope(&self) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            pattern: &'a str,
            data: &'a serde_json::Value,
        }
        serde_json::to_vec(&Envelope {
            pattern: &self.pattern,
            data: &self.data,
        })
    }
}

/// A session's lifecycle status as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// The provider is starting (browser launching, page loading).
    Starting,
    /// Waiting for the phone to link this device: to scan a QR code, or
    /// (a session created with `login.phoneNumber`) to enter a pairing code.
    Qr,
    /// Scanned; the account is loading.
    Authenticated,
    /// Loaded: syncs can run.
    Ready,
    /// The login was refused.
    AuthFailure,
    /// The connection was lost or the phone logged out.
    Disconnected,
    /// Stopped with `DELETE`.
    Stopped,
}

impl SessionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [SessionStatus; 7] = [
        SessionStatus::Starting,
        SessionStatus::Qr,
        SessionStatus::Authenticated,
        SessionStatus::Ready,
        SessionStatus::AuthFailure,
        SessionStatus::Disconnected,
        SessionStatus::Stopped,
    ];

    /// The status named `name` (as [`SessionStatus::as_str`] writes it).
    pub fn parse(name: &str) -> Option<SessionStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::Qr => "qr",
            SessionStatus::Authenticated => "authenticated",
            SessionStatus::Ready => "ready",
            SessionStatus::AuthFailure => "auth_failure",
            SessionStatus::Disconnected => "disconnected",
            SessionStatus::Stopped => "stopped",
        }
    }
}

/// The sync part of a session snapshot: the latest progress and how the
/// run stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncView {
    pub status: SyncStatus,
    #[serde(flatten)]
    pub progress: SyncProgress,
}

/// What a client needs to render a session, sent on join and by
/// `GET /whatsapp-web/session/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSnapshot {
    pub session_id: String,
    pub status: SessionStatus,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr: Option<QrCode>,
    /// The pending pairing code of a session that links with a phone
    /// number (status `qr`, and no `qr` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<PairingCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub me: Option<Me>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncView>,
    /// The session's metadata (absent when it has none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: Metadata,
}

/// Every server → client event of the WebSocket protocol (DESIGN §3),
/// serialized as `{"event": NAME, "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "event",
    content = "data",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerEvent {
    SessionState(SessionSnapshot),
    Qr {
        session_id: String,
        qr: String,
        attempt: u32,
        expires_at: i64,
    },
    /// A session that links with a phone number shows this code instead
    /// of QR codes (repeated as it is refreshed).
    PairingCode {
        session_id: String,
        code: String,
        attempt: u32,
        expires_at: i64,
    },
    Authenticated {
        session_id: String,
    },
    AuthFailure {
        session_id: String,
        reason: String,
    },
    Ready {
        session_id: String,
    },
    SyncChats(SyncProgress),
    SyncComplete(SyncComplete),
    SyncFailed(SyncFailed),
    Message(StoredMessage),
    /// A stored message changed after the sync: edited, deleted for
    /// everyone, a receipt, a reaction.
    MessageUpdated {
        session_id: String,
        chat_id: String,
        message_id: String,
        change: MessageChange,
    },
    Disconnected {
        session_id: String,
        reason: String,
    },
    /// A bad client frame; the connection stays open.
    Error {
        code: String,
        message: String,
    },
    /// Answer to `ping`.
    Pong {},
    /// Answer to `leave-session`.
    Left {
        session_id: String,
    },
}

impl ServerEvent {
    /// Progress events may be coalesced for a slow client; every other
    /// event must be delivered.
    pub fn is_progress(&self) -> bool {
        matches!(self, ServerEvent::SyncChats(_))
    }

    /// The JSON text frame of a session's event, its data stamped with
    /// the host that produced it and the session's metadata (when it has
    /// any and the event does not carry it already).
    pub fn to_frame_with(&self, host_id: Option<&str>, metadata: Option<&Metadata>) -> String {
        let metadata = metadata.filter(|m| !m.is_empty());
        if host_id.is_none() && metadata.is_none() {
            return self.to_frame();
        }
        // A session's snapshot may carry its metadata itself, which the
        // general path keeps.
        if metadata.is_some() && matches!(self, ServerEvent::SessionState(_)) {
            return self.to_frame_by_value(host_id, metadata);
        }
        // Otherwise the plain frame with the stamps appended to its data,
        // byte for byte what the general path gives, without building and
        // dropping a JSON tree per event (~3 µs of ~3.5 for a
        // `sync_chats`, on the sync's own task).
        let mut fields = String::new();
        if let Some(h) = host_id {
            fields.push_str(r#""hostId":"#);
            fields.push_str(&serde_json::to_string(h).unwrap_or_default());
        }
        if let Some(m) = metadata {
            if !fields.is_empty() {
                fields.push(',');
            }
            fields.push_str(r#""metadata":"#);
            fields.push_str(&serde_json::to_string(m).unwrap_or_default());
        }
        append_to_data(self.to_frame(), &fields)
            .unwrap_or_else(|| self.to_frame_by_value(host_id, metadata))
    }

    /// [`Self::to_frame_with`] through a JSON tree: any event, any stamps.
    pub(super) fn to_frame_by_value(
        &self,
        host_id: Option<&str>,
        metadata: Option<&Metadata>,
    ) -> String {
        match serde_json::to_value(self) {
            Ok(mut v) => {
                if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
                    if let Some(h) = host_id {
                        data.insert("hostId".into(), h.into());
                    }
                    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
                        data.entry("metadata")
                            .or_insert_with(|| serde_json::to_value(m).unwrap_or_default());
                    }
                }
                v.to_string()
            }
            Err(_) => self.to_frame(),
        }
    }

    /// The JSON text frame.
    pub fn to_frame(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"event":"error","data":{"code":"internal","message":"unserializable event"}}"#
                .to_owned()
        })
    }
}

/// `frame` (`{"event":NAME,"data":{...}}`, as [`ServerEvent::to_frame`]
/// writes it) with `fields` (`"key":value,...`) as the last fields of its
/// data object; `None` for a frame of another shape. No event's data has a
/// `hostId` of its own, nor one but the session snapshot a `metadata` (the
/// tests compare every kind with the general path).
pub(super) fn append_to_data(mut frame: String, fields: &str) -> Option<String> {
    if !frame.starts_with(r#"{"event":"#) || !frame.ends_with("}}") {
        return None;
    }
    // The data object closes just before the frame does; it is empty
    // exactly when the frame ends `"data":{}}` (a last field holding an
    // empty object ends with three braces).
    let empty = frame.ends_with(r#""data":{}}"#);
    frame.truncate(frame.len() - 2);
    if !empty {
        frame.push(',');
    }
    frame.push_str(fields);
    frame.push_str("}}");
    Some(frame)
}
