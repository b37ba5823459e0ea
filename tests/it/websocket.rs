//! The `/ws` protocol: bad frames get an `error` event and the connection
//! stays; slow clients never hold up the sync or other clients; the host's
//! bounds (clients, rooms per client, silent clients) hold.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wasync::config::{WASYNC_MAX_CLIENTS, WASYNC_MAX_ROOMS_PER_CLIENT, WASYNC_WS_PING_MS};
use wasync_tests::{HostOptions, TestHost, WsClient, assert_eventually, fast_tuning};

fn options() -> HostOptions {
    HostOptions {
        tuning: fast_tuning(),
        ..Default::default()
    }
}

/// A `/ws` handshake the host refuses: its status and problem body.
pub(crate) async fn refused_upgrade(url: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("{url}: the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        Err(e) => panic!("{url}: {e}"),
    }
}

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

#[tokio::test]
async fn clients_past_the_cap_get_503_and_a_freed_slot_is_reused() {
    let host = TestHost::spawn_with(options().var(WASYNC_MAX_CLIENTS, "2")).await;
    let hub = host.app().hub();
    let mut a = host.ws().await;
    let mut b = host.ws().await;
    for _ in 0..3 {
        let (status, problem) = refused_upgrade(&host.ws_url()).await;
        assert_eq!(status, 503, "{problem}");
        assert_eq!(problem["code"], "too_many_clients", "{problem}");
        assert_eq!(problem["status"], 503, "{problem}");
    }
    assert_eq!(hub.client_count(), 2, "refused upgrades hold no slot");
    // The clients inside are unaffected.
    a.send("ping", json!({})).await;
    assert_eq!(a.recv().await["event"], "pong");
    // A client that leaves frees its slot.
    a.stream.close(None).await.unwrap();
    drop(a);
    assert_eventually!(hub.client_count() == 1);
    let mut c = host.ws().await;
    c.send("ping", json!({})).await;
    assert_eq!(c.recv().await["event"], "pong");
    let (status, _) = refused_upgrade(&host.ws_url()).await;
    assert_eq!(status, 503, "full again");
    b.send("ping", json!({})).await;
    assert_eq!(b.recv().await["event"], "pong");
    host.stop().await;
}

#[tokio::test]
async fn a_join_past_the_room_cap_gets_an_error_and_leaving_frees_a_slot() {
    let host = TestHost::spawn_with(options().var(WASYNC_MAX_ROOMS_PER_CLIENT, "2")).await;
    for id in ["cap-a", "cap-b", "cap-c"] {
        host.create_sim(id, json!({"scanAfterMs": null, "qrEveryMs": 60000}))
            .await;
    }
    let mut ws = host.ws().await;
    ws.join("cap-a").await;
    ws.join("cap-b").await;
    ws.send("join-session", json!({"sessionId": "cap-c"})).await;
    let ev = ws.recv().await;
    assert_eq!(ev["event"], "error", "{ev}");
    assert_eq!(ev["data"]["code"], "too_many_rooms", "{ev}");
    assert_eq!(host.app().hub().room_size("cap-c"), 0);
    // Joining a room it is in again takes no slot; the connection stays.
    ws.join("cap-b").await;
    ws.send("ping", json!({})).await;
    assert_eq!(ws.recv().await["event"], "pong");
    ws.send("leave-session", json!({"sessionId": "cap-a"}))
        .await;
    assert_eq!(ws.recv().await["event"], "left");
    let snap = ws.join("cap-c").await;
    assert_eq!(snap["sessionId"], "cap-c");
    // Another client has its own rooms.
    let mut other = host.ws().await;
    other.join("cap-a").await;
    host.stop().await;
}

/// Reads what the host sent a client that stopped reading, up to its close.
async fn close_frame_of(ws: &mut WsClient) -> (CloseCode, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.stream.next())
            .await
            .expect("the host closes the silent client")
            .expect("a close frame before the end")
            .expect("a frame");
        if let Message::Close(frame) = msg {
            let frame = frame.expect("a close reason");
            return (frame.code, frame.reason.to_string());
        }
    }
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_with_its_code() {
    let host = TestHost::spawn_with(options()).await;
    host.create_sim("bye", json!({})).await;
    let mut ws = host.ws().await;
    ws.join("bye").await;
    ws.stream.close(None).await.expect("close sent");
    // The host echoes the close before it drops the connection: reading on
    // ends cleanly, not with "reset without closing handshake".
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.stream.next().await {
                Some(Ok(Message::Close(frame))) => break Ok(frame),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(e.to_string()),
                None => break Err("ended without a close frame".into()),
            }
        }
    })
    .await
    .expect("an answer within 5 s");
    let frame = answer.expect("a close frame back");
    assert!(
        frame.as_ref().is_none_or(|f| f.code == CloseCode::Normal),
        "{frame:?}"
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_and_one_that_answers_pings_stays() {
    let host = TestHost::spawn_with(options().var(WASYNC_WS_PING_MS, "200")).await;
    host.create_sim("quiet", json!({"scanAfterMs": null, "qrEveryMs": 60000}))
        .await;
    let hub = host.app().hub();
    // Joins, then neither reads nor writes: tungstenite answers pings only
    // while the stream is polled, so this one never does.
    let mut silent = host.ws().await;
    silent.join("quiet").await;
    let mut alive = host.ws().await;
    alive.join("quiet").await;
    assert_eq!(hub.room_size("quiet"), 2);
    // The live client keeps reading (and so answering pings) for many
    // times the silence allowed, sending nothing itself.
    let started = tokio::time::Instant::now();
    let until = started + Duration::from_millis(2_000);
    while hub.client_count() > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the silent client stays"
        );
        if let Some(ev) = alive.try_recv(Duration::from_millis(20)).await {
            assert_ne!(ev["event"], "error", "{ev}");
        }
    }
    // Read at once: the host keeps the socket open for the closing
    // handshake for a second, no longer.
    let (code, reason) = close_frame_of(&mut silent).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("silent"), "{reason}");
    while tokio::time::Instant::now() < until {
        if let Some(ev) = alive.try_recv(Duration::from_millis(50)).await {
            assert_ne!(ev["event"], "error", "{ev}");
        }
    }
    assert_eq!(hub.client_count(), 1, "the silent client is gone");
    assert_eq!(hub.room_size("quiet"), 1, "its room slot is freed");
    alive.send("ping", json!({})).await;
    assert_eq!(alive.recv().await["event"], "pong");
    host.stop().await;
}

