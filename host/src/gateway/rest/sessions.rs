//! Sessions: create, read, stop, list (filtered by metadata), their QR and
//! pairing codes, manual syncs and their runs.

use super::*;

/// The body of `POST .../sync-chats`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncBody {
    /// Messages per chat, 1–10,000 (default 100).
    #[schema(minimum = 1, maximum = 10000)]
    pub limit_per_chat: Option<u32>,
    /// Only these chats (default: every chat).
    #[schema(min_items = 1, max_items = 100000)]
    pub chat_ids: Option<Vec<String>>,
    /// `full` (default): the newest `limitPerChat` messages of every chat;
    /// `incremental`: per chat only what is newer than its newest stored
    /// message (chat metadata is refreshed either way).
    #[schema(value_type = Option<ManualSyncMode>)]
    pub mode: Option<ManualSyncMode>,
    /// Neither read nor store messages older than this many days
    /// (1–36,500; default: no limit).
    #[schema(minimum = 1, maximum = 36500)]
    pub max_age_days: Option<u32>,
}

/// How `GET .../qr` renders the code.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum QrFormat {
    Json,
    Svg,
    Png,
}

/// `202` answer of `POST .../sync-chats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncAccepted {
    pub session_id: String,
    pub sync_id: String,
}

/// Answer of `DELETE .../session/:id`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stopped {
    pub session_id: String,
    /// Always `stopped`.
    pub status: String,
    pub logged_out: bool,
    pub purged: bool,
}

/// `GET /whatsapp-web/sessions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionSnapshot>,
}

/// Every session, live and stored.
///
/// Filter by metadata with any number of `metadata.KEY=VALUE` query
/// parameters (e.g. `?metadata.team=sales&metadata.region=eu`): a session
/// is listed when every one matches exactly. Other parameters are ignored.
#[utoipa::path(get, path = "/whatsapp-web/sessions", tag = "sessions",
    responses((status = 200, body = SessionList),
        (status = 400, description = "a `metadata.` filter names an invalid key (`invalid_query`)", body = Problem),
        (status = 401, body = Problem), (status = 503, body = Problem)))]
pub(in crate::gateway) async fn list_sessions(
    gw: &Gateway,
    uri: &http::Uri,
) -> Result<Response<Body>, ApiError> {
    let filter = metadata_filter(uri.query())?;
    let mut sessions = gw.sessions.list().await?;
    sessions.retain(|s| {
        filter
            .iter()
            .all(|(k, v)| s.metadata.get(k).is_some_and(|have| have == v))
    });
    Ok(json(StatusCode::OK, &SessionList { sessions }))
}

/// The `metadata.KEY=VALUE` pairs of a query.
fn metadata_filter(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
    let mut filter = Vec::new();
    for (k, v) in pairs {
        let Some(key) = k.strip_prefix("metadata.") else {
            continue;
        };
        if !crate::domain::valid_metadata_key(key) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "metadata filter key {key:?} must be 1 to {} of letters, digits, '_', '-', '.'",
                    crate::domain::METADATA_MAX_KEY
                ),
            ));
        }
        filter.push((key.to_owned(), v.into_owned()));
    }
    Ok(filter)
}

/// Creates and starts a session (idempotent: 200 if it already runs).
#[utoipa::path(post, path = "/whatsapp-web/session/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id, ^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = ref("#/components/schemas/CreateOptions"), description = "optional; an empty body takes the defaults"),
    responses(
        (status = 201, description = "created and starting", body = SessionSnapshot),
        (status = 200, description = "already running", body = SessionSnapshot),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 408, description = "the body did not arrive within `WASYNC_BODY_TIMEOUT_MS` (`body_timeout`); the connection closes", body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 503, description = "no host has room (`at_capacity`), the owning host cannot be reached (`owner_unreachable`), or the store or cluster is unavailable", body = Problem)))]
pub(in crate::gateway) async fn create_session(
    gw: &Gateway,
    id: SessionId,
    parts: &http::request::Parts,
    bytes: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let opts: CreateOptions = parse_body(parts, bytes)?;
    // Provider options are objects; serde would read an array as one.
    for (name, v) in [
        ("simulator", &opts.simulator),
        ("webdriver", &opts.webdriver),
    ] {
        if v.as_ref().is_some_and(|v| !v.is_object() && !v.is_null()) {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("{name} must be an object"),
            ));
        }
    }
    let (created, snap) = gw.sessions.create(&id, opts).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &snap))
}

/// A session's status snapshot.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionSnapshot), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
pub(in crate::gateway) async fn get_session(
    gw: &Gateway,
    id: SessionId,
) -> Result<Response<Body>, ApiError> {
    Ok(json(StatusCode::OK, &gw.sessions.snapshot(&id).await?))
}

/// Stops a session; stored data stays unless `purge`.
#[utoipa::path(delete, path = "/whatsapp-web/session/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id"),
        ("logout" = Option<bool>, Query, description = "also drop the WhatsApp login"),
        ("purge" = Option<bool>, Query, description = "also delete stored chats, messages, runs and quarantine")),
    responses((status = 200, body = Stopped), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`logout_failed`: the login of a session that is not running could not be dropped (e.g. its profile is on a remote grid node)", body = Problem),
        (status = 503, description = "the owning host cannot be reached (`owner_unreachable`), or the store or cluster is unavailable", body = Problem)))]
