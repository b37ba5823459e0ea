//! What a sync stored: chats, messages (paged by cursor), quarantine.

use super::*;

/// A page of messages, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<StoredMessage>,
    /// Opaque; pass as `cursor` for the next (older) page. `null` on the
    /// last page.
    pub next_cursor: Option<String>,
    /// Deprecated: the last message's timestamp. Paging with `before=` skips
    /// the rest of a burst that shares that second; use `nextCursor`.
    pub next_before: Option<i64>,
}

/// A page of quarantined messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinePage {
    /// Messages a fail-closed plugin refused, raw (unredacted), by message
    /// id.
    pub items: Vec<crate::domain::QuarantinedMessage>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Answer of `DELETE .../quarantine`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineCleared {
    pub session_id: String,
    pub deleted: u64,
}

/// The messages a fail-closed plugin refused for a session: raw and
/// unredacted, kept for `WASYNC_QUARANTINE_RETENTION_DAYS`.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/quarantine", tag = "data",
    params(("id" = String, Path, description = "session id"),
        ("limit" = Option<u32>, Query, description = "1–1000, default 50", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page", min_length = 1, max_length = 512)),
    responses((status = 200, body = QuarantinePage), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(in crate::gateway) async fn list_quarantine(
    gw: &Gateway,
    id: SessionId,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = id_page_query(req.uri(), 512)?;
    gw.sessions.snapshot(&id).await?;
    let items = gw
        .store
        .quarantine_page(&id, limit, cursor.as_deref())
        .await?;
    let next_cursor = (items.len() as u32 == limit)
        .then(|| items.last().map(|q| q.message.id.clone()))
        .flatten();
    Ok(json(StatusCode::OK, &QuarantinePage { items, next_cursor }))
}

/// Deletes a session's quarantine.
#[utoipa::path(delete, path = "/whatsapp-web/session/{id}/quarantine", tag = "data",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = QuarantineCleared), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(in crate::gateway) async fn clear_quarantine(
    gw: &Gateway,
    id: SessionId,
) -> Result<Response<Body>, ApiError> {
    gw.sessions.snapshot(&id).await?;
    let deleted = gw.store.clear_quarantine(&id).await?;
    Ok(json(
        StatusCode::OK,
        &QuarantineCleared {
            session_id: id.to_string(),
            deleted,
        },
    ))
}

/// Stored chats, newest activity first. Never starts a sync.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/chats", tag = "data",
    params(("id" = String, Path, description = "session id"),
        ("limit" = Option<u32>, Query, description = "1–1000, default 50", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses((status = 200, body = ChatPage), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(in crate::gateway) async fn list_chats(
    gw: &Gateway,
    id: SessionId,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let limit = num_param(req.uri(), "limit", Some(50u32), 1..=1000)?.unwrap_or(50);
    let cursor = query_param(req.uri().query(), "cursor");
    if let Some(c) = &cursor
        && crate::storage::decode_chat_cursor(c).is_none()
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "cursor is not one this server returned",
        ));
    }
    gw.sessions.snapshot(&id).await?;
    let page = gw.store.list_chats(&id, limit, cursor.as_deref()).await?;
    Ok(json(StatusCode::OK, &page))
}

/// A chat's stored messages, newest first.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/chats/{chatId}/messages", tag = "data",
    params(("id" = String, Path, description = "session id"),
        ("chatId" = String, Path, description = "chat id, e.g. 4915112345678@c.us (percent-encode it)", min_length = 1, max_length = 256),
        ("limit" = Option<u32>, Query, description = "1–1000, default 50", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
        ("before" = Option<i64>, Query, description = "start with the messages older than this (ms); for the next pages use cursor")),
    responses((status = 200, body = MessagePage), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(in crate::gateway) async fn list_messages(
    gw: &Gateway,
    id: SessionId,
    chat_id: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if chat_id.is_empty() || chat_id.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_chat_id",
            "chat id must be 1 to 256 characters",
        ));
    }
    let limit = num_param(req.uri(), "limit", Some(50u32), 1..=1000)?.unwrap_or(50);
    let before = num_param(req.uri(), "before", None, i64::MIN..=i64::MAX)?;
    let cursor = match query_param(req.uri().query(), "cursor") {
        None => before.map(|timestamp| MessageCursor {
            timestamp,
            message_id: None,
        }),
        Some(c) => Some(MessageCursor::decode(&c).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "cursor is not one this server returned")
        })?),
    };
    gw.sessions.snapshot(&id).await?;
    let messages = gw
        .store
        .list_messages(&id, &chat_id, limit, cursor.as_ref())
        .await?;
    let last = (messages.len() as u32 == limit)
        .then(|| messages.last())
        .flatten();
    Ok(json(
        StatusCode::OK,
        &MessagePage {
            next_before: last.map(|m| m.message.timestamp),
            next_cursor: last.map(|m| {
                MessageCursor {
                    timestamp: m.message.timestamp,
                    message_id: Some(m.message.id.clone()),
                }
                .encode()
            }),
            messages,
        },
    ))
}

/// `?limit=` (1–1000, default 50) and `?cursor=` of a page keyed by an id
/// (the last id of the previous page, at most `max_cursor` bytes).
pub(in crate::gateway) fn id_page_query(
    uri: &http::Uri,
    max_cursor: usize,
) -> Result<(u32, Option<String>), ApiError> {
    let limit = num_param(uri, "limit", Some(50u32), 1..=1000)?.unwrap_or(50);
    let cursor = query_param(uri.query(), "cursor");
    if cursor
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > max_cursor)
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "cursor is not one this server returned",
        ));
    }
    Ok((limit, cursor))
}