/// A session created with `login.phoneNumber` shows pairing codes instead
/// of QR codes, refreshed with a rising `attempt`, each the simulator's
/// code for that seed, number and attempt; REST serves the pending one;
/// the rest of the lifecycle is the QR one.
#[tokio::test]
async fn pairing_code_login_over_websocket() {
    use wasync::browser::simulator::pairing_code;
    use wasync::domain::PhoneNumber;
    let host = TestHost::spawn_with(options()).await;
    let id = "pair-ws";
    let (status, snap) = host
        .post(
            &format!("/whatsapp-web/session/{id}"),
            json!({"provider": "simulator", "login": {"phoneNumber": "+49 151 2345-678"},
                "metadata": {"team": "pairing"},
                "simulator": {"chats": 2, "messagesPerChat": 3, "pairingCodeEveryMs": 150,
                    "scanAfterMs": 900, "maxQrAttempts": 50, "seed": 5}}),
        )
        .await;
    assert_eq!(status, 201, "{snap}");
    let phone = PhoneNumber::parse("+491512345678").unwrap();
    let mut ws = host.ws().await;
    let joined = ws.join(id).await;
    assert!(joined["qr"].is_null(), "{joined}");
    let mut codes: Vec<Value> = Vec::new();
    if let Some(c) = joined.get("pairingCode") {
        assert_eq!(joined["status"], "qr", "{joined}");
        codes.push(c.clone());
    }
    // Two codes while waiting for the phone: what REST says meanwhile.
    while codes.len() < 2 {
        let ev = ws.recv().await;
        assert_ne!(ev["event"], "qr", "no QR codes for a phone number: {ev}");
        if ev["event"] == "pairing_code" {
            assert_eq!(ev["data"]["sessionId"], id);
            assert_eq!(ev["data"]["metadata"]["team"], "pairing", "{ev}");
            codes.push(ev["data"].clone());
        }
    }
    let (s, pending) = host
        .get(&format!("/whatsapp-web/session/{id}/pairing-code"))
        .await;
    assert_eq!(s, 200, "{pending}");
    assert!(pending["expiresAt"].as_i64().unwrap() > wasync::domain::now_ms() - 5_000);
    let (s, no_qr) = host.get(&format!("/whatsapp-web/session/{id}/qr")).await;
    assert_eq!((s, no_qr["code"].as_str()), (404, Some("no_qr")), "{no_qr}");
    assert!(
        no_qr["detail"].as_str().unwrap().contains("pairing-code"),
        "the 404 points at the pairing code: {no_qr}"
    );
    let (_, snapshot) = host.get(&format!("/whatsapp-web/session/{id}")).await;
    assert_eq!(snapshot["status"], "qr");
    assert!(snapshot["pairingCode"]["code"].is_string(), "{snapshot}");
    // The phone enters the code: the QR lifecycle from here.
    let rest = ws.until("sync_complete").await;
    let names: Vec<&str> = rest.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(!names.contains(&"qr"), "{names:?}");
    codes.extend(
        rest.iter()
            .filter(|e| e["event"] == "pairing_code")
            .map(|e| e["data"].clone()),
    );
    let after = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(after("authenticated") < after("ready"), "{names:?}");
    for (i, c) in codes.iter().enumerate() {
        let attempt = c["attempt"].as_u64().unwrap() as u32;
        if i > 0 {
            assert_eq!(
                attempt,
                codes[i - 1]["attempt"].as_u64().unwrap() as u32 + 1
            );
        }
        assert_eq!(c["code"], pairing_code(5, &phone, attempt), "{c}");
        let code = c["code"].as_str().unwrap();
        assert_eq!((code.len(), &code[4..5]), (9, "-"), "ABCD-EFGH: {code}");
    }
    let (s, gone) = host
        .get(&format!("/whatsapp-web/session/{id}/pairing-code"))
        .await;
    assert_eq!(
        (s, gone["code"].as_str()),
        (404, Some("no_pairing_code")),
        "{gone}"
    );
    assert_eq!(gone["sessionStatus"], "ready", "{gone}");
    host.stop().await;
}
