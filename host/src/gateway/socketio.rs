//! Socket.IO v4 compatibility at `/socket.io/` (socketioxide), so frontends
//! written against the original design (`socket.emit('join-session',
//! {sessionId})`, `socket.on('sync_chats', ...)`) work unchanged.
//!
//! Each Socket.IO socket is a hub client like a `/ws` socket: same events,
//! same join snapshot, same bounded coalescing queue. Its writer emits the
//! queued frames as Socket.IO events; when socketioxide's own buffer is full
//! it waits, and a socket that stays full for the stall timeout is
//! disconnected, so a slow client never holds anything else up.
//!
//! Socket.IO clients count against the same cap as `/ws` clients: a
//! handshake while the host is full is refused with 503, and a socket that
//! connects when the last slot went meanwhile is disconnected. Engine.IO's
//! own heartbeat (ping every `WASYNC_WS_PING_MS`, gone after as long again
//! without a pong) closes half-open clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use socketioxide::extract::{Event, SocketRef, TryData};
use socketioxide::socket::DisconnectReason;
use socketioxide::{SendError, SocketError, SocketIo};

use super::error::ApiError;
use super::protocol::Protocol;
use super::{WireBody, query_param};
use crate::hub::{ClientQueue, Hub};
use crate::telemetry::{Metrics, TransportLabel};

/// Serves one Socket.IO request (polling or WebSocket upgrade).
pub type Handler = Box<
    dyn Fn(Request<Incoming>) -> futures_util::future::BoxFuture<'static, Response<WireBody>>
        + Send
        + Sync,
>;

/// The Socket.IO v4 endpoint (Engine.IO polling and WebSocket), served by
/// socketioxide with the same events as `/ws`: emit `join-session
/// {sessionId}`, listen for `session_state`, `qr`, `ready`, `sync_chats`, ...
/// A `GET` without `sid` opens an Engine.IO session (or, with
/// `transport=websocket` and an upgrade, a WebSocket); with `sid` it polls.
#[utoipa::path(get, path = "/socket.io/", tag = "events",
    security(("bearer" = []), ("apiKeyHeader" = []), ("apiKeyQuery" = [])),
    params(
        ("EIO" = String, Query, description = "Engine.IO protocol version", pattern = "^4$"),
        ("transport" = Transport, Query, description = "polling or websocket"),
        ("sid" = Option<String>, Query, description = "the Engine.IO session, once open")),
    responses(
        (status = 200, description = "Engine.IO handshake or polled packets", content(
            (String = "text/plain"), (String = "application/octet-stream"))),
        (status = 101, description = "switching to WebSocket"),
        (status = 400, description = "bad `EIO`, `transport` or `sid`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "foreign `Origin` or `Host`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 426, description = "`transport=websocket` without a WebSocket handshake", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "a handshake while the host serves its maximum of live-event clients (`too_many_clients`, `WASYNC_MAX_CLIENTS`)", body = super::openapi::Problem, content_type = "application/problem+json")))]
#[allow(dead_code)]
pub(super) fn endpoint() {}

/// Engine.IO long-polling: the client posts its packets to its session.
#[utoipa::path(post, path = "/socket.io/", tag = "events",
    security(("bearer" = []), ("apiKeyHeader" = []), ("apiKeyQuery" = [])),
    params(
        ("EIO" = String, Query, description = "Engine.IO protocol version", pattern = "^4$"),
        ("transport" = String, Query, description = "polling", pattern = "^polling$"),
        ("sid" = String, Query, description = "the Engine.IO session")),
    request_body(content = String, content_type = "text/plain", description = "Engine.IO packets"),
    responses(
        (status = 200, description = "accepted", body = String, content_type = "text/plain"),
        (status = 400, description = "bad `EIO`, `transport`, `sid` or packets", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "foreign `Origin` or `Host`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, description = "the packets did not arrive within `WASYNC_BODY_TIMEOUT_MS` (`body_timeout`); the connection closes", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, body = super::openapi::Problem, content_type = "application/problem+json")))]
#[allow(dead_code)]
pub(super) fn post_endpoint() {}

/// An Engine.IO transport.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Transport {
    Polling,
    Websocket,
}

/// Refuses what socketioxide would answer outside the document: a wrong
/// `EIO` or `transport`, or a WebSocket transport without a handshake; and
/// a handshake (a `GET` without `sid`) while the host is full.
fn precheck(req: &Request<Incoming>, hub: &Hub) -> Result<(), ApiError> {
    let q = req.uri().query();
    let eio = query_param(q, "EIO");
    if eio.as_deref() != Some("4") {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("EIO must be 4 (Engine.IO v4: socket.io-client 3 or later), got {eio:?}"),
        ));
    }
    let transport = query_param(q, "transport");
    if req.method() == http::Method::POST && transport.as_deref() != Some("polling") {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("only long-polling posts: transport must be polling, got {transport:?}"),
        ));
    }
    let handshake = req.method() == http::Method::GET && query_param(q, "sid").is_none();
    if handshake && hub.is_full() {
        return Err(super::ws::too_many_clients(
            crate::hub::HubError::TooManyClients {
                max: hub.max_clients(),
            },
        ));
    }
    match transport.as_deref() {
        Some("polling") => Ok(()),
        Some("websocket") if super::ws::is_upgrade(req.headers()) => Ok(()),
        Some("websocket") => Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "transport=websocket needs a WebSocket handshake: send Connection: Upgrade and Upgrade: websocket",
        )),
        other => Err(ApiError::bad_request(
            "invalid_query",
            format!("transport must be polling or websocket, got {other:?}"),
        )),
    }
}

