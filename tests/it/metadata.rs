//! Session metadata: bounded at create, stored, returned in snapshots and
//! lists (filterable), and echoed in every event of the session: WebSocket,
//! Socket.IO, RabbitMQ, and after a restart.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use wasync_tests::amqp::{QueueConsumer, amqp_url, unique_queue};
use wasync_tests::{HostOptions, TestHost, fast_tuning};

fn sim() -> Value {
    json!({"chats": 2, "messagesPerChat": 3, "qrEveryMs": 40, "scanAfterMs": 60, "fetchLatencyMs": 0})
}

fn labels() -> Value {
    json!({"team": "sales", "crm.id": "4711", "note": "ünïcode ok"})
}

async fn create(host: &TestHost, id: &str, metadata: Value) -> (u16, Value) {
    host.post(
        &format!("/whatsapp-web/session/{id}"),
        json!({"provider": "simulator", "simulator": sim(), "metadata": metadata}),
    )
    .await
}

#[tokio::test]
async fn metadata_is_bounded_at_create_and_named_in_the_error() {
    let host = TestHost::spawn().await;
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let wide: serde_json::Map<String, Value> = (0..16)
        .map(|i| (format!("k{i}"), json!("x".repeat(400))))
        .collect();
    for (metadata, says) in [
        (Value::Object(many), "33 entries"),
        (Value::Object(wide), "in all"),
        (json!({"": "v"}), "metadata key \"\""),
        (json!({"a b": "v"}), "metadata key \"a b\""),
        (json!({"k".repeat(65): "v"}), "metadata key"),
        (json!({"k": "v".repeat(513)}), "513 bytes"),
        (json!({"k": 1}), "metadata.k: invalid type"),
        (json!({"k": null}), "metadata.k: invalid type"),
        (json!(["team", "sales"]), "metadata: invalid type"),
        (json!("team=sales"), "metadata: invalid type"),
    ] {
        let (status, body) = create(&host, "bad", metadata.clone()).await;
        assert_eq!(status, 400, "{metadata}: {body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains(says),
            "{metadata}: want {says:?} in {body}"
        );
    }
    let (status, _) = host.get("/whatsapp-web/session/bad").await;
    assert_eq!(status, 404, "nothing was created");
    // At the bounds it is accepted; null means none.
    let full: serde_json::Map<String, Value> = (0..32)
        .map(|i| (format!("k{i:02}"), json!("x".repeat(100))))
        .collect();
    let (status, body) = create(&host, "full", Value::Object(full)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = create(&host, "none", Value::Null).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("metadata").is_none(), "{body}");
    host.stop().await;
}

