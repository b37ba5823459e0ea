//! `session_ready` through the real host into a real RabbitMQ queue: after
//! a sync, during a broker outage (a TCP proxy cut between host and broker),
//! and across a host restart.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use wasync::domain::{OutboxEvent, SessionId};
use wasync::storage::Store;
use wasync_tests::amqp::{QueueConsumer, amqp_url, amqp_url_via, broker_addr, unique_queue};
use wasync_tests::proxy::TcpProxy;
use wasync_tests::{HostOptions, TestHost, assert_eventually, fast_tuning};

fn amqp_host(url: &str, queue: &str) -> HostOptions {
    HostOptions {
        tuning: fast_tuning(),
        ..Default::default()
    }
    .var(wasync::config::AMQP_URL, url)
    .var(wasync::config::AMQP_QUEUE, queue)
}

fn sim(chats: u32) -> Value {
    json!({"chats": chats, "messagesPerChat": 3, "qrEveryMs": 40, "scanAfterMs": 60, "fetchLatencyMs": 0})
}

/// The stored chat ids of a session, in the order the sync walked them.
async fn chat_ids(host: &TestHost, id: &str) -> Vec<Value> {
    let (status, page) = host
        .get(&format!("/whatsapp-web/session/{id}/chats?limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect()
}

async fn outbox(store: &dyn Store, id: &str) -> Vec<OutboxEvent> {
    store
        .session_events(&SessionId::parse(id).unwrap())
        .await
        .unwrap()
}

/// Joins `id` on a fresh WebSocket and waits for its `sync_complete`.
async fn create_and_see_complete(host: &TestHost, id: &str, chats: u32) -> Value {
    let mut ws = host.ws().await;
    host.create_sim(id, sim(chats)).await;
    ws.join(id).await;
    let events = ws.until("sync_complete").await;
    events.last().unwrap()["data"].clone()
}

#[tokio::test]
async fn amqp_host_publishes_session_ready_after_a_sync_once() {
    let queue = unique_queue("host");
    let mut consumer = QueueConsumer::start(&queue).await;
    let host = TestHost::spawn_with(amqp_host(&amqp_url(), &queue)).await;

    create_and_see_complete(&host, "ai", 4).await;
    let chats = chat_ids(&host, "ai").await;
    assert_eq!(chats.len(), 4);
    let events = outbox(&*host.app().store(), "ai").await;
    assert_eq!(events.len(), 1, "one session_ready per sync");
    let ev = &events[0];

    let ids: HashSet<String> = [ev.event_id.clone()].into();
    consumer.wait_for_ids(&ids, Duration::from_secs(15)).await;
    consumer.settle(Duration::from_millis(500)).await;
    assert_eq!(consumer.seen.len(), 1, "exactly once: {:?}", consumer.seen);
    let got = &consumer.seen[0];
    assert_eq!(got.body["pattern"], "session_ready");
    assert_eq!(got.body["data"]["sessionId"], "ai");
    assert_eq!(
        got.body["data"]["chats"],
        Value::Array(chats),
        "exact chat ids"
    );
    assert_eq!(got.body, wasync_tests::amqp::envelope(ev));
    assert_eq!(got.message_id.as_deref(), Some(ev.event_id.as_str()));
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.delivery_mode, Some(2));
    assert!(got.timestamp.is_some());
    assert_eventually!(
        outbox(&*host.app().store(), "ai").await[0]
            .published_at
            .is_some()
    );

    let (status, ready) = host.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["events"]["kind"], "amqp");
    assert_eq!(ready["events"]["ok"], true);
    host.stop().await;
    consumer.delete().await;
}

