//! The Socket.IO endpoint with the real `socket.io-client` package, running
//! the original frontend flow (`tests/node/frontend-flow.mjs`).

use std::path::PathBuf;

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use wasync_tests::{TestHost, assert_eventually};

fn node_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node");
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "socket.io-client is not installed: run `npm install --prefix tests/node` (scripts/setup.sh does)"
    );
    dir
}

async fn run_flow(host: &TestHost, session: &str, key: Option<&str>, transport: &str) -> Value {
    run_flow_with(host, session, key, transport, None).await
}

/// The flow, creating the session with `metadata`.
pub(crate) async fn run_flow_with(
    host: &TestHost,
    session: &str,
    key: Option<&str>,
    transport: &str,
    metadata: Option<&Value>,
) -> Value {
    run_flow_login(host, session, key, transport, metadata, None).await
}

/// The flow, creating the session with `metadata` and `login`.
async fn run_flow_login(
    host: &TestHost,
    session: &str,
    key: Option<&str>,
    transport: &str,
    metadata: Option<&Value>,
    login: Option<&Value>,
) -> Value {
    let out = tokio::process::Command::new("node")
        .current_dir(node_dir())
        .arg("frontend-flow.mjs")
        .arg(&host.base)
        .arg(session)
        .arg(key.unwrap_or(""))
        .arg(transport)
        .arg(metadata.map(Value::to_string).unwrap_or_default())
        .arg(login.map(Value::to_string).unwrap_or_default())
        .output()
        .await
        .expect("node runs (is Node.js installed?)");
    assert!(
        out.status.success(),
        "frontend flow failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).expect("summary JSON")
}

pub(crate) fn check(summary: &Value) {
    assert!(summary["qr"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(summary["ready"], 1, "{summary}");
    let progress = summary["progress"].as_array().unwrap();
    let phases: Vec<&str> = progress
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "start", "contacts", "chat", "messages", "chat", "messages", "chat", "messages", "done"
        ],
        "{summary}"
    );
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["seq"], i as u64);
    }
    assert_eq!(progress[7]["totalMessagesSynced"], 225);
    let counts: Vec<u64> = summary["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [50, 75, 100]);
    assert_eq!(summary["complete"]["totalMessagesSynced"], 225);
    assert_eq!(summary["errors"][0]["code"], "unknown_event", "{summary}");
}

#[tokio::test]
async fn the_original_frontend_flow_works_over_socket_io() {
    let host = TestHost::spawn().await;
    // Default transports: long-polling first, then the WebSocket upgrade.
    let summary = run_flow(&host, "sio-default", None, "").await;
    check(&summary);
    let summary = run_flow(&host, "sio-ws", None, "websocket").await;
    check(&summary);
    let (_, metrics) = host.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wasync_clients{transport=\"socketio\"}")
    );
    host.stop().await;
}

/// A frontend that links with a phone number gets `pairing_code` events
/// (never `qr`) over Socket.IO, with the session's metadata, then the
/// same flow.
#[tokio::test]
async fn socket_io_gets_pairing_codes() {
    let host = TestHost::spawn().await;
    let summary = run_flow_login(
        &host,
        "sio-pair",
        None,
        "websocket",
        Some(&serde_json::json!({"team": "sio"})),
        Some(&serde_json::json!({"phoneNumber": "+49 151 2345678"})),
    )
    .await;
    assert_eq!(summary["qr"], 0, "{summary}");
    assert!(summary["pairingCode"].as_u64().unwrap() >= 1, "{summary}");
    let phone = wasync::domain::PhoneNumber::parse("+491512345678").unwrap();
    for c in summary["codes"].as_array().unwrap() {
        let attempt = c[1].as_u64().unwrap() as u32;
        assert_eq!(
            c[0],
            wasync::browser::simulator::pairing_code(1, &phone, attempt),
            "{summary}"
        );
    }
    assert_eq!(
        summary["metadata"]["pairingCode"]["team"], "sio",
        "{summary}"
    );
    assert_eq!(summary["ready"], 1, "{summary}");
    assert_eq!(summary["complete"]["totalMessagesSynced"], 225, "{summary}");
    host.stop().await;
}

