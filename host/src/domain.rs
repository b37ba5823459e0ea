//! Pure types shared by every subsystem: no I/O, no async, no adapters.
//!
//! Wire names are camelCase because the frontends and the AI service read
//! these documents as JSON; timestamps are milliseconds since the Unix epoch
//! (UTC) everywhere, so no layer has to guess a unit.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

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
}

/// A team's own labels on a session (`{"team": "sales", "crm": "4711"}`):
/// given at create, stored with the session, returned in snapshots and
/// lists, and echoed in every event of the session (WebSocket, Socket.IO,
/// RabbitMQ), so a consumer can route by its own ids without a lookup.
pub type Metadata = BTreeMap<String, String>;

/// Most metadata entries a session may carry.
pub const METADATA_MAX_ENTRIES: usize = 32;
/// Longest metadata key, bytes (letters, digits, `_`, `-`, `.`).
pub const METADATA_MAX_KEY: usize = 64;
/// Longest metadata value, bytes.
pub const METADATA_MAX_VALUE: usize = 512;
/// Most bytes of all keys and values together.
pub const METADATA_MAX_TOTAL: usize = 4096;

/// Whether `key` may name a metadata entry: 1 to 64 of letters, digits,
/// `_`, `-` and `.`, so it reads the same in JSON and in a
/// `metadata.KEY=VALUE` filter.
pub fn valid_metadata_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= METADATA_MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks metadata against its bounds; the error names the entry.
pub fn validate_metadata(m: &Metadata) -> Result<(), String> {
    if m.len() > METADATA_MAX_ENTRIES {
        return Err(format!(
            "metadata has {} entries; at most {METADATA_MAX_ENTRIES}",
            m.len()
        ));
    }
    let mut total = 0;
    for (k, v) in m {
        if !valid_metadata_key(k) {
            return Err(format!(
                "metadata key {k:?} must be 1 to {METADATA_MAX_KEY} of letters, digits, '_', '-', '.'"
            ));
        }
        if v.len() > METADATA_MAX_VALUE {
            return Err(format!(
                "metadata value of {k:?} is {} bytes; at most {METADATA_MAX_VALUE}",
                v.len()
            ));
        }
        total += k.len() + v.len();
    }
    if total > METADATA_MAX_TOTAL {
        return Err(format!(
            "metadata is {total} bytes; at most {METADATA_MAX_TOTAL} in all"
        ));
    }
    Ok(())
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

/// A QR code waiting to be scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrCode {
    pub qr: String,
    /// 1 for the first code of a login, +1 per rotation.
    pub attempt: u32,
    /// When the phone will no longer accept this code, ms.
    pub expires_at: i64,
}

/// A pairing code waiting to be typed on the phone: WhatsApp's "link with
/// phone number" alternative to scanning a QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairingCode {
    /// The 8 characters as WhatsApp Web shows them, `ABCD-EFGH`; the phone
    /// takes them with or without the dash.
    #[schema(example = "K7QP-3MXA")]
    pub code: String,
    /// 1 for the first code of a login, +1 per refresh.
    pub attempt: u32,
    /// When the phone will no longer accept this code, ms.
    pub expires_at: i64,
}

impl PairingCode {
    /// Writes 8 code characters the way WhatsApp Web shows them
    /// (`ABCDEFGH` → `ABCD-EFGH`); anything else is kept as it came, since
    /// the page, not the host, decides what a code looks like.
    pub fn display(raw: &str) -> String {
        let chars: String = raw
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if chars.len() == 8 {
            format!("{}-{}", &chars[..4], &chars[4..])
        } else {
            raw.trim().to_owned()
        }
    }
}

/// A phone number in international form, normalised to `+` and 7 to 15
/// digits (E.164: country code first, no leading zero).
///
/// People paste numbers as they see them (`+49 151 234-5678`), so spaces
/// and dashes are dropped; anything else (letters, dots, brackets, a
/// national `0151…` without country code) is refused rather than guessed,
/// because a wrong guess links nothing and says why nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

