//! The native WebSocket endpoint `GET /ws` (DESIGN §3).
//!
//! hyper answers the upgrade; tokio-tungstenite speaks the protocol on the
//! upgraded connection. Each socket has two halves: a reader that handles
//! client frames, and a writer that drains the client's hub queue, so a
//! client that stops reading only ever fills its own bounded queue.
//!
//! A client that neither reads nor writes (a half-open TCP connection, a
//! suspended laptop) would keep its slot, queue and rooms for ever: the
//! writer pings every `ws_ping`, and the reader closes a client that has sent
//! nothing, pong included, for twice that. A client is counted against the
//! host's cap before the 101, so one past it gets a 503 problem instead.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::error::ApiError;
use super::protocol::error_frame;
use super::{Body, Gateway};
use crate::hub::ClientQueue;

/// Largest client frame; client messages are tiny JSON objects.
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// The native WebSocket endpoint. Frames are JSON text
/// `{"event": NAME, "data": {...}}`; see the README for the events.
#[utoipa::path(get, path = "/ws", tag = "events",
    security(("bearer" = []), ("apiKeyHeader" = []), ("apiKeyQuery" = [])),
    responses((status = 101, description = "switching to WebSocket"),
        (status = 400, body = super::openapi::Problem), (status = 401, body = super::openapi::Problem),
        (status = 426, description = "not a WebSocket handshake", body = super::openapi::Problem),
        (status = 503, description = "the host serves its maximum of live-event clients (`too_many_clients`, `WASYNC_MAX_CLIENTS`)", body = super::openapi::Problem)))]
pub(super) fn upgrade(
    gw: Arc<Gateway>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let headers = req.headers();
    if !is_upgrade(headers) {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "/ws speaks WebSocket: send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::bad_request(
            "websocket_version",
            "only WebSocket version 13 is supported",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(ApiError::bad_request(
            "websocket_key",
            "missing Sec-WebSocket-Key",
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let client = gw.hub.connect().map_err(too_many_clients)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tasks = gw.tasks.clone();
    tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut cfg = WebSocketConfig::default();
                // Clients send only small frames (join, leave, ping): the
                // default 128 KiB read buffer per connection was most of a
                // connected client's memory (the soak: ~130 MiB for 1,000).
                cfg.read_buffer_size = 4 * 1024;
                cfg.max_message_size = Some(MAX_CLIENT_FRAME);
                cfg.max_frame_size = Some(MAX_CLIENT_FRAME);
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(cfg),
                )
                .await;
                connection(gw, ws, client).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                gw.hub.disconnect(&client);
            }
        }
    });
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(resp)
}

/// The 503 for a client past `WASYNC_MAX_CLIENTS` (either transport).
pub(super) fn too_many_clients(e: crate::hub::HubError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_clients",
        format!("{e}; retry later or connect to another host"),
    )
}

