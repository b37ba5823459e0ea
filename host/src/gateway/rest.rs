//! REST handlers (DESIGN §2).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::openapi::Problem;
use super::{Body, Gateway, Route, query_param, read_body};
use crate::domain::{PairingCode, QrCode, SessionId, SessionSnapshot, StoredMessage, SyncRun};
use crate::session::CreateOptions;
use crate::storage::{ChatPage, MessageCursor};

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

fn bytes(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| {
        ApiError::bad_request("invalid_session_id", format!("invalid session id: {e}"))
    })
}

/// Refuses a request body that is not declared `application/json` (a
/// `charset` parameter is fine): 415. No `Content-Type` is accepted only
/// without a body. Browsers send `text/plain`, form and multipart bodies
/// cross-site without asking first; JSON they never do.
pub(super) fn require_json(headers: &http::HeaderMap, has_body: bool) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    });
    match (declared, has_body) {
        (Some(true), _) | (None, false) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        )),
    }
}

/// Parses a JSON body that must be an object: serde would also fill a
/// struct from an array of its fields in order, and `null` is no object.
pub(super) fn json_object<T: DeserializeOwned>(
    headers: &http::HeaderMap,
    bytes: &Bytes,
) -> Result<T, ApiError> {
    require_json(headers, true)?;
    let bad = |e: String| ApiError::bad_request("bad_json", format!("invalid JSON body: {e}"));
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad("expected a JSON object {...}".into()));
    }
    whole_numbers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => bad(e.inner().to_string()),
            _ => bad(format!("{path}: {}", e.inner())),
        }
    })
}

/// Writes numbers such as `100.0` as the integers they are: JSON (and the
/// document's JSON Schema) does not tell `100` from `100.0`, serde does.
fn whole_numbers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(members) => members.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Parses an optional JSON object body; an empty body is the type's default.
fn parse_body<T: DeserializeOwned + Default>(
    parts: &http::request::Parts,
    bytes: &Bytes,
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        require_json(&parts.headers, false)?;
        return Ok(T::default());
    }
    json_object(&parts.headers, bytes)
}

fn bool_param(uri: &http::Uri, name: &str) -> Result<bool, ApiError> {
    match query_param(uri.query(), name).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be true or false, got {other:?}"),
        )),
    }
}

fn num_param<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    uri: &http::Uri,
    name: &str,
    default: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ApiError> {
    match query_param(uri.query(), name) {
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
    #[schema(value_type = Option<crate::domain::SyncMode>)]
    pub mode: Option<crate::domain::SyncMode>,
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

/// `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: String,
}

/// One dependency in `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DependencyState {
    /// Adapter (`embedded`, `mongo`, `local`, `amqp`).
    pub kind: String,
    pub ok: bool,
    /// Why it is not ok: `unreachable` or `timed out`; the cause is in the
    /// server's logs, never here.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(unreachable|timed out)$")]
    pub error: Option<String>,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    pub store: DependencyState,
    pub events: DependencyState,
}

pub(super) async fn handle(
    gw: &Arc<Gateway>,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    match route {
        Route::Dashboard => Ok(dashboard()),
        Route::Healthz => Ok(healthz()),
        Route::Readyz => Ok(readyz(gw).await),
        Route::Sessions => list_sessions(gw, req.uri()).await,
        Route::Session { id } => {
            let id = session_id(&id)?;
            match method {
                http::Method::POST => command(gw, Command::Create, id, req).await,
                http::Method::DELETE => command(gw, Command::Stop, id, req).await,
                _ => get_session(gw, id).await,
            }
        }
        Route::Qr { id } => command(gw, Command::Qr, session_id(&id)?, req).await,
        Route::PairingCode { id } => command(gw, Command::PairingCode, session_id(&id)?, req).await,
        Route::Chats { id } => list_chats(gw, session_id(&id)?, req).await,
        Route::Messages { id, chat_id } => list_messages(gw, session_id(&id)?, chat_id, req).await,
        Route::SyncChats { id } => command(gw, Command::Sync, session_id(&id)?, req).await,
        Route::Cluster => cluster(gw).await,
        Route::Quarantine { id } => {
            let id = session_id(&id)?;
            match method {
                http::Method::DELETE => clear_quarantine(gw, id).await,
                _ => list_quarantine(gw, id, req).await,
            }
        }
        Route::Sync { id } => get_sync(gw, session_id(&id)?).await,
        Route::Metrics => Ok(metrics(gw).await),
        Route::OpenApi => Ok(json(
            StatusCode::OK,
            &super::openapi::served(gw.api_key.is_some()),
        )),
        Route::Ws | Route::SocketIo | Route::Plugins(_) | Route::Webhooks(_) => {
            unreachable!("dispatched before")
        }
    }
}