/// Longest phone number accepted as written (with its spaces and dashes).
pub const PHONE_NUMBER_MAX_LEN: usize = 32;

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let refuse = || {
            format!(
                "must be '+', the country code and the number: 7 to 15 digits in all (spaces and dashes are ignored), e.g. \"+49 151 2345678\"; got {:?}",
                raw.chars()
                    .take(PHONE_NUMBER_MAX_LEN + 8)
                    .collect::<String>()
            )
        };
        if raw.len() > PHONE_NUMBER_MAX_LEN {
            return Err(refuse());
        }
        let Some(rest) = raw.strip_prefix('+') else {
            return Err(refuse());
        };
        let digits: String = rest.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(7..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(refuse());
        }
        Ok(Self(format!("+{digits}")))
    }

    /// `+` and the digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits alone, as WhatsApp ids spell a number.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        PhoneNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// How a session links its WhatsApp account when it has no stored login:
/// the create body's `login`. Absent: a QR code to scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginOptions {
    /// Link with a pairing code for this number instead of a QR code: the
    /// account's own number, `+` and country code first; spaces and dashes
    /// are dropped (stored and echoed as `+4915123456789`).
    #[schema(value_type = String, pattern = r"^\+[0-9 -]+$", max_length = 32, example = "+49 151 2345678")]
    pub phone_number: PhoneNumber,
}

impl<'de> Deserialize<'de> for LoginOptions {
    /// Only from an object: serde's derive would also read `["+49…"]` as
    /// this struct, which no client means.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Fields {
            phone_number: PhoneNumber,
        }
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = LoginOptions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an object {"phoneNumber": "+…"}"#)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<LoginOptions, A::Error> {
                let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(LoginOptions {
                    phone_number: f.phone_number,
                })
            }
        }
        d.deserialize_map(Object)
    }
}

/// Where a sync run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// What started a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncTrigger {
    /// The session became ready.
    Auto,
    /// `POST .../sync-chats`.
    Manual,
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Auto => "auto",
            SyncTrigger::Manual => "manual",
        }
    }
}

/// How much of each chat a sync reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// The newest `limitPerChat` messages of every chat, whatever is
    /// stored (a re-sync rewrites what changed and leaves the rest).
    #[default]
    Full,
    /// Per chat only the messages newer than the newest stored one (its
    /// [`MessageMark`]), at most `limitPerChat`; a chat whose
    /// `lastMessageAt` is not newer than its mark is not read at all. Chat
    /// metadata is refreshed for every chat as in a full sync.
    Incremental,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
        }
    }
}

/// The newest stored message of a chat: where an incremental sync starts.
/// WhatsApp timestamps are whole seconds, so several messages may share the
/// newest one; `ids` lists all of them, and a message at `timestamp` is new
/// only if its id is not among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMark {
    /// ms.
    pub timestamp: i64,
    /// The stored message ids at `timestamp`.
    pub ids: Vec<String>,
}

impl MessageMark {
    /// Whether `m` is newer than everything this mark stands for.
    pub fn is_new(&self, m: &Message) -> bool {
        m.timestamp > self.timestamp || (m.timestamp == self.timestamp && !self.ids.contains(&m.id))
    }
}

/// A chat the sync could not finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatFailure {
    pub chat_id: String,
    pub attempts: u32,
    pub reason: String,
}

