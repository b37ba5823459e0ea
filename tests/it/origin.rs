//! What a web page in the operator's browser can do to a key-less server on
//! loopback: requests as a browser sends them for a page on another origin
//! (its `Origin`), for a page on a rebound DNS name (its `Host`), and the
//! bodies a page may post without a preflight (`text/plain`).

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wasync_tests::{HostOptions, TestHost, answer, fast_tuning};

const EVIL: &str = "http://evil.example";

fn port(host: &TestHost) -> u16 {
    host.base.rsplit(':').next().unwrap().parse().unwrap()
}

fn refused(a: &(u16, String, Value), code: &str) {
    assert_eq!(a.0, 403, "{a:?}");
    assert_eq!(a.1, "application/problem+json", "{a:?}");
    assert_eq!(a.2["code"], code, "{a:?}");
}

#[tokio::test]
async fn a_page_on_another_origin_cannot_change_anything() {
    let host = TestHost::spawn().await;
    let create = |origin: &str| {
        host.http
            .post(host.url("/whatsapp-web/session/csrf"))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(r#"{"simulator": {"chats": 1}}"#)
    };
    for origin in [EVIL, "null", "http://127.0.0.1:1", "https://localhost"] {
        refused(&answer(create(origin)).await, "origin_not_allowed");
    }
    for (method, path) in [
        ("DELETE", "/whatsapp-web/session/csrf"),
        ("POST", "/whatsapp-web/session/csrf/sync-chats"),
        ("POST", "/plugins/reload"),
        ("GET", "/whatsapp-web/sessions"),
    ] {
        let r = host
            .http
            .request(method.parse().unwrap(), host.url(path))
            .header("origin", EVIL);
        refused(&answer(r).await, "origin_not_allowed");
    }
    let (s, _) = host.get("/whatsapp-web/session/csrf").await;
    assert_eq!(s, 404, "nothing was created");
    // The dashboard's own requests are same-origin.
    let (s, _, b) = answer(create(&host.base)).await;
    assert_eq!(s, 201, "{b}");
    host.stop().await;
}

#[tokio::test]
async fn a_listed_origin_may_call() {
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(
            wasync::config::WASYNC_ALLOWED_ORIGINS,
            "http://localhost:5173",
        ),
    )
    .await;
    let r = host
        .http
        .post(host.url("/whatsapp-web/session/front"))
        .header("origin", "http://localhost:5173")
        .header("content-type", "application/json")
        .body("{}");
    assert_eq!(answer(r).await.0, 201);
    let r = host
        .http
        .post(host.url("/whatsapp-web/session/front2"))
        .header("origin", "http://localhost:5174")
        .header("content-type", "application/json")
        .body("{}");
    refused(&answer(r).await, "origin_not_allowed");
    host.stop().await;
}

#[tokio::test]
async fn a_rebound_host_name_is_refused() {
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::WASYNC_ALLOWED_HOSTS, "wasync.example"),
    )
    .await;
    let p = port(&host);
    host.create_sim(
        "rebind",
        json!({"chats": 1, "qrEveryMs": 5000, "scanAfterMs": null}),
    )
    .await;
    // A page on evil.example whose name now resolves to 127.0.0.1: to the
    // browser every request is same-origin.
    let evil = format!("evil.example:{p}");
    for (method, path) in [
        ("GET", "/whatsapp-web/session/rebind/qr"),
        ("GET", "/whatsapp-web/sessions"),
        ("DELETE", "/whatsapp-web/session/rebind"),
        ("GET", "/"),
    ] {
        let r = host
            .http
            .request(method.parse().unwrap(), host.url(path))
            .header("host", &evil);
        refused(&answer(r).await, "host_not_allowed");
        let r = host
            .http
            .request(method.parse().unwrap(), host.url(path))
            .header("host", &evil)
            .header("origin", format!("http://{evil}"));
        refused(&answer(r).await, "host_not_allowed");
    }
    let (s, _) = host.get("/whatsapp-web/session/rebind").await;
    assert_eq!(s, 200, "still running");
    // The names this server is reached by.
    for name in [
        format!("localhost:{p}"),
        format!("127.0.0.1:{p}"),
        format!("wasync.example:{p}"),
    ] {
        let r = host
            .http
            .get(host.url("/whatsapp-web/sessions"))
            .header("host", &name);
        assert_eq!(answer(r).await.0, 200, "{name}");
    }
    // The WebSocket handshake is refused on a rebound name too.
    let mut req = host.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("host", evil.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    host.stop().await;
}

#[tokio::test]
async fn websocket_and_socket_io_refuse_a_foreign_origin() {
    let host = TestHost::spawn().await;
    // /ws: browsers do not apply CORS to WebSocket, only the Origin tells.
    let mut req = host.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("origin", EVIL.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = host.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", host.base.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("same origin");
    use futures_util::SinkExt;
    ws.send(r#"{"event":"ping"}"#.into()).await.unwrap();

    // Socket.IO: the polling handshake and the WebSocket transport.
    let handshake = "/socket.io/?EIO=4&transport=polling";
    let r = host.http.get(host.url(handshake)).header("origin", EVIL);
    refused(&answer(r).await, "origin_not_allowed");
    let r = host
        .http
        .get(host.url(handshake))
        .header("origin", &host.base);
    let (s, _, b) = answer(r).await;
    assert_eq!(s, 200, "{b}");
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        host.base.replacen("http", "ws", 1)
    );
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("origin", EVIL.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", host.base.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("same origin");
    host.stop().await;
}

#[tokio::test]
async fn bodies_a_page_can_send_without_asking_are_refused() {
    let plugins = tempfile::tempdir().unwrap();
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(
            wasync::config::WASYNC_PLUGINS_DIR,
            plugins.path().display().to_string(),
        ),
    )
    .await;
    let json = r#"{"simulator": {"chats": 1}}"#;
    for ct in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("text/plain; x=+json"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        for path in [
            "/whatsapp-web/session/plain",
            "/whatsapp-web/session/plain/sync-chats",
            "/plugins",
        ] {
            let mut r = host.http.post(host.url(path)).body(json);
            if let Some(ct) = ct {
                r = r.header("content-type", ct);
            }
            let (s, ct_out, b) = answer(r).await;
            assert_eq!(s, 415, "{ct:?} {path}: {b}");
            assert_eq!(ct_out, "application/problem+json");
            assert_eq!(b["code"], "unsupported_media_type");
        }
        // A declared type that is not JSON is refused even without a body.
        if let Some(ct) = ct {
            let r = host
                .http
                .post(host.url("/whatsapp-web/session/plain"))
                .header("content-type", ct);
            assert_eq!(answer(r).await.0, 415, "{ct}");
        }
    }
    let (s, _) = host.get("/whatsapp-web/session/plain").await;
    assert_eq!(s, 404, "nothing was created");
    // JSON with a charset, or no body at all, is fine.
    let r = host
        .http
        .post(host.url("/whatsapp-web/session/plain"))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(json);
    assert_eq!(answer(r).await.0, 201);
    let r = host.http.post(host.url("/whatsapp-web/session/plain2"));
    assert_eq!(answer(r).await.0, 201);
    host.stop().await;
}