#[tokio::test]
async fn amqp_host_syncs_through_a_broker_outage_and_every_session_ready_arrives_after() {
    let queue = unique_queue("host-outage");
    let mut consumer = QueueConsumer::start(&queue).await;
    let proxy = TcpProxy::start(broker_addr()).await;
    let host = TestHost::spawn_with(amqp_host(&amqp_url_via(proxy.addr()), &queue)).await;

    // Flowing before the cut.
    create_and_see_complete(&host, "before", 2).await;
    consumer.wait_for_count(1, Duration::from_secs(15)).await;
    // Delivered is not yet confirmed: wait until the relay marked it.
    assert_eventually!(
        outbox(&*host.app().store(), "before").await[0]
            .published_at
            .is_some()
    );

    // Broker unreachable: syncs still complete for the frontend.
    proxy.cut();
    let during = ["cut-a", "cut-b", "cut-c"];
    for (i, id) in during.iter().enumerate() {
        let done = create_and_see_complete(&host, id, 2 + i as u32).await;
        assert_eq!(done["sessionId"], *id, "{done}");
    }
    // A manual re-sync during the outage too.
    let mut ws = host.ws().await;
    ws.join("before").await;
    let (status, body) = host
        .post("/whatsapp-web/session/before/sync-chats", json!({}))
        .await;
    assert!(status == 200 || status == 202, "{status} {body}");
    ws.until("sync_complete").await;

    let (status, ready) = host.get("/readyz").await;
    assert_eq!(status, 503, "readyz reports the broker: {ready}");
    assert_eq!(ready["events"]["ok"], false);
    let store = host.app().store();
    let pending = store.pending_events(100).await.unwrap();
    assert_eq!(pending.len(), 4, "the outage's events wait in the outbox");

    proxy.restore();
    let mut all = Vec::new();
    for id in ["before"].iter().chain(during.iter()) {
        all.extend(outbox(&*store, id).await);
    }
    assert_eq!(all.len(), 5);
    let ids: HashSet<String> = all.iter().map(|e| e.event_id.clone()).collect();
    consumer.wait_for_ids(&ids, Duration::from_secs(30)).await;
    consumer.settle(Duration::from_millis(500)).await;
    for (id, copies) in consumer.by_id() {
        let ev = all
            .iter()
            .find(|e| e.event_id == id)
            .unwrap_or_else(|| panic!("unexpected message {id}"));
        for c in copies {
            assert_eq!(
                c.body,
                wasync_tests::amqp::envelope(ev),
                "duplicates carry the same event"
            );
        }
    }
    for id in during {
        let chats = chat_ids(&host, id).await;
        let ev = &outbox(&*store, id).await[0];
        assert_eq!(
            ev.data["chats"],
            Value::Array(chats),
            "exact chat ids of {id}"
        );
    }
    assert_eventually!(store.pending_events(10).await.unwrap().is_empty());
    assert_eventually!(host.get("/readyz").await.0 == 200);
    host.stop().await;
    consumer.delete().await;
}

#[tokio::test]
async fn amqp_host_restarted_with_pending_events_publishes_them() {
    let queue = unique_queue("host-restart");
    let proxy = TcpProxy::start(broker_addr()).await;
    proxy.cut();
    // The host starts with the broker unreachable.
    let mut host = TestHost::spawn_with(amqp_host(&amqp_url_via(proxy.addr()), &queue)).await;
    create_and_see_complete(&host, "pending", 3).await;
    let before = outbox(&*host.app().store(), "pending").await;
    assert_eq!(before.len(), 1);
    assert!(before[0].published_at.is_none());

    host.restart().await;
    let mut consumer = QueueConsumer::start(&queue).await;
    proxy.restore();
    let ids: HashSet<String> = [before[0].event_id.clone()].into();
    consumer.wait_for_ids(&ids, Duration::from_secs(20)).await;
    consumer.settle(Duration::from_millis(500)).await;
    let copies = &consumer.by_id()[&before[0].event_id];
    assert_eq!(copies[0].body, wasync_tests::amqp::envelope(&before[0]));
    // Whatever else the restarted host published is in its outbox too.
    let store = host.app().store();
    let known: HashSet<String> = outbox(&*store, "pending")
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    for r in &consumer.seen {
        assert!(known.contains(r.message_id.as_deref().unwrap_or("")));
    }
    host.stop().await;
    consumer.delete().await;
}
