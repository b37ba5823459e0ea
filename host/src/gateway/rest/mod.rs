//! REST handlers (DESIGN §2).
//!
//! - this file: body and query parsing, the dispatch of a route to its
//!   handler, forwarding a session's commands to the host that owns it;
//! - `sessions`: create, read, stop and list sessions, QR and pairing codes,
//!   manual syncs and their runs;
//! - `history`: deeper history of one chat;
//! - `data`: stored chats, messages and quarantine;
//! - `contacts`: stored contacts;
//! - `ops`: health, readiness, metrics, the dashboard.

mod contacts;
mod data;
mod history;
mod ops;
mod sessions;

pub(super) use contacts::*;
pub(super) use data::*;
pub(super) use history::*;
pub(super) use ops::*;
pub(super) use sessions::*;

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
        Route::Contacts { id } => list_contacts(gw, session_id(&id)?, req).await,
        Route::Contact { id, contact_id } => get_contact(gw, session_id(&id)?, contact_id).await,
        Route::SyncChats { id } => command(gw, Command::Sync, session_id(&id)?, req).await,
        Route::ChatSync { id, chat_id } => {
            command(gw, Command::History { chat_id }, session_id(&id)?, req).await
        }
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
#[derive(Debug, Clone)]
enum Command {
    Create,
    Stop,
    Sync,
    History { chat_id: String },
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
        Command::Create | Command::Sync | Command::History { .. } => {
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
        Command::History { chat_id } => sync_history(gw, id, chat_id, &parts, &bytes).await,
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
