//! REST handlers (DESIGN §2).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{Body, Gateway, Route, query_param, read_body};
use crate::domain::SessionId;
use crate::session::CreateOptions;

pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| {
        ApiError::bad_request("invalid_session_id", format!("invalid session id: {e}"))
    })
}

/// Parses an optional JSON body; an empty body is the type's default.
async fn body<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/json") || v.contains("+json"));
    let bytes = read_body(req, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if is_json == Some(false) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("invalid JSON body: {e}")))
}

fn bool_param(req: &Request<Incoming>, name: &str) -> Result<bool, ApiError> {
    match query_param(req.uri().query(), name).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be true or false, got {other:?}"),
        )),
    }
}

fn num_param<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    req: &Request<Incoming>,
    name: &str,
    default: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ApiError> {
    match query_param(req.uri().query(), name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<T>() {
            Ok(v) if range.contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "{name} must be a number between {} and {}, got {raw:?}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

/// The body of `POST .../sync-chats`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SyncBody {
    limit_per_chat: Option<u32>,
    chat_ids: Option<Vec<String>>,
}

pub(super) async fn handle(
    gw: &Arc<Gateway>,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    match route {
        Route::Dashboard => Ok(dashboard()),
        Route::Healthz => Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        Route::Readyz => Ok(readyz(gw).await),
        Route::Sessions => {
            let sessions = gw.sessions.list().await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "sessions": sessions }),
            ))
        }
        Route::Session { id } => {
            let id = session_id(&id)?;
            match method {
                http::Method::POST => {
                    let opts: CreateOptions = body(req, gw.max_body_bytes).await?;
                    let (created, snap) = gw.sessions.create(&id, opts).await?;
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    Ok(json(status, &snap))
                }
                http::Method::DELETE => {
                    let logout = bool_param(&req, "logout")?;
                    let purge = bool_param(&req, "purge")?;
                    gw.sessions.stop(&id, logout, purge).await?;
                    Ok(json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "sessionId": id.as_str(),
                            "status": "stopped",
                            "loggedOut": logout,
                            "purged": purge,
                        }),
                    ))
                }
                _ => Ok(json(StatusCode::OK, &gw.sessions.snapshot(&id).await?)),
            }
        }
        Route::Qr { id } => {
            let id = session_id(&id)?;
            let snap = gw.sessions.snapshot(&id).await?;
            let format = query_param(req.uri().query(), "format").unwrap_or_else(|| "json".into());
            if format != "json" {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("format must be json, got {format:?}"),
                ));
            }
            match snap.qr {
                Some(qr) => Ok(json(StatusCode::OK, &qr)),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_qr",
                    format!(
                        "session {id} has no QR code pending (status: {})",
                        snap.status.as_str()
                    ),
                )
                .with("status", snap.status.as_str())),
            }
        }
        Route::Chats { id } => {
            let id = session_id(&id)?;
            let limit = num_param(&req, "limit", Some(50u32), 1..=1000)?.unwrap_or(50);
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
        Route::Messages { id, chat_id } => {
            let id = session_id(&id)?;
            if chat_id.is_empty() || chat_id.len() > 256 {
                return Err(ApiError::bad_request(
                    "invalid_chat_id",
                    "chat id must be 1 to 256 characters",
                ));
            }
            let limit = num_param(&req, "limit", Some(50u32), 1..=1000)?.unwrap_or(50);
            let before = num_param(&req, "before", None, i64::MIN..=i64::MAX)?;
            gw.sessions.snapshot(&id).await?;
            let messages = gw.store.list_messages(&id, &chat_id, limit, before).await?;
            let next_before = (messages.len() as u32 == limit)
                .then(|| messages.last().map(|m| m.message.timestamp))
                .flatten();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "messages": messages, "nextBefore": next_before }),
            ))
        }
        Route::SyncChats { id } => {
            let id = session_id(&id)?;
            let b: SyncBody = body(req, gw.max_body_bytes).await?;
            if let Some(ids) = &b.chat_ids
                && (ids.is_empty() || ids.len() > 100_000)
            {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "chatIds must list between 1 and 100000 chat ids",
                ));
            }
            let sync_id = gw
                .sessions
                .start_sync(&id, b.limit_per_chat, b.chat_ids)
                .await?;
            let mut resp = json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "sessionId": id.as_str(), "syncId": sync_id }),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("/whatsapp-web/session/{id}/sync")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Route::Sync { id } => {
            let id = session_id(&id)?;
            gw.sessions.snapshot(&id).await?;
            match gw.store.latest_sync_run(&id).await? {
                Some(run) => Ok(json(StatusCode::OK, &run)),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_sync",
                    format!("session {id} has not synced yet"),
                )),
            }
        }
        Route::Ws | Route::Plugins(_) => unreachable!("dispatched before"),
    }
}

async fn readyz(gw: &Gateway) -> Response<Body> {
    let timeout = std::time::Duration::from_secs(3);
    let store = match tokio::time::timeout(timeout, gw.store.ping()).await {
        Ok(Ok(())) => serde_json::json!({"kind": gw.store.kind(), "ok": true}),
        Ok(Err(e)) => {
            serde_json::json!({"kind": gw.store.kind(), "ok": false, "error": e.to_string()})
        }
        Err(_) => serde_json::json!({"kind": gw.store.kind(), "ok": false, "error": "timed out"}),
    };
    let events = match tokio::time::timeout(timeout, gw.bus.ping()).await {
        Ok(Ok(())) => serde_json::json!({"kind": gw.bus.kind(), "ok": true}),
        Ok(Err(e)) => {
            serde_json::json!({"kind": gw.bus.kind(), "ok": false, "error": e.to_string()})
        }
        Err(_) => serde_json::json!({"kind": gw.bus.kind(), "ok": false, "error": "timed out"}),
    };
    let ok = store["ok"] == true && events["ok"] == true;
    json(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &serde_json::json!({
            "status": if ok { "ready" } else { "unavailable" },
            "store": store,
            "events": events,
        }),
    )
}

fn dashboard() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(include_bytes!(
        "../../assets/index.html"
    ))));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}