/// Whether the headers ask for a WebSocket (`Connection: Upgrade`,
/// `Upgrade: websocket`).
pub(super) fn is_upgrade(headers: &http::HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// Most frames written per flush.
const WRITE_BATCH: usize = 64;

/// The frame as a text message over the hub's one buffer: serialized and
/// checked once per event, shared by every client.
fn text_message(frame: &crate::hub::Frame) -> Message {
    Message::Text(frame.payload())
}

#[tracing::instrument(name = "gateway.ws", skip_all)]
async fn connection<S>(gw: Arc<Gateway>, ws: WebSocketStream<S>, client: Arc<ClientQueue>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let clients = gw
        .metrics
        .clients
        .get_or_create(&crate::telemetry::TransportLabel {
            transport: "ws".into(),
        })
        .clone();
    clients.inc();
    let (sink, mut stream) = ws.split();

    // Writer: the only task that writes to the socket.
    let writer = tokio::spawn(write_frames(
        sink,
        client.clone(),
        gw.shutdown.clone(),
        gw.ws_ping,
    ));

    // Any frame from the client, a pong included, shows it is there.
    let silence = gw.ws_ping * 2;
    // Whether the server ends the connection (then the client may still
    // answer our close frame) or the client did (its close, or the socket).
    let mut ours = false;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = client.closed().cancelled() => {
                ours = true;
                break;
            }
            _ = tokio::time::sleep(silence) => {
                client.close("client silent: no answer to ping");
                ours = true;
                break;
            }
        };
        let Some(msg) = msg else { break };
        match msg {
            Ok(Message::Text(text)) => handle_frame(&gw, &client, text.as_str()).await,
            Ok(Message::Binary(_)) => client.push(error_frame(
                "binary_not_supported",
                "send JSON text frames: {\"event\": NAME, \"data\": {...}}",
            )),
            Ok(Message::Close(_)) => break,
            Ok(_) => {} // ping/pong are answered by the protocol layer
            Err(e) => {
                tracing::debug!(error = %e, "websocket read failed");
                break;
            }
        }
    }
    client.close("closing");
    gw.hub.disconnect(&client);
    clients.dec();
    let _ = writer.await;
    if ours {
        // The closing handshake (RFC 6455 §7.1.1): after our close frame the
        // socket stays open for the client's answer, for a second at most,
        // so a client still reading (and answering a ping on the way) sees
        // our close code rather than a reset.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The writer half: drains the client's queue into the socket (pinging
/// when idle), then ends the connection with a close frame.
///
/// A failed write never skips the close: when the client closed first and
/// a frame was already on its way, the write fails (tungstenite refuses
/// frames after the peer's close) while the answer to the client's close
/// is still held in tungstenite's buffer; the close step flushes it, so the
/// client sees its closing handshake completed instead of a reset.
async fn write_frames<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    c: Arc<ClientQueue>,
    shutdown: tokio_util::sync::CancellationToken,
    ping_every: std::time::Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let stall = c.limits().stall_timeout;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut next_ping = tokio::time::Instant::now() + ping_every;
    loop {
        // Frames already queued go out at once, without a wait: the ping
        // deadline and the shutdown are only waited on while the queue is
        // empty (polling them for every batch of a burst cost more than
        // the frames), and looked at once per batch otherwise.
        if c.drain_into(&mut batch, WRITE_BATCH) == 0 {
            let frame = tokio::select! {
                f = c.next() => f,
                _ = tokio::time::sleep_until(next_ping) => None,
                _ = shutdown.cancelled() => {
                    c.close("server shutting down");
                    None
                }
            };
            match frame {
                Some(f) => {
                    batch.push(f);
                    c.drain_into(&mut batch, WRITE_BATCH - 1);
                }
                None if c.is_closed() => break,
                None => {}
            }
        } else if shutdown.is_cancelled() {
            c.close("server shutting down");
            break;
        }
        // A client that is sent frames without a pause still gets its
        // pings, so its pongs keep showing it is there.
        let now = tokio::time::Instant::now();
        let ping_due = now >= next_ping;
        if ping_due {
            next_ping = now + ping_every;
        }
        // Everything drained goes out in one write: one flush (one
        // syscall) per batch, not per frame.
        let send = async {
            for f in batch.drain(..) {
                sink.feed(text_message(&f)).await?;
            }
            if ping_due {
                sink.feed(Message::Ping(Default::default())).await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout(stall, send).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                c.close("connection lost");
                break;
            }
            Err(_) => {
                c.close("client too slow: send stalled");
                break;
            }
        }
    }
    let reason = c.close_reason().unwrap_or_else(|| "closing".into());
    let code = if reason.contains("shutting down") {
        CloseCode::Away
    } else if reason.contains("too slow") || reason.contains("silent") {
        CloseCode::Policy
    } else {
        CloseCode::Normal
    };
    let close = async {
        let ours = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        }));
        // When the client closed first, tungstenite refuses a second
        // close frame but holds its answer (the client's own code,
        // RFC 6455 §5.5.1): flushing sends it, so the client sees a
        // clean close instead of the connection dropped mid-handshake.
        if sink.send(ours).await.is_err() {
            let _ = sink.flush().await;
        }
    };
    // A lost connection fails at once or, unread, within the second.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), close).await;
}