pub(in crate::gateway) async fn stop_session(
    gw: &Gateway,
    id: SessionId,
    parts: &http::request::Parts,
) -> Result<Response<Body>, ApiError> {
    let logout = bool_param(&parts.uri, "logout")?;
    let purge = bool_param(&parts.uri, "purge")?;
    gw.sessions.stop(&id, logout, purge).await?;
    Ok(json(
        StatusCode::OK,
        &Stopped {
            session_id: id.to_string(),
            status: "stopped".into(),
            logged_out: logout,
            purged: purge,
        },
    ))
}

/// The pending QR code, as JSON or rendered.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/qr", tag = "sessions",
    params(("id" = String, Path, description = "session id"),
        ("format" = Option<QrFormat>, Query, description = "json (default), svg or png")),
    responses(
        (status = 200, description = "the QR code: JSON, or rendered by `format`", content(
            (QrCode = "application/json"), (String = "image/svg+xml"), ("image/png"))),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, description = "no such session, or no QR pending (`no_qr`, names `sessionStatus`; a session that links with a phone number has a pairing code instead: `GET .../pairing-code`)", body = Problem),
        (status = 503, description = "the owning host cannot be reached (`owner_unreachable`), or the store or cluster is unavailable", body = Problem)))]
pub(in crate::gateway) async fn get_qr(
    gw: &Gateway,
    id: SessionId,
    parts: &http::request::Parts,
) -> Result<Response<Body>, ApiError> {
    let snap = gw.sessions.snapshot(&id).await?;
    let format = query_param(parts.uri.query(), "format").unwrap_or_else(|| "json".into());
    if !["json", "svg", "png"].contains(&format.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("format must be json, svg or png, got {format:?}"),
        ));
    }
    match snap.qr {
        Some(qr) if format == "svg" => {
            let svg = crate::gateway::qr::svg(&qr.qr).map_err(ApiError::internal)?;
            Ok(bytes(StatusCode::OK, "image/svg+xml", svg.into_bytes()))
        }
        Some(qr) if format == "png" => {
            let png = crate::gateway::qr::png(&qr.qr).map_err(ApiError::internal)?;
            Ok(bytes(StatusCode::OK, "image/png", png))
        }
        Some(qr) => Ok(json(StatusCode::OK, &qr)),
        None if snap.pairing_code.is_some() => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_qr",
            format!(
                "session {id} links with a phone number: it shows a pairing code, not a QR code (GET /whatsapp-web/session/{id}/pairing-code)"
            ),
        )
        .with("sessionStatus", snap.status.as_str())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_qr",
            format!(
                "session {id} has no QR code pending (status: {})",
                snap.status.as_str()
            ),
        )
        .with("sessionStatus", snap.status.as_str())),
    }
}

/// The pending pairing code of a session created with `login.phoneNumber`:
/// type it on the phone (WhatsApp → Linked devices → Link a device → Link
/// with phone number instead).
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/pairing-code", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses(
        (status = 200, description = "the pairing code", body = PairingCode),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, description = "no such session, or no pairing code pending (`no_pairing_code`, names `sessionStatus`): the session links with a QR code, or is linked already", body = Problem),
        (status = 503, description = "the owning host cannot be reached (`owner_unreachable`), or the store or cluster is unavailable", body = Problem)))]
pub(in crate::gateway) async fn get_pairing_code(
    gw: &Gateway,
    id: SessionId,
) -> Result<Response<Body>, ApiError> {
    let snap = gw.sessions.snapshot(&id).await?;
    match snap.pairing_code {
        Some(code) => Ok(json(StatusCode::OK, &code)),
        None => {
            let why = if snap.qr.is_some() {
                format!(
                    "session {id} links with a QR code (GET /whatsapp-web/session/{id}/qr); create it with login.phoneNumber to link with a pairing code"
                )
            } else {
                format!(
                    "session {id} has no pairing code pending (status: {})",
                    snap.status.as_str()
                )
            };
            Err(ApiError::new(StatusCode::NOT_FOUND, "no_pairing_code", why)
                .with("sessionStatus", snap.status.as_str()))
        }
    }
}

/// Starts a manual sync.
#[utoipa::path(post, path = "/whatsapp-web/session/{id}/sync-chats", tag = "sync",
    params(("id" = String, Path, description = "session id")),
    request_body(content = ref("#/components/schemas/SyncBody"), description = "optional; an empty body syncs every chat"),
    responses(
        (status = 202, description = "started; follow it on the WebSocket or at GET .../sync", body = SyncAccepted),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "a sync runs (`sync_running`, names `syncId`) or the session is not ready (`session_not_ready`, names `sessionStatus`)", body = Problem),
        (status = 408, description = "the body did not arrive within `WASYNC_BODY_TIMEOUT_MS` (`body_timeout`); the connection closes", body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 503, description = "the owning host cannot be reached (`owner_unreachable`), or the store or cluster is unavailable", body = Problem)))]
pub(in crate::gateway) async fn sync_chats(
    gw: &Gateway,
    id: SessionId,
    parts: &http::request::Parts,
    bytes: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let b: SyncBody = parse_body(parts, bytes)?;
    if let Some(ids) = &b.chat_ids
        && (ids.is_empty() || ids.len() > 100_000)
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "chatIds must list between 1 and 100000 chat ids",
        ));
    }
    let req = crate::session::SyncRequest {
        mode: b.mode.map(Into::into),
        limit_per_chat: b.limit_per_chat,
        chat_ids: b.chat_ids,
        max_age_days: b.max_age_days,
        ..Default::default()
    };
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

/// The current or last sync run.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/sync", tag = "sync",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SyncRun), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, description = "no such session, or no sync yet (`no_sync`)", body = Problem)))]
pub(in crate::gateway) async fn get_sync(
    gw: &Gateway,
    id: SessionId,
) -> Result<Response<Body>, ApiError> {
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