#[tokio::test]
async fn socket_io_needs_the_api_key_too() {
    let key = "sio-key-0123456789abcdef";
    let host = TestHost::spawn_with_key(key).await;
    let summary = run_flow(&host, "sio-auth", Some(key), "").await;
    check(&summary);
    let out = tokio::process::Command::new("node")
        .current_dir(node_dir())
        .args([
            "frontend-flow.mjs",
            &host.base,
            "sio-nokey",
            "",
            "websocket",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connect_error"));
    host.stop().await;
}

#[tokio::test]
async fn socket_io_answers_what_its_document_says() {
    let host = TestHost::spawn().await;
    let (_, doc) = host.get("/openapi.json").await;
    let item = &doc["paths"]["/socket.io/"];
    for method in ["get", "post"] {
        assert!(item[method].is_object(), "{method} /socket.io/ documented");
    }
    let cases: [(&str, &str, u16, &str); 8] = [
        ("GET", "?EIO=3&transport=polling", 400, "invalid_query"),
        ("GET", "?transport=polling", 400, "invalid_query"),
        (
            "GET",
            "?EIO=4&transport=carrier-pigeon",
            400,
            "invalid_query",
        ),
        ("GET", "?EIO=4", 400, "invalid_query"),
        (
            "GET",
            "?EIO=4&transport=websocket",
            426,
            "websocket_required",
        ),
        (
            "GET",
            "?EIO=4&transport=polling&sid=nope",
            400,
            "socketio_refused",
        ),
        ("POST", "?EIO=4&transport=polling", 400, "socketio_refused"),
        (
            "POST",
            "?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            400,
            "socketio_refused",
        ),
    ];
    for (method, query, status, code) in cases {
        let resp = host
            .http
            .request(
                method.parse().unwrap(),
                host.url(&format!("/socket.io/{query}")),
            )
            .header("content-type", "text/plain;charset=UTF-8")
            .body(if method == "POST" { "40" } else { "" })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {query}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{method} {query}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body["code"], code, "{method} {query}: {body}");
        // ...and the document has that answer for that method.
        let documented = &item[method.to_lowercase()]["responses"][status.to_string()];
        assert!(
            documented["content"]["application/problem+json"].is_object(),
            "{method} /socket.io/ {status} is not documented"
        );
    }
    let resp = host
        .http
        .request(reqwest::Method::OPTIONS, host.url("/socket.io/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST");
    // The handshake itself is what the document says: text/plain.
    let resp = host
        .http
        .get(host.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    host.stop().await;
}

/// A Socket.IO client over a raw Engine.IO WebSocket, connected to `/`.
async fn raw_socket_io(
    host: &TestHost,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::SinkExt;
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        host.base.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "Engine.IO open: {open}");
    ws.send(Message::Text("40".into())).await.unwrap();
    let ack = next_text(&mut ws).await;
    assert!(ack.starts_with("40"), "Socket.IO connect: {ack}");
    ws
}

/// The next text packet that is not an Engine.IO ping (answered).
async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    use futures_util::{SinkExt, StreamExt};
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a packet within 10 s")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            if t.as_str() == "2" {
                ws.send(Message::Text("3".into())).await.unwrap();
                continue;
            }
            return t.as_str().to_owned();
        }
    }
}

/// Emits `event` and returns the next event as `[name, data]`.
async fn emit(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    event: &str,
    data: Value,
) -> Value {
    use futures_util::SinkExt;
    let packet = format!("42{}", serde_json::json!([event, data]));
    ws.send(Message::Text(packet.into())).await.unwrap();
    let reply = next_text(ws).await;
    serde_json::from_str(reply.strip_prefix("42").expect("an event packet")).unwrap()
}

#[tokio::test]
async fn socket_io_clients_share_the_client_and_room_caps() {
    let host = TestHost::spawn_with(
        wasync_tests::HostOptions {
            tuning: wasync_tests::fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::WASYNC_MAX_CLIENTS, "2")
        .var(wasync::config::WASYNC_MAX_ROOMS_PER_CLIENT, "1"),
    )
    .await;
    for id in ["sio-cap-a", "sio-cap-b"] {
        host.create_sim(
            id,
            serde_json::json!({"scanAfterMs": null, "qrEveryMs": 60000}),
        )
        .await;
    }
    let hub = host.app().hub();
    let mut sio = raw_socket_io(&host).await;
    let _ws = host.ws().await;
    assert_eq!(hub.client_count(), 2);
    // Full: both transports refuse, each with the problem.
    let (status, problem) = crate::websocket::refused_upgrade(&host.ws_url()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("too_many_clients"))
    );
    let sio_ws = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        host.base.replacen("http", "ws", 1)
    );
    let (status, problem) = crate::websocket::refused_upgrade(&sio_ws).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("too_many_clients"))
    );
    let resp = host
        .http
        .get(host.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "too_many_clients", "{problem}");
    let (_, doc) = host.get("/openapi.json").await;
    for path in ["/socket.io/", "/ws"] {
        assert!(
            doc["paths"][path]["get"]["responses"]["503"].is_object(),
            "{path} 503 documented"
        );
    }
    // The room cap holds over Socket.IO too, and the socket stays.
    let ev = emit(
        &mut sio,
        "join-session",
        serde_json::json!({"sessionId": "sio-cap-a"}),
    )
    .await;
    assert_eq!(ev[0], "session_state", "{ev}");
    let ev = emit(
        &mut sio,
        "join-session",
        serde_json::json!({"sessionId": "sio-cap-b"}),
    )
    .await;
    assert_eq!(ev[0], "error", "{ev}");
    assert_eq!(ev[1]["code"], "too_many_rooms", "{ev}");
    let ev = emit(
        &mut sio,
        "leave-session",
        serde_json::json!({"sessionId": "sio-cap-a"}),
    )
    .await;
    assert_eq!(ev[0], "left", "{ev}");
    let ev = emit(
        &mut sio,
        "join-session",
        serde_json::json!({"sessionId": "sio-cap-b"}),
    )
    .await;
    assert_eq!(ev[0], "session_state", "{ev}");
    // A Socket.IO client that leaves frees its slot for either transport.
    drop(sio);
    assert_eventually!(hub.client_count() == 1);
    let resp = host
        .http
        .get(host.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    host.stop().await;
}