/// The persisted record of one sync (`sync_runs`). It doubles as the
/// checkpoint: after a restart a `running` run resumes after
/// `checkpoint` chats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncRun {
    pub sync_id: String,
    pub session_id: String,
    pub trigger: SyncTrigger,
    /// `full` or `incremental`; a resumed run keeps it. Runs written
    /// before modes existed were full.
    #[serde(default)]
    pub mode: SyncMode,
    pub limit_per_chat: u32,
    /// Only these chats, when the manual sync named some.
    pub chat_ids: Option<Vec<String>>,
    pub status: SyncStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub n_chats: u32,
    pub current_chat: u32,
    /// Chats fully written, in sync order; resume starts after them.
    pub checkpoint: u32,
    /// Id of the last fully written chat.
    pub checkpoint_chat_id: Option<String>,
    /// The newest `syncedAt` of the chats the checkpoint covers (ms). A
    /// resumed run skips the chats this run wrote by membership: `syncedAt`
    /// between `startedAt` and this. A chat whose messages landed after the
    /// last checkpoint write (a crash between the two) is newer than this,
    /// so it is synced again (idempotent) and counted once.
    #[serde(default)]
    pub checkpoint_synced_at: Option<i64>,
    pub total_messages_synced: u64,
    /// Next progress event number, so a resumed run continues the sequence.
    pub next_seq: u64,
    pub failed_chats: Vec<ChatFailure>,
    pub skipped_chats: u32,
    pub quarantined: u64,
    pub reason: Option<String>,
    /// The fencing token of the host that wrote this version: the session
    /// lease's epoch (0 on a single host). A store refuses a write whose
    /// epoch is lower than the stored one, so a host that lost the lease
    /// cannot overwrite its successor's progress.
    #[serde(default)]
    pub epoch: u64,
}

/// The phase a `sync_chats` progress event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    Start,
    Chat,
    Messages,
    Done,
}

/// One `sync_chats` progress event (DESIGN §3/§4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    pub session_id: String,
    pub sync_id: String,
    pub seq: u64,
    pub n_chats: u32,
    pub current_chat: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<String>,
    /// Messages stored for `chat_id` by this event (0 on `chat` events).
    pub messages_synced: u64,
    pub total_messages_synced: u64,
    pub phase: SyncPhase,
    pub done: bool,
}

/// The last word of a sync for the frontend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncComplete {
    pub session_id: String,
    pub sync_id: String,
    pub n_chats: u32,
    pub total_messages_synced: u64,
    pub duration_ms: u64,
}

/// A sync that ended without completing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncFailed {
    pub session_id: String,
    pub sync_id: String,
    pub reason: String,
    pub current_chat: u32,
}

