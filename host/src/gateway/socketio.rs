//! Socket.IO v4 compatibility at `/socket.io/` (socketioxide), so frontends
//! written against the original design (`socket.emit('join-session',
//! {sessionId})`, `socket.on('sync_chats', ...)`) work unchanged.
//!
//! Each Socket.IO socket is a hub client like a `/ws` socket: same events,
//! same join snapshot, same bounded coalescing queue. Its writer emits the
//! queued frames as Socket.IO events; when socketioxide's own buffer is full
//! it waits, and a socket that stays full for the stall timeout is
//! disconnected, so a slow client never holds anything else up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use socketioxide::extract::{Event, SocketRef, TryData};
use socketioxide::socket::DisconnectReason;
use socketioxide::{SendError, SocketError, SocketIo};

use super::WireBody;
use super::protocol::Protocol;
use crate::hub::ClientQueue;
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
#[utoipa::path(get, path = "/socket.io/", tag = "events",
    params(("EIO" = String, Query, description = "Engine.IO protocol version (4)"),
        ("transport" = String, Query, description = "polling or websocket"),
        ("apiKey" = Option<String>, Query, description = "the API key")),
    responses((status = 200, description = "Engine.IO handshake / polling payload"),
        (status = 101, description = "switching to WebSocket"),
        (status = 401, body = super::openapi::Problem)))]
#[allow(dead_code)]
pub(super) fn endpoint() {}

/// Builds the request handler and the Socket.IO handle.
pub fn build(protocol: Protocol, metrics: Arc<Metrics>) -> (Handler, SocketIo) {
    let (svc, io) = SocketIo::builder().max_buffer_size(256).build_svc();
    let handler: Handler = Box::new(move |req| {
        let fut = hyper::service::Service::call(&svc, req);
        Box::pin(async move {
            match fut.await {
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
            }
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
    let client = protocol.hub.connect();
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
