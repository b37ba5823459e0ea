//! Deeper history of one chat (`POST .../chats/:chatId/sync`), and the
//! modes `POST .../sync-chats` takes.

use super::*;
use crate::domain::SyncMode;
use crate::session::SyncRequest;

/// The body of `POST .../chats/:chatId/sync`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryBody {
    /// How many messages the chat is to hold afterwards (1–50,000): its
    /// earlier messages are loaded until it does, or its history starts.
    #[schema(minimum = 1, maximum = 50000)]
    pub limit: u32,
    /// Load messages older than this (ms) instead of older than the chat's
    /// oldest stored message. Messages already stored are not stored twice,
    /// so the chat may then hold fewer than `limit`.
    #[schema(minimum = 1)]
    pub before: Option<i64>,
    /// Stop at messages older than this many days (1–36,500).
    #[schema(minimum = 1, maximum = 36500)]
    pub max_age_days: Option<u32>,
}

/// The modes of `POST .../sync-chats` (a history run has its own route).
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManualSyncMode {
    /// The newest `limitPerChat` messages of every chat.
    Full,
    /// Per chat only what is newer than its newest stored message.
    Incremental,
}

impl From<ManualSyncMode> for SyncMode {
    fn from(m: ManualSyncMode) -> Self {
        match m {
            ManualSyncMode::Full => SyncMode::Full,
            ManualSyncMode::Incremental => SyncMode::Incremental,
        }
    }
}

/// Loads earlier messages of one stored chat.
///
/// A sync run of its own (`mode: history`, `chatIds` the chat): it reports
/// `sync_chats` progress and `sync_complete` like any sync, shows at
/// `GET .../sync`, is cancelled by `DELETE`, and resumes after a restart.
/// It reads the messages older than the chat's oldest stored message (or
/// than `before`), page by page as WhatsApp Web does, until the chat holds
/// `limit` messages, its history starts, or the messages are older than
/// `maxAgeDays`. A chat that already holds `limit` messages reads nothing.
#[utoipa::path(post, path = "/whatsapp-web/session/{id}/chats/{chatId}/sync", tag = "sync",
    params(("id" = String, Path, description = "session id"),
        ("chatId" = String, Path, description = "chat id, e.g. 4915112345678@c.us (percent-encode it)", min_length = 1, max_length = 256)),
    request_body(content = HistoryBody, description = "`limit` is required"),
    responses(
        (status = 202, description = "started; follow it on the WebSocket or at GET .../sync", body = SyncAccepted),
        (status = 400, description = "a bad body (`bad_json`: not an object, unknown fields, `limit` missing or not a number), `limit`, `before` or `maxAgeDays` out of bounds (`invalid_body`), or a bad chat id (`invalid_chat_id`)", body = Problem),
        (status = 401, body = Problem),
        (status = 404, description = "no such session, or the chat is not stored (`chat_not_found`)", body = Problem),
        (status = 409, description = "a sync runs (`sync_running`, names `syncId`) or the session is not ready (`session_not_ready`, names `sessionStatus`)", body = Problem),
        (status = 408, description = "the body did not arrive within `WASYNC_BODY_TIMEOUT_MS` (`body_timeout`); the connection closes", body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 503, description = "the owning host cannot be reached (`owner_unreachable`), or the store or cluster is unavailable", body = Problem)))]
pub(in crate::gateway) async fn sync_history(
    gw: &Gateway,
    id: SessionId,
    chat_id: String,
    parts: &http::request::Parts,
    bytes: &Bytes,
) -> Result<Response<Body>, ApiError> {
    if chat_id.is_empty() || chat_id.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_chat_id",
            "chat id must be 1 to 256 characters",
        ));
    }
    let b: HistoryBody = json_object(&parts.headers, bytes)?;
    let req = SyncRequest {
        mode: Some(SyncMode::History),
        limit_per_chat: Some(b.limit),
        chat_ids: Some(vec![chat_id.clone()]),
        before: b.before,
        max_age_days: b.max_age_days,
    };
    req.check()?;
    gw.sessions.snapshot(&id).await?;
    if gw.store.get_chat(&id, &chat_id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "chat_not_found",
            format!("session {id} has no stored chat {chat_id:?}; sync the session first"),
        )
        .with("chatId", chat_id));
    }
    let sync_id = gw.sessions.start_run(&id, req).await?;
    let mut resp = json(
        StatusCode::ACCEPTED,
        &SyncAccepted {
            session_id: id.to_string(),
            sync_id,
        },
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/whatsapp-web/session/{id}/sync")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}
