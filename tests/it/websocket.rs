//! The `/ws` protocol: bad frames get an `error` event and the connection
//! stays; slow clients never hold up the sync or other clients.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use wasync_tests::TestHost;

#[tokio::test]
async fn bad_frames_get_error_events_and_the_connection_stays() {
    let host = TestHost::spawn().await;
    let mut ws = host.ws().await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("garbage{".into()), "bad_json"),
        (Message::Text("42".into()), "bad_frame"),
        (Message::Text(r#"{"data": {}}"#.into()), "bad_frame"),
        (
            Message::Binary(vec![0u8, 1, 2].into()),
            "binary_not_supported",
        ),
        (
            Message::Text(r#"{"event": "dance", "data": {}}"#.into()),
            "unknown_event",
        ),
        (
            Message::Text(r#"{"event": "join-session", "data": {}}"#.into()),
            "invalid_session_id",
        ),
        (
            Message::Text(r#"{"event": "join-session", "data": {"sessionId": "../etc"}}"#.into()),
            "invalid_session_id",
        ),
        (
            Message::Text(r#"{"event": "join-session", "data": {"sessionId": 7}}"#.into()),
            "invalid_session_id",
        ),
        (
            Message::Text(r#"{"event": "join-session", "data": {"sessionId": "ghost"}}"#.into()),
            "session_not_found",
        ),
        (
            Message::Text(r#"{"event": "leave-session", "data": {"sessionId": "ghost"}}"#.into()),
            "not_joined",
        ),
    ];
    for (frame, code) in cases {
        ws.stream.send(frame.clone()).await.unwrap();
        let ev = ws.recv().await;
        assert_eq!(ev["event"], "error", "{frame:?} -> {ev}");
        assert_eq!(ev["data"]["code"], code, "{frame:?} -> {ev}");
        assert!(ev["data"]["message"].as_str().unwrap().len() > 5);
    }
    ws.send("ping", json!({})).await;
    assert_eq!(ws.recv().await["event"], "pong");
    // An oversized frame closes the connection (protocol limit), and the
    // server goes on serving others.
    let _ = ws
        .stream
        .send(Message::Text("x".repeat(200 * 1024).into()))
        .await;
    let mut other = host.ws().await;
    other.send("ping", json!({})).await;
    assert_eq!(other.recv().await["event"], "pong");
    let (s, _) = host.get("/healthz").await;
    assert_eq!(s, 200);
    host.stop().await;
}

#[tokio::test]
async fn join_leave_and_bare_string_ids() {
    let host = TestHost::spawn().await;
    host.create_sim("rooms", json!({"scanAfterMs": null, "qrEveryMs": 60000}))
        .await;
    let mut ws = host.ws().await;
    ws.send("join-session", json!("rooms")).await;
    let snap = ws.recv().await;
    assert_eq!(snap["event"], "session_state");
    assert_eq!(snap["data"]["sessionId"], "rooms");
    ws.send("leave-session", json!({"sessionId": "rooms"}))
        .await;
    let ev = ws.recv().await;
    assert_eq!(ev["event"], "left");
    host.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_slow_the_sync_or_others() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "crowd",
        json!({"chats": 300, "messagesPerChat": 2, "scanAfterMs": 300, "qrEveryMs": 100, "fetchLatencyMs": 0}),
    )
    .await;

    // A raw client: handshake, join, then never read again.
    let addr = host.base.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stalled.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // A masked client text frame: {"event":"join-session","data":"crowd"}
    let payload = br#"{"event":"join-session","data":"crowd"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stalled.write_all(&frame).await.unwrap();

    let mut good = host.ws().await;
    good.join("crowd").await;
    let started = std::time::Instant::now();
    let events = good.until("sync_complete").await;
    let elapsed = started.elapsed();
    let progress = events.iter().filter(|e| e["event"] == "sync_chats").count();
    assert!(progress >= 2, "the reading client sees progress");
    assert_eq!(events.last().unwrap()["data"]["totalMessagesSynced"], 600);
    assert!(elapsed < Duration::from_secs(20), "sync took {elapsed:?}");
    drop(stalled);
    host.stop().await;
}