#[tokio::test]
async fn metadata_is_in_snapshots_lists_filters_and_every_websocket_event() {
    let mut host = TestHost::spawn().await;
    let mut ws = host.ws().await;
    let (status, snap) = create(&host, "tagged", labels()).await;
    assert_eq!(status, 201, "{snap}");
    assert_eq!(snap["metadata"], labels());
    let joined = ws.join("tagged").await;
    assert_eq!(joined["metadata"], labels(), "{joined}");
    let events = ws.until("sync_complete").await;
    let names: HashSet<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for name in [
        "qr",
        "authenticated",
        "ready",
        "sync_chats",
        "sync_complete",
    ] {
        assert!(names.contains(name), "{name} not seen: {names:?}");
    }
    for e in &events {
        assert_eq!(e["data"]["metadata"], labels(), "{e}");
    }
    // A session without metadata: no `metadata` member anywhere.
    create(&host, "plain", Value::Null).await;
    let mut ws2 = host.ws().await;
    ws2.join("plain").await;
    for e in ws2.until("sync_complete").await {
        assert!(e["data"].get("metadata").is_none(), "{e}");
    }

    let (status, one) = host.get("/whatsapp-web/session/tagged").await;
    assert_eq!(status, 200);
    assert_eq!(one["metadata"], labels());
    let ids = |list: &Value| -> Vec<String> {
        let mut v: Vec<String> = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sessionId"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let (_, all) = host.get("/whatsapp-web/sessions").await;
    assert_eq!(ids(&all), ["plain", "tagged"]);
    for (query, want) in [
        ("metadata.team=sales", vec!["tagged"]),
        ("metadata.team=sales&metadata.crm.id=4711", vec!["tagged"]),
        ("metadata.team=sales&metadata.crm.id=1", vec![]),
        ("metadata.team=ops", vec![]),
        ("metadata.note=%C3%BCn%C3%AFcode%20ok", vec!["tagged"]),
        ("other=1", vec!["plain", "tagged"]),
    ] {
        let (status, list) = host.get(&format!("/whatsapp-web/sessions?{query}")).await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(ids(&list), want, "{query}");
    }
    let (status, body) = host.get("/whatsapp-web/sessions?metadata.=x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
    let (status, _) = host.get("/whatsapp-web/sessions?metadata.a%20b=x").await;
    assert_eq!(status, 400);

    // Stored: after a restart the restored session's events carry it, and
    // a stopped session is still listed and filtered by it.
    host.delete("/whatsapp-web/session/plain").await;
    host.restart().await;
    let mut ws = host.ws().await;
    let joined = ws.join("tagged").await;
    assert_eq!(joined["metadata"], labels(), "{joined}");
    let (status, _) = host
        .post("/whatsapp-web/session/tagged/sync-chats", json!({}))
        .await;
    assert!(status == 202 || status == 409, "{status}");
    for e in ws.until("sync_complete").await {
        assert_eq!(e["data"]["metadata"], labels(), "after the restart: {e}");
    }
    let (_, list) = host.get("/whatsapp-web/sessions?metadata.team=sales").await;
    assert_eq!(ids(&list), ["tagged"]);
    host.stop().await;
}

#[tokio::test]
async fn metadata_rides_along_in_socket_io_events() {
    let host = TestHost::spawn().await;
    let summary =
        crate::socketio::run_flow_with(&host, "sio-meta", None, "websocket", Some(&labels())).await;
    crate::socketio::check(&summary);
    assert_eq!(summary["snapshot"]["metadata"], labels(), "{summary}");
    for event in ["qr", "ready", "syncChats", "syncComplete"] {
        assert_eq!(summary["metadata"][event], labels(), "{event}: {summary}");
    }
    host.stop().await;
}

#[tokio::test]
async fn metadata_is_echoed_in_the_brokers_session_ready() {
    let queue = unique_queue("metadata");
    let mut consumer = QueueConsumer::start(&queue).await;
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(wasync::config::AMQP_URL, amqp_url())
        .var(wasync::config::AMQP_QUEUE, queue.as_str()),
    )
    .await;
    let mut ws = host.ws().await;
    create(&host, "ai", labels()).await;
    ws.join("ai").await;
    ws.until("sync_complete").await;
    consumer.wait_for_count(1, Duration::from_secs(15)).await;
    let got = &consumer.seen[0];
    assert_eq!(got.body["pattern"], "session_ready");
    assert_eq!(got.body["data"]["metadata"], labels(), "{}", got.body);
    host.stop().await;
    consumer.delete().await;
}

#[tokio::test]
async fn metadata_is_echoed_in_every_webhook_delivery() {
    use wasync_tests::receiver::Receiver;
    let rx = Receiver::start().await;
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(
            wasync::config::WASYNC_WEBHOOK_ALLOW_PRIVATE,
            "127.0.0.0/8,::1",
        ),
    )
    .await;
    let events = ["authenticated", "ready", "session_ready", "sync_complete"];
    let (status, body) = host
        .post(
            "/webhooks",
            json!({"url": rx.url("/hook"), "events": events}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    create(&host, "hooked", labels()).await;
    host.wait_sync_done("hooked").await;
    wasync_tests::assert_eventually!(rx.delivered().len() >= events.len(), 20);
    for r in rx.delivered() {
        let body = r.json();
        assert_eq!(body["data"]["metadata"], labels(), "{body}");
    }
    host.stop().await;
}