/// A request that acts on a session: run by the host that owns it.
#[derive(Debug, Clone, Copy)]
enum Command {
    Create,
    Stop,
    Sync,
    Qr,
    PairingCode,
}

/// Runs a session command here, or passes it to the live host that owns
/// the session. Also passed on: a create this host has no room for (to the
/// least-loaded host with room), and a command that finds, once here, that
/// another host took the session meanwhile. A request already forwarded is
/// always answered here.
async fn command(
    gw: &Arc<Gateway>,
    cmd: Command,
    id: SessionId,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let forwarded = crate::cluster::forward::is_forwarded(&req);
    let (parts, incoming) = req.into_parts();
    let bytes = match cmd {
        Command::Create | Command::Sync => {
            read_body(
                Request::from_parts(parts.clone(), incoming),
                gw.max_body_bytes,
                gw.body_timeout,
            )
            .await?
        }
        Command::Stop | Command::Qr | Command::PairingCode => Bytes::new(),
    };
    if !forwarded
        && let Some(peer) = gw
            .cluster
            .owner_elsewhere(id.as_str())
            .await
            .map_err(cluster_unavailable)?
    {
        return forward(gw, &peer, &parts, bytes).await;
    }
    let local = match cmd {
        Command::Create => create_session(gw, id, &parts, &bytes).await,
        Command::Stop => stop_session(gw, id, &parts).await,
        Command::Sync => sync_chats(gw, id, &parts, &bytes).await,
        Command::Qr => get_qr(gw, id, &parts).await,
        Command::PairingCode => get_pairing_code(gw, id).await,
    };
    let e = match local {
        Ok(r) => return Ok(r),
        Err(e) if forwarded => return Err(e),
        Err(e) => e,
    };
    let owner = e
        .extra
        .as_ref()
        .and_then(|x| x.get("ownerHostId"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let peer = match (e.code, owner) {
        ("session_elsewhere", Some(owner)) => gw.cluster.peer_of(&owner).await,
        ("at_capacity", _) => gw.cluster.host_with_room().await,
        _ => None,
    };
    match peer {
        Some(peer) => forward(gw, &peer, &parts, bytes).await,
        None => Err(e),
    }
}

async fn forward(
    gw: &Gateway,
    peer: &crate::cluster::Peer,
    parts: &http::request::Parts,
    bytes: Bytes,
) -> Result<Response<Body>, ApiError> {
    gw.metrics.forwarded_requests.inc();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    tracing::debug!(to = %peer.host_id, %path, "forwarding to the owning host");
    gw.cluster
        .forwarder
        .forward(
            peer,
            &parts.method,
            path,
            parts.headers.get(header::CONTENT_TYPE),
            bytes,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "forward failed");
            ApiError::new(
                crate::cluster::forward::failure_status(),
                "owner_unreachable",
                format!(
                    "the host that runs this session ({}) cannot be reached right now; retry shortly",
                    peer.host_id
                ),
            )
            .with("ownerHostId", peer.host_id.as_str())
        })
}

fn cluster_unavailable(e: crate::cluster::ClusterError) -> ApiError {
    tracing::warn!(error = %e, "cluster coordination unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "cluster_unavailable",
        "the cluster's coordination store is unreachable right now; retry shortly",
    )
}

/// The live hosts of the cluster, the sessions each holds, and the
/// sessions with an actor on the answering host.
#[utoipa::path(get, path = "/cluster", tag = "operations",
    responses((status = 200, body = crate::cluster::ClusterView), (status = 401, body = Problem),
        (status = 503, body = Problem)))]
