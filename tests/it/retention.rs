//! What is kept, and for how long: the quarantine's routes, the retention
//! pass that deletes old published events and old quarantined messages, and
//! a purge that leaves no event bodies behind.

use std::time::Duration;

use serde_json::json;
use wasync::domain::{Message, OutboxEvent, QuarantinedMessage, SessionId};
use wasync_tests::{HostOptions, TestHost, fast_tuning};

fn quarantined(session: &str, n: u32, at: i64) -> QuarantinedMessage {
    QuarantinedMessage {
        session_id: session.into(),
        sync_id: None,
        plugin: "redact-pii".into(),
        reason: "trap".into(),
        quarantined_at: at,
        message: Message {
            id: format!("q{n:03}"),
            chat_id: "c@c.us".into(),
            from: "c@c.us".into(),
            to: "me@c.us".into(),
            author: None,
            body: Some("+49 151 0000000".into()),
            kind: "chat".into(),
            timestamp: 1_700_000_000_000,
            from_me: false,
            has_media: false,
            ack: 0,
            quoted_id: None,
            tags: vec![],
            attributes: Default::default(),
            changes: Default::default(),
        },
    }
}

#[tokio::test]
async fn the_quarantine_is_paged_and_cleared_through_the_api() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "qs",
        json!({"chats": 1, "messagesPerChat": 1, "scanAfterMs": 1, "qrEveryMs": 50}),
    )
    .await;
    let sid = SessionId::parse("qs").unwrap();
    let now = wasync::domain::now_ms();
    let items: Vec<_> = (0..5).map(|n| quarantined("qs", n, now)).collect();
    host.app()
        .store()
        .put_quarantine(&sid, &items)
        .await
        .unwrap();

    let (status, page) = host
        .get("/whatsapp-web/session/qs/quarantine?limit=2")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["message"]["id"], "q000");
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let (_, page) = host
        .get(&format!(
            "/whatsapp-web/session/qs/quarantine?limit=10&cursor={cursor}"
        ))
        .await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["message"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["q002", "q003", "q004"]);
    assert!(page["nextCursor"].is_null());

    let (status, body) = host
        .get("/whatsapp-web/session/qs/quarantine?limit=0")
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = host.get("/whatsapp-web/session/nope/quarantine").await;
    assert_eq!(status, 404);

    let (status, body) = host.delete("/whatsapp-web/session/qs/quarantine").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 5);
    let (_, page) = host.get("/whatsapp-web/session/qs/quarantine").await;
    assert!(page["items"].as_array().unwrap().is_empty());
    host.stop().await;
}

#[tokio::test]
async fn the_retention_pass_deletes_what_is_old_and_keeps_what_is_pending() {
    let mut tuning = fast_tuning();
    tuning.retention_every = Some(Duration::from_millis(100));
    let host = TestHost::spawn_with(
        HostOptions {
            tuning,
            ..Default::default()
        }
        .var(wasync::config::WASYNC_OUTBOX_RETENTION_HOURS, "1")
        .var(wasync::config::WASYNC_QUARANTINE_RETENTION_DAYS, "1"),
    )
    .await;
    let store = host.app().store();
    let sid = SessionId::parse("old").unwrap();
    let now = wasync::domain::now_ms();
    let two_hours = 2 * 3_600_000;
    let two_days = 2 * 86_400_000;
    // Published long ago, published just now.
    let old = OutboxEvent::new("message_received", &sid, json!({"message": "secret"}));
    let fresh = OutboxEvent::new("message_received", &sid, json!({"message": "new"}));
    store.enqueue_event(&old).await.unwrap();
    store.enqueue_event(&fresh).await.unwrap();
    // Let the host's relay publish them first: its own mark (now) landing
    // after the one below would make `old` recent again.
    wasync_tests::assert_eventually!(store.pending_events(10).await.unwrap().is_empty());
    store
        .mark_published(std::slice::from_ref(&old.event_id), now - two_hours)
        .await
        .unwrap();
    store
        .mark_published(std::slice::from_ref(&fresh.event_id), now)
        .await
        .unwrap();
    store
        .put_quarantine(
            &sid,
            &[
                quarantined("old", 1, now - two_days),
                quarantined("old", 2, now),
            ],
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = store.session_events(&sid).await.unwrap();
        let q = store.list_quarantine(&sid).await.unwrap();
        if events.len() == 1 && q.len() == 1 {
            assert_eq!(events[0].event_id, fresh.event_id);
            assert_eq!(q[0].message.id, "q002");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not pruned: {} events, {} quarantined",
            events.len(),
            q.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.stop().await;
}

/// `?purge=true` removes the session's outbox events too: `message_received`
/// bodies are its messages.
#[tokio::test]
async fn a_purge_leaves_no_event_bodies() {
    let host = TestHost::spawn().await;
    host.create_sim(
        "pg",
        json!({"chats": 2, "messagesPerChat": 3, "scanAfterMs": 1, "qrEveryMs": 50}),
    )
    .await;
    host.wait_sync_done("pg").await;
    let sid = SessionId::parse("pg").unwrap();
    let store = host.app().store();
    assert!(!store.session_events(&sid).await.unwrap().is_empty());
    let (status, body) = host.delete("/whatsapp-web/session/pg?purge=true").await;
    assert_eq!(status, 200, "{body}");
    assert!(store.session_events(&sid).await.unwrap().is_empty());
    host.stop().await;
}
