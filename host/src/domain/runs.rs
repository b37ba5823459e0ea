//! Sync runs and what they report: status, progress, outcomes.

use serde::{Deserialize, Serialize};

use super::*;

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
    /// Deeper history of the named chat (`POST .../chats/:chatId/sync`):
    /// messages older than its oldest stored one (or than `before`), until
    /// the chat holds `limitPerChat` messages or its history starts.
    History,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
            SyncMode::History => "history",
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

    /// Whether `m` is older than everything this mark stands for (read
    /// as the oldest stored message of a chat: where a deepen goes on).
    pub fn is_older(&self, m: &Message) -> bool {
        m.timestamp < self.timestamp || (m.timestamp == self.timestamp && !self.ids.contains(&m.id))
    }

    /// The mark whose older messages are those strictly before `ms`.
    pub fn before(ms: i64) -> MessageMark {
        MessageMark {
            timestamp: ms.saturating_sub(1),
            ids: vec![],
        }
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
    /// A history run (`mode: history`) reads messages older than this (ms)
    /// instead of older than the chat's oldest stored message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// Messages older than this many days (by the provider's clock) are
    /// neither fetched nor stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<u32>,
}

/// Bounds of `maxAgeDays` (on create options, `sync-chats` and the deepen).
pub const MAX_AGE_DAYS: std::ops::RangeInclusive<u32> = 1..=36_500;

/// The deepest history one chat may be given (`limit` of
/// `POST .../chats/:chatId/sync`: the messages it holds afterwards).
pub const MAX_HISTORY_LIMIT: u32 = 50_000;

/// The phase a `sync_chats` progress event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    Start,
    /// The account's contacts (and group members) are stored; before the
    /// first chat.
    Contacts,
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
    /// Contacts stored by the run, on the `contacts` event only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contacts: Option<u64>,
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