async fn handle_frame(gw: &Gateway, client: &Arc<ClientQueue>, text: &str) {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            client.push(error_frame("bad_json", format!("frame is not JSON: {e}")));
            return;
        }
    };
    let Some(event) = value.get("event").and_then(|e| e.as_str()) else {
        client.push(error_frame(
            "bad_frame",
            "a frame is {\"event\": NAME, \"data\": {...}}",
        ));
        return;
    };
    let data = value
        .get("data")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    gw.protocol.handle(client, event, data).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ServerEvent;
    use crate::hub::{Frame, Hub, QueueLimits};

    /// The client closes while a frame is already on its way: the write of
    /// that frame fails, and the writer must still complete the client's
    /// closing handshake (soak: one "reset without closing handshake" in
    /// 141,425 connections came from returning there without the flush).
    #[tokio::test]
    async fn a_write_failing_after_the_clients_close_still_answers_it() {
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        client
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })))
            .await
            .unwrap();
        let (sink, mut stream) = server.split();
        // The reader has taken the close in, not yet marked the client
        // closed: the writer pops a frame queued just before.
        assert!(matches!(stream.next().await, Some(Ok(Message::Close(_)))));
        let hub = Hub::new(QueueLimits::default());
        let queue = hub.connect().unwrap();
        queue.push(Frame::new(Some("s"), &ServerEvent::Pong {}));
        let writer = write_frames(
            sink,
            queue.clone(),
            tokio_util::sync::CancellationToken::new(),
            std::time::Duration::from_secs(60),
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer ends");
        drop(stream);
        match client.next().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
            other => panic!("expected the close answer, got {other:?}"),
        }
    }

    /// A writer with `n` pongs queued, over a pipe of `pipe` bytes.
    async fn busy_writer(
        n: usize,
        pipe: usize,
        shutdown: tokio_util::sync::CancellationToken,
        ping_every: std::time::Duration,
    ) -> (
        WebSocketStream<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<()>,
    ) {
        let (server_io, client_io) = tokio::io::duplex(pipe);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let (sink, stream) = server.split();
        let hub = Hub::new(QueueLimits {
            max_frames: n + 1,
            ..Default::default()
        });
        let queue = hub.connect().unwrap();
        for _ in 0..n {
            queue.push(Frame::new(None, &ServerEvent::Pong {}));
        }
        let writer = tokio::spawn(async move {
            write_frames(sink, queue, shutdown, ping_every).await;
            drop(stream);
        });
        (client, writer)
    }

    /// A client sent frames without a pause (its queue never empties) is
    /// still pinged, so its pongs keep it from being closed as silent.
    #[tokio::test]
    async fn a_client_kept_busy_is_still_pinged() {
        let n = 5_000;
        let (mut client, writer) = busy_writer(
            n,
            1024,
            tokio_util::sync::CancellationToken::new(),
            std::time::Duration::from_millis(10),
        )
        .await;
        let (mut frames, mut pings) = (0, 0);
        while frames < n {
            match client.next().await {
                Some(Ok(Message::Text(_))) => {
                    frames += 1;
                    if frames % 250 == 0 {
                        // A slow reader: the writer waits on the pipe with
                        // frames still queued.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings > 0, "no ping in {frames} frames over ~100 ms");
        writer.abort();
    }

    /// The shutdown ends a writer in the middle of a backlog, with the
    /// "going away" close, not after the whole backlog.
    #[tokio::test]
    async fn shutdown_ends_a_busy_writer_at_the_next_batch() {
        let n = 5_000;
        let shutdown = tokio_util::sync::CancellationToken::new();
        shutdown.cancel();
        let (mut client, writer) =
            busy_writer(n, 1024 * 1024, shutdown, std::time::Duration::from_secs(60)).await;
        let mut frames = 0;
        let close = loop {
            match client.next().await {
                Some(Ok(Message::Text(_))) => frames += 1,
                Some(Ok(Message::Close(c))) => break c,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close.map(|c| c.code), Some(CloseCode::Away));
        assert!(frames <= WRITE_BATCH, "{frames} frames after the shutdown");
        tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer ends")
            .unwrap();
    }
}