pub(super) async fn cluster(gw: &Gateway) -> Result<Response<Body>, ApiError> {
    let view = gw
        .cluster
        .view(gw.sessions.local_actors())
        .await
        .map_err(cluster_unavailable)?;
    Ok(json(StatusCode::OK, &view))
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
pub(super) async fn list_quarantine(
    gw: &Gateway,
    id: SessionId,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let limit = num_param(req.uri(), "limit", Some(50u32), 1..=1000)?.unwrap_or(50);
    let cursor = query_param(req.uri().query(), "cursor");
    if cursor
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 512)
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "cursor is not one this server returned",
        ));
    }
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
pub(super) async fn clear_quarantine(
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

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "alive", body = Health)))]
pub(super) fn healthz() -> Response<Body> {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
        },
    )
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
pub(super) async fn list_sessions(
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
pub(super) async fn create_session(
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
pub(super) async fn get_session(gw: &Gateway, id: SessionId) -> Result<Response<Body>, ApiError> {
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
pub(super) async fn stop_session(
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
pub(super) async fn get_qr(
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
            let svg = super::qr::svg(&qr.qr).map_err(ApiError::internal)?;
            Ok(bytes(StatusCode::OK, "image/svg+xml", svg.into_bytes()))
        }
        Some(qr) if format == "png" => {
            let png = super::qr::png(&qr.qr).map_err(ApiError::internal)?;
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
pub(super) async fn get_pairing_code(
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

/// Stored chats, newest activity first. Never starts a sync.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/chats", tag = "data",
    params(("id" = String, Path, description = "session id"),
        ("limit" = Option<u32>, Query, description = "1–1000, default 50", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses((status = 200, body = ChatPage), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(super) async fn list_chats(
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
pub(super) async fn list_messages(
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
pub(super) async fn sync_chats(
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
    let sync_id = gw
        .sessions
        .start_sync(&id, b.mode, b.limit_per_chat, b.chat_ids)
        .await?;
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
pub(super) async fn get_sync(gw: &Gateway, id: SessionId) -> Result<Response<Body>, ApiError> {
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

/// Readiness: the store and the event broker are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness), (status = 401, body = Problem)))]
pub(super) async fn readyz(gw: &Gateway) -> Response<Body> {
    let timeout = std::time::Duration::from_secs(3);
    let state = |kind: &str, r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => DependencyState {
            kind: kind.into(),
            ok: true,
            error: None,
        },
        Ok(Err(e)) => {
            // The cause (addresses, driver messages) stays in the logs.
            tracing::warn!(dependency = kind, error = %e, "readiness check failed");
            DependencyState {
                kind: kind.into(),
                ok: false,
                error: Some("unreachable".into()),
            }
        }
        Err(_) => DependencyState {
            kind: kind.into(),
            ok: false,
            error: Some("timed out".into()),
        },
    };
    let store = state(
        gw.store.kind(),
        tokio::time::timeout(timeout, async {
            gw.store.ping().await.map_err(|e| e.to_string())
        })
        .await,
    );
    let events = state(
        gw.bus.kind(),
        tokio::time::timeout(timeout, async {
            gw.bus.ping().await.map_err(|e| e.to_string())
        })
        .await,
    );
    let ok = store.ok && events.ok;
    json(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &Readiness {
            status: if ok { "ready" } else { "unavailable" }.into(),
            store,
            events,
        },
    )
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, body = Problem)))]
pub(super) async fn metrics(gw: &Gateway) -> Response<Body> {
    use crate::telemetry::StatusLabel;
    let counts = gw.sessions.status_counts();
    for status in crate::domain::SessionStatus::ALL {
        gw.metrics
            .sessions
            .get_or_create(&StatusLabel {
                status: status.as_str().into(),
            })
            .set(counts.get(&status).copied().unwrap_or(0) as i64);
    }
    // A scrape never waits on an unreachable store: the gauge keeps its
    // last value and everything else is answered at once.
    if let Ok(Ok(pending)) = tokio::time::timeout(
        std::time::Duration::from_millis(250),
        gw.store.count_pending_events(),
    )
    .await
    {
        gw.metrics.outbox_pending.set(pending as i64);
    }
    // The host's registry, then the plugin runtime's own counters, in the
    // Prometheus text format.
    let mut text = gw.metrics.render();
    if let Some(i) = text.rfind("# EOF") {
        text.truncate(i);
    }
    if let Some(mgr) = &gw.plugins {
        text.push_str(&mgr.render_prometheus());
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "operations", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub(super) fn dashboard() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(include_bytes!(
        "../../assets/index.html"
    ))));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}
