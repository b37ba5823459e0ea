//! Bad input over HTTP: every case gets a clear problem+json error, and the
//! server keeps serving.

use serde_json::{Value, json};
use wasync_tests::TestHost;

async fn raw(
    host: &TestHost,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, String, Value) {
    let mut r = host.http.request(method.parse().unwrap(), host.url(path));
    if let Some((ct, b)) = body {
        r = r.header("content-type", ct).body(b);
    }
    wasync_tests::answer(r).await
}

fn assert_problem(status: u16, ct: &str, body: &Value, expect_status: u16, code: &str) {
    assert_eq!(status, expect_status, "{body}");
    assert_eq!(ct, "application/problem+json", "{body}");
    assert_eq!(body["status"], expect_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(body["type"], format!("urn:wasync:problem:{code}"));
}

#[tokio::test]
async fn bad_session_ids_are_rejected() {
    let host = TestHost::spawn().await;
    let long = "a".repeat(65);
    for path in [
        "/whatsapp-web/session/..%2Fx".to_owned(),
        format!("/whatsapp-web/session/{long}"),
        "/whatsapp-web/session/".to_owned(),
        "/whatsapp-web/session/a%20b".to_owned(),
        "/whatsapp-web/session/%00".to_owned(),
    ] {
        for method in ["GET", "POST", "DELETE"] {
            let (s, ct, b) = raw(&host, method, &path, None).await;
            assert_problem(s, &ct, &b, 400, "invalid_session_id");
        }
        let (s, ct, b) = raw(&host, "GET", &format!("{path}/chats"), None).await;
        if s != 404 {
            assert_problem(s, &ct, &b, 400, "invalid_session_id");
        }
    }
    let (s, ct, b) = raw(
        &host,
        "GET",
        &format!("/whatsapp-web/session/{}", "a".repeat(64)),
        None,
    )
    .await;
    assert_problem(s, &ct, &b, 404, "not_found");
    host.stop().await;
}

/// Every bad `webdriver.proxy` is a 400 naming the field, refused before
/// anything starts, and the answer never quotes the URL (it may hold a
/// password).
#[tokio::test]
async fn bad_proxy_urls_are_rejected_by_name() {
    let host = TestHost::spawn().await;
    let path = "/whatsapp-web/session/proxied";
    let long = format!("http://u:secret@{}.example:1", "a".repeat(2048));
    for proxy in [
        json!("secret"),
        json!("ftp://u:secret@h:21"),
        json!("https://u:secret@h:443"),
        json!("socks4://u:secret@h:1080"),
        json!("socks5://u:secret@h"),
        json!("socks5://u:secret@h:0"),
        json!("socks5://u:secret@:1080"),
        json!("http://u:secret@h:3128/path"),
        json!("http://u:secret@h:3128?x=1"),
        json!("http://:secret@h:3128"),
        json!("http://u:secret%ZZ%FF@h:3128"),
        json!(long),
        json!(1080),
        json!({"url": "http://u:secret@h:1"}),
    ] {
        let body = json!({"provider": "webdriver", "webdriver": {"proxy": proxy}});
        let (s, ct, b) = raw(
            &host,
            "POST",
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await;
        assert_problem(s, &ct, &b, 400, "invalid_body");
        let detail = b["detail"].as_str().unwrap();
        assert!(detail.contains("webdriver.proxy"), "{proxy}: {b}");
        assert!(!b.to_string().contains("secret"), "{proxy}: {b}");
    }
    let (s, ct, b) = raw(&host, "GET", path, None).await;
    assert_problem(s, &ct, &b, 404, "not_found");
    host.stop().await;

    // A grid's browser cannot reach this host's forwarder: credentials are
    // refused there, a proxy without them is not (the endpoint is never
    // reached: the create is only validated here).
    let grid = TestHost::spawn_with(
        wasync_tests::HostOptions {
            tuning: wasync_tests::fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::WEBDRIVER_URL, "http://127.0.0.1:9"),
    )
    .await;
    let body = json!({"provider": "webdriver", "webdriver": {"proxy": "socks5://u:secret@h:1080"}});
    let (s, ct, b) = raw(
        &grid,
        "POST",
        path,
        Some(("application/json", body.to_string().into_bytes())),
    )
    .await;
    assert_problem(s, &ct, &b, 400, "invalid_body");
    assert!(
        b["detail"].as_str().unwrap().contains("WEBDRIVER_URL"),
        "{b}"
    );
    assert!(!b.to_string().contains("secret"), "{b}");
    grid.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_rejected() {
    let host = TestHost::spawn().await;
    let path = "/whatsapp-web/session/bodies";
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "application/json",
            b"{not json".to_vec(),
            400,
            "bad_json",
            "invalid JSON",
        ),
        (
            "application/json",
            b"[1,2]".to_vec(),
            400,
            "bad_json",
            "invalid JSON",
        ),
        (
            "application/json",
            br#"{"limitPerChat": 5, "bogus": 1}"#.to_vec(),
            400,
            "bad_json",
            "unknown field",
        ),
        (
            "application/json",
            br#"{"limitPerChat": "ten"}"#.to_vec(),
            400,
            "bad_json",
            "invalid type",
        ),
        (
            "application/json",
            br#"{"limitPerChat": 0}"#.to_vec(),
            400,
            "invalid_body",
            "limitPerChat",
        ),
        (
            "application/json",
            br#"{"limitPerChat": 10001}"#.to_vec(),
            400,
            "invalid_body",
            "limitPerChat",
        ),
        (
            "application/json",
            br#"{"provider": "fax"}"#.to_vec(),
            400,
            "invalid_body",
            "unknown provider",
        ),
        (
            "application/json",
            br#"{"simulator": {"chats": "many"}}"#.to_vec(),
            400,
            "invalid_body",
            "simulator",
        ),
        (
            "application/json",
            br#"{"simulator": {"colour": 1}}"#.to_vec(),
            400,
            "invalid_body",
            "unknown field",
        ),
        (
            "application/json",
            br#"{"login": "+491512345678"}"#.to_vec(),
            400,
            "bad_json",
            "login",
        ),
        (
            "application/json",
            br#"{"login": ["+491512345678"]}"#.to_vec(),
            400,
            "bad_json",
            "login",
        ),
        (
            "application/json",
            br#"{"login": {}}"#.to_vec(),
            400,
            "bad_json",
            "phoneNumber",
        ),
        (
            "application/json",
            br#"{"login": {"phoneNumber": "+491512345678", "pin": 1}}"#.to_vec(),
            400,
            "bad_json",
            "unknown field",
        ),
        (
            "application/json",
            br#"{"login": {"phoneNumber": "0151 2345678"}}"#.to_vec(),
            400,
            "bad_json",
            "login.phoneNumber",
        ),
        (
            "application/json",
            br#"{"login": {"phoneNumber": "+49 (151) 2345678"}}"#.to_vec(),
            400,
            "bad_json",
            "login.phoneNumber",
        ),
        (
            "application/json",
            br#"{"login": {"phoneNumber": 491512345678}}"#.to_vec(),
            400,
            "bad_json",
            "login.phoneNumber",
        ),
        (
            "text/plain",
            b"hello".to_vec(),
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "application/json",
            vec![b' '; 2 * 1024 * 1024],
            413,
            "body_too_large",
            "larger than",
        ),
    ];
    for (ct_in, body, status, code, needle) in cases {
        let (s, ct, b) = raw(&host, "POST", path, Some((ct_in, body))).await;
        assert_problem(s, &ct, &b, status, code);
        assert!(b["detail"].as_str().unwrap().contains(needle), "{b}");
    }
    // Nothing was created by the bad requests.
    let (s, ct, b) = raw(&host, "GET", path, None).await;
    assert_problem(s, &ct, &b, 404, "not_found");

    // The sync body is as strict.
    host.create_sim(
        "bodies",
        json!({"chats": 1, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    for (body, code) in [
        (r#"{"limitPerChat": -1}"#, "bad_json"),
        (r#"{"chatIds": []}"#, "invalid_body"),
        (r#"{"chatIds": "x"}"#, "bad_json"),
        (r#"{"everything": true}"#, "bad_json"),
        (r#"{"limitPerChat": 0}"#, "invalid_body"),
        (r#"{"mode": "partial"}"#, "bad_json"),
        (r#"{"mode": 1}"#, "bad_json"),
        (r#"{"mode": "FULL"}"#, "bad_json"),
    ] {
        let (s, ct, b) = raw(
            &host,
            "POST",
            "/whatsapp-web/session/bodies/sync-chats",
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await;
        assert_problem(s, &ct, &b, 400, code);
        if body.contains("mode") {
            let detail = b["detail"].as_str().unwrap();
            assert!(detail.contains("mode"), "names the member: {b}");
        }
    }
    host.stop().await;
}

#[tokio::test]
async fn bad_queries_are_rejected() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "queries",
        json!({"chats": 1, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    for path in [
        "/whatsapp-web/session/queries/chats?limit=0",
        "/whatsapp-web/session/queries/chats?limit=abc",
        "/whatsapp-web/session/queries/chats?limit=1001",
        "/whatsapp-web/session/queries/chats?cursor=garbage",
        "/whatsapp-web/session/queries/chats/x@c.us/messages?before=yesterday",
        "/whatsapp-web/session/queries?logout=perhaps",
    ] {
        let method = if path.contains("logout") {
            "DELETE"
        } else {
            "GET"
        };
        let (s, ct, b) = raw(&host, method, path, None).await;
        assert_problem(s, &ct, &b, 400, "invalid_query");
    }
    host.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let host = TestHost::spawn().await;
    for path in [
        "/nope",
        "/whatsapp-web",
        "/whatsapp-web/session/x/unknown",
        "/ws/extra",
    ] {
        let (s, ct, b) = raw(&host, "GET", path, None).await;
        assert_problem(s, &ct, &b, 404, "not_found");
    }
    let resp = host
        .http
        .put(host.url("/whatsapp-web/session/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST, DELETE");
    let (s, ct, b) = raw(&host, "DELETE", "/healthz", None).await;
    assert_problem(s, &ct, &b, 405, "method_not_allowed");
    let (s, ct, b) = raw(&host, "GET", "/whatsapp-web/session/x/sync-chats", None).await;
    assert_problem(s, &ct, &b, 405, "method_not_allowed");
    // A plain GET on /ws is not a WebSocket handshake.
    let (s, ct, b) = raw(&host, "GET", "/ws", None).await;
    assert_problem(s, &ct, &b, 426, "websocket_required");
    let (s, _, b) = raw(&host, "GET", "/healthz", None).await;
    assert_eq!(s, 200, "{b}");
    host.stop().await;
}

#[tokio::test]
async fn the_api_key_guards_rest_and_websocket() {
    let key = "test-key-0123456789abcdef";
    let host = TestHost::spawn_with_key(key).await;
    // No key, wrong key, wrong scheme: 401.
    for auth in [
        None,
        Some("Bearer nope"),
        Some(&*format!("Basic {key}")),
        Some("Bearer "),
    ] {
        let mut r = host.http.get(host.url("/whatsapp-web/sessions"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
        assert!(!body.to_string().contains(key));
    }
    // Right key, either header.
    let resp = host
        .http
        .get(host.url("/whatsapp-web/sessions"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = host
        .http
        .get(host.url("/whatsapp-web/sessions"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Liveness and the dashboard stay open; readiness does not.
    assert_eq!(
        host.http
            .get(host.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        host.http.get(host.url("/")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        host.http
            .get(host.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // WebSocket: refused without the key, accepted with it.
    let err = tokio_tungstenite::connect_async(host.ws_url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err = tokio_tungstenite::connect_async(format!("{}?apiKey=wrong", host.ws_url()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let mut ws = host.ws().await;
    ws.send("ping", json!({})).await;
    assert_eq!(ws.recv().await["event"], "pong");
    host.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let host = TestHost::spawn().await;
    let (s, b) = host.get("/healthz").await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let (s, b) = host.get("/readyz").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["store"]["kind"], "embedded");
    assert_eq!(b["store"]["ok"], true);
    assert_eq!(b["events"]["kind"], "local");
    let resp = host.http.get(host.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    host.stop().await;
}

#[tokio::test]
async fn problem_status_is_the_http_status() {
    let host = TestHost::spawn().await;
    // Never scanned: the session stays at `qr`, so a sync is refused.
    host.create_sim(
        "waiting",
        json!({"chats": 1, "qrEveryMs": 5000, "scanAfterMs": null}),
    )
    .await;
    let (s, ct, b) = raw(
        &host,
        "POST",
        "/whatsapp-web/session/waiting/sync-chats",
        Some(("application/json", b"{}".to_vec())),
    )
    .await;
    assert_problem(s, &ct, &b, 409, "session_not_ready");
    assert_eq!(b["sessionStatus"], "qr", "{b}");
    // Ready: no QR pending.
    host.create_sim(
        "done",
        json!({"chats": 1, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    host.wait_sync_done("done").await;
    let (s, ct, b) = raw(&host, "GET", "/whatsapp-web/session/done/qr", None).await;
    assert_problem(s, &ct, &b, 404, "no_qr");
    assert_eq!(b["sessionStatus"], "ready", "{b}");
    // A QR session has no pairing code; the 404 says where its code is.
    let (s, ct, b) = raw(
        &host,
        "GET",
        "/whatsapp-web/session/waiting/pairing-code",
        None,
    )
    .await;
    assert_problem(s, &ct, &b, 404, "no_pairing_code");
    assert_eq!(b["sessionStatus"], "qr", "{b}");
    assert!(b["detail"].as_str().unwrap().contains("/qr"), "{b}");
    let (s, ct, b) = raw(
        &host,
        "GET",
        "/whatsapp-web/session/done/pairing-code",
        None,
    )
    .await;
    assert_problem(s, &ct, &b, 404, "no_pairing_code");
    assert_eq!(b["sessionStatus"], "ready", "{b}");
    let (s, ct, b) = raw(
        &host,
        "GET",
        "/whatsapp-web/session/ghost/pairing-code",
        None,
    )
    .await;
    assert_problem(s, &ct, &b, 404, "not_found");
    host.stop().await;
}

#[tokio::test]
async fn bodies_must_be_objects() {
    let host = TestHost::spawn().await;
    for body in [
        "[null,null,null,null,null]",
        "[]",
        "[100, true, \"simulator\"]",
        "null",
        "3",
        "\"simulator\"",
        "true",
    ] {
        let (s, ct, b) = raw(
            &host,
            "POST",
            "/whatsapp-web/session/arrays",
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await;
        assert_problem(s, &ct, &b, 400, "bad_json");
        assert!(b["detail"].as_str().unwrap().contains("object"), "{b}");
    }
    let (s, ct, b) = raw(&host, "GET", "/whatsapp-web/session/arrays", None).await;
    assert_problem(s, &ct, &b, 404, "not_found");

    host.create_sim(
        "arrays",
        json!({"chats": 2, "qrEveryMs": 40, "scanAfterMs": 50}),
    )
    .await;
    let first = host.wait_sync_done("arrays").await;
    for body in [r#"[3,["nope@c.us"]]"#, "[]", "null", "[null,null]"] {
        let (s, ct, b) = raw(
            &host,
            "POST",
            "/whatsapp-web/session/arrays/sync-chats",
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await;
        assert_problem(s, &ct, &b, 400, "bad_json");
    }
    // No sync was started by them.
    let (_, run) = host.get("/whatsapp-web/session/arrays/sync").await;
    assert_eq!(run["syncId"], first["syncId"], "{run}");
    host.stop().await;
}

#[tokio::test]
async fn the_query_key_is_taken_only_on_upgrades() {
    let key = "query-key-0123456789abcdef";
    let host = TestHost::spawn_with_key(key).await;
    for path in [
        format!("/whatsapp-web/sessions?apiKey={key}"),
        format!("/readyz?apiKey={key}"),
        format!("/openapi.json?apiKey={key}"),
        format!("/whatsapp-web/session/q/qr?format=svg&apiKey={key}"),
    ] {
        let (s, ct, b) = raw(&host, "GET", &path, None).await;
        assert_problem(s, &ct, &b, 401, "unauthorized");
        assert!(b["detail"].as_str().unwrap().contains("only on /ws"), "{b}");
    }
    let (s, _, b) = raw(
        &host,
        "POST",
        &format!("/whatsapp-web/session/q?apiKey={key}"),
        Some(("application/json", b"{}".to_vec())),
    )
    .await;
    assert_eq!(s, 401, "{b}");
    // The upgrades take it: /ws and Socket.IO.
    let mut ws = host.ws().await;
    ws.send("ping", json!({})).await;
    assert_eq!(ws.recv().await["event"], "pong");
    let (s, _, b) = raw(
        &host,
        "GET",
        &format!("/socket.io/?EIO=4&transport=polling&apiKey={key}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    host.stop().await;
}

#[tokio::test]
async fn readiness_keeps_causes_in_the_logs() {
    // A broker that is not there, with a password in its URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let host = wasync_tests::TestHost::spawn_with(
        wasync_tests::HostOptions {
            tuning: wasync_tests::fast_tuning(),
            ..Default::default()
        }
        .var(
            wasync::config::AMQP_URL,
            format!("amqp://guest:s3cret-pw@127.0.0.1:{port}/%2f"),
        ),
    )
    .await;
    let (s, b) = host.get("/readyz").await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["events"]["ok"], false, "{b}");
    let why = b["events"]["error"].as_str().unwrap();
    assert!(["unreachable", "timed out"].contains(&why), "{b}");
    let text = b.to_string();
    for secret in ["s3cret", "127.0.0.1", &port.to_string(), "refused"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    host.stop().await;
}

#[tokio::test]
async fn a_body_that_trickles_gets_408_and_the_connection_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = TestHost::spawn_with(
        wasync_tests::HostOptions {
            tuning: wasync_tests::fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::WASYNC_BODY_TIMEOUT_MS, "300"),
    )
    .await;
    let addr = host.base.trim_start_matches("http://").to_owned();
    // An Engine.IO session, for a long-polling POST (Socket.IO reads its
    // body itself).
    let (_, open) = host.get("/socket.io/?EIO=4&transport=polling").await;
    let open = open.as_str().unwrap_or_default().to_owned();
    let sid = serde_json::from_str::<Value>(open.trim_start_matches('0')).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let polling = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    for (path, ct) in [
        ("/whatsapp-web/session/slow", "application/json"),
        ("/whatsapp-web/session/slow/sync-chats", "application/json"),
        (polling.as_str(), "text/plain;charset=UTF-8"),
    ] {
        // Headers promising 1000 bytes, then a few, then nothing (slowloris).
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: 1000\r\n\r\n{{\"prov"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(closed.is_ok(), "{path}: the connection stays open: {text}");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(250),
            "{path}: answered before the timeout: {text}"
        );
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("connection: close"), "{path}: {text}");
        assert!(
            lower.contains("content-type: application/problem+json"),
            "{path}: {text}"
        );
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["code"], "body_timeout", "{body}");
        assert_eq!(body["status"], 408, "{body}");
    }
    // A body sent in time still works on the same host.
    let (status, body) = host
        .post(
            "/whatsapp-web/session/slow",
            json!({"provider": "simulator"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // ...and the document says so.
    let (_, doc) = host.get("/openapi.json").await;
    for path in [
        "/whatsapp-web/session/{id}",
        "/whatsapp-web/session/{id}/sync-chats",
        "/plugins",
    ] {
        assert!(
            doc["paths"][path]["post"]["responses"]["408"].is_object(),
            "{path} 408"
        );
    }
    host.stop().await;
}