/// A message a fail-closed plugin refused: kept aside, never stored raw in
/// `messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedMessage {
    pub session_id: String,
    pub sync_id: Option<String>,
    pub plugin: String,
    pub reason: String,
    pub quarantined_at: i64,
    pub message: Message,
}

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

    /// The body a NestJS `@EventPattern(pattern)` consumer reads.
    pub fn envelope(&self) -> serde_json::Value {
        serde_json::json!({ "pattern": self.pattern, "data": self.data })
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
        if host_id.is_none() && metadata.is_none_or(|m| m.is_empty()) {
            return self.to_frame();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_status_round_trips_by_its_wire_name() {
        for s in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str())
            );
        }
        assert_eq!(SessionStatus::parse("nope"), None);
    }

    #[test]
    fn session_ids_are_a_security_boundary() {
        assert!(SessionId::parse("abc_DEF-123").is_ok());
        assert!(SessionId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(SessionId::parse(""), Err(InvalidSessionId::Empty));
        assert_eq!(
            SessionId::parse(&"a".repeat(65)),
            Err(InvalidSessionId::TooLong(65))
        );
        for bad in ["../x", "a/b", "a b", "a.b", "é", "a\0", "..", "x\n"] {
            assert_eq!(
                SessionId::parse(bad),
                Err(InvalidSessionId::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_events_use_the_wire_names() {
        let ev = ServerEvent::Qr {
            session_id: "s".into(),
            qr: "q".into(),
            attempt: 2,
            expires_at: 5,
        };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"event": "qr", "data": {"sessionId": "s", "qr": "q", "attempt": 2, "expiresAt": 5}})
        );
        let ev = ServerEvent::PairingCode {
            session_id: "s".into(),
            code: "ABCD-EFGH".into(),
            attempt: 1,
            expires_at: 5,
        };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"event": "pairing_code", "data": {"sessionId": "s", "code": "ABCD-EFGH", "attempt": 1, "expiresAt": 5}})
        );
        let ev = ServerEvent::Error {
            code: "bad_json".into(),
            message: "m".into(),
        };
        assert_eq!(serde_json::to_value(&ev).unwrap()["event"], "error");
        assert_eq!(
            serde_json::to_value(ServerEvent::Pong {}).unwrap(),
            serde_json::json!({"event": "pong", "data": {}})
        );
    }

    #[test]
    fn phone_numbers_are_normalised_or_refused() {
        for (raw, want) in [
            ("+4915123456789", "+4915123456789"),
            ("+49 151 234-5678", "+491512345678"),
            ("+1-555-0100-12", "+1555010012"),
            ("+1234567", "+1234567"),
            ("+123456789012345", "+123456789012345"),
        ] {
            assert_eq!(PhoneNumber::parse(raw).unwrap().as_str(), want, "{raw}");
        }
        for bad in [
            "",
            "+",
            "4915123456789",
            "0049 151 2345678",
            "+0151 2345678",
            "+123456",
            "+1234567890123456",
            "+49 (151) 2345678",
            "+49.151.2345678",
            "+49151234567x",
            "+４９１５１２３４５６７",
            "+49\n1512345678",
            &format!("+49{}1512345678", " ".repeat(40)),
        ] {
            let err = PhoneNumber::parse(bad).expect_err(bad);
            assert!(err.contains("7 to 15 digits"), "{err}");
        }
        assert_eq!(
            PhoneNumber::parse("+49 151-2345678").unwrap().digits(),
            "491512345678"
        );
    }

    #[test]
    fn login_options_come_from_an_object_only() {
        let ok: LoginOptions =
            serde_json::from_value(serde_json::json!({"phoneNumber": "+49 151 2345678"})).unwrap();
        assert_eq!(ok.phone_number.as_str(), "+491512345678");
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({"phoneNumber": "+491512345678"})
        );
        for bad in [
            serde_json::json!(["+491512345678"]),
            serde_json::json!("+491512345678"),
            serde_json::json!({}),
            serde_json::json!({"phoneNumber": "+49", "x": 1}),
            serde_json::json!({"phoneNumber": 491512345678u64}),
            serde_json::json!({"phoneNumber": "0151 2345678"}),
        ] {
            assert!(
                serde_json::from_value::<LoginOptions>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn pairing_codes_show_as_whatsapp_web_does() {
        assert_eq!(PairingCode::display("abcd1234"), "ABCD-1234");
        assert_eq!(PairingCode::display("ABCD-EFGH"), "ABCD-EFGH");
        assert_eq!(PairingCode::display("A,B,C,D,E,F,G,H"), "ABCD-EFGH");
        assert_eq!(PairingCode::display(" odd "), "odd");
    }

    #[test]
    fn envelope_is_what_nestjs_reads() {
        let sid = SessionId::parse("s1").unwrap();
        let ev = OutboxEvent::new(
            "session_ready",
            &sid,
            serde_json::json!({"sessionId": "s1"}),
        );
        assert_eq!(
            ev.envelope(),
            serde_json::json!({"pattern": "session_ready", "data": {"sessionId": "s1"}})
        );
    }

    #[test]
    fn progress_serializes_with_design_field_names() {
        let p = SyncProgress {
            session_id: "s".into(),
            sync_id: "y".into(),
            seq: 1,
            n_chats: 3,
            current_chat: 1,
            chat_id: Some("A".into()),
            messages_synced: 0,
            total_messages_synced: 0,
            phase: SyncPhase::Chat,
            done: false,
        };
        let v = serde_json::to_value(&p).unwrap();
        for k in [
            "sessionId",
            "syncId",
            "seq",
            "nChats",
            "currentChat",
            "chatId",
            "messagesSynced",
            "totalMessagesSynced",
            "phase",
            "done",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(v["phase"], "chat");
    }
}