/// socketioxide answers its own refusals with an empty body or Engine.IO's
/// `{code, message}`; they become problems like every other error here.
async fn as_problem(resp: Response<WireBody>) -> Response<WireBody> {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.as_u16() < 400 || is_problem {
        return resp;
    }
    // Engine.IO's refusals are a few constant bytes.
    let body = match resp.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Default::default(),
    };
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned));
    let e = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "body_too_large",
            "the Engine.IO payload is larger than the server takes",
        ),
        s if s.is_server_error() => ApiError::internal(format!("socket.io answered {s}")),
        s => ApiError::new(
            s,
            "socketio_refused",
            format!(
                "Socket.IO refused the request: {}",
                message.as_deref().unwrap_or("bad request")
            ),
        ),
    };
    super::boxed(e.into_response())
}

/// Builds the request handler and the Socket.IO handle.
pub fn build(protocol: Protocol, metrics: Arc<Metrics>, ping: Duration) -> (Handler, SocketIo) {
    let (svc, io) = SocketIo::builder()
        .max_buffer_size(256)
        .ping_interval(ping)
        .ping_timeout(ping)
        .build_svc();
    let hub = protocol.hub.clone();
    let handler: Handler = Box::new(move |req| {
        if let Err(e) = precheck(&req, &hub) {
            return Box::pin(std::future::ready(super::boxed(e.into_response())));
        }
        let fut = hyper::service::Service::call(&svc, req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(resp) => resp.map(|b| {
                    b.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                        format!("{e:?}").into()
                    })
                    .boxed_unsync()
                }),
                Err(e) => {
                    let e: Box<dyn std::fmt::Debug> = Box::new(e);
                    super::boxed(
                        super::error::ApiError::internal(format!("socket.io: {e:?}"))
                            .into_response(),
                    )
                }
            };
            as_problem(resp).await
        })
    });
    io.ns("/", move |socket: SocketRef| {
        let protocol = protocol.clone();
        let metrics = metrics.clone();
        async move { connected(socket, protocol, metrics) }
    });
    (handler, io)
}

fn connected(socket: SocketRef, protocol: Protocol, metrics: Arc<Metrics>) {
    let client = match protocol.hub.connect() {
        Ok(c) => c,
        Err(e) => {
            // The last slot went between the handshake and this connect.
            let _ = socket.emit(
                "error",
                &serde_json::json!({"code": "too_many_clients", "message": e.to_string()}),
            );
            let _ = socket.disconnect();
            return;
        }
    };
    let gauge = metrics
        .clients
        .get_or_create(&TransportLabel {
            transport: "socketio".into(),
        })
        .clone();
    gauge.inc();
    tokio::spawn(writer(socket.clone(), client.clone()));

    let (p, c) = (protocol.clone(), client.clone());
    socket.on_fallback(move |Event(event): Event, TryData(data): TryData<Value>| {
        let (p, c) = (p.clone(), c.clone());
        async move {
            p.handle(&c, &event, data.unwrap_or(Value::Null)).await;
        }
    });
    socket.on_disconnect(move |reason: DisconnectReason| {
        let (hub, client, gauge) = (protocol.hub.clone(), client.clone(), gauge.clone());
        async move {
            tracing::debug!(?reason, "socket.io client disconnected");
            client.close("disconnected");
            hub.disconnect(&client);
            gauge.dec();
        }
    });
}

async fn writer(socket: SocketRef, client: Arc<ClientQueue>) {
    let stall = client.limits().stall_timeout;
    while let Some(frame) = client.next().await {
        let Ok(v) = serde_json::from_str::<Value>(&frame.text) else {
            continue;
        };
        let event = v["event"].as_str().unwrap_or("error");
        let data = &v["data"];
        let deadline = Instant::now() + stall;
        loop {
            match socket.emit(event, data) {
                Ok(()) => break,
                Err(SendError::Socket(SocketError::InternalChannelFull))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "socket.io send failed; disconnecting");
                    client.close("client too slow: send stalled");
                    let _ = socket.disconnect();
                    return;
                }
            }
        }
    }
}
