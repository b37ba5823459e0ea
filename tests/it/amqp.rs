//! The RabbitMQ adapter against a real broker: contract of the message,
//! outages (through a TCP proxy), restarts, and broker-side surprises.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wasync::domain::{OutboxEvent, SessionId};
use wasync::events::amqp::AmqpEvents;
use wasync::events::relay::{self, RelaySignal};
use wasync::events::{EventBus, EventError, EventSwitches, MESSAGE_RECEIVED, SYNC_FAILED};
use wasync::storage::Store;
use wasync::storage::embedded::EmbeddedStore;
use wasync_tests::amqp::{
    QueueConsumer, amqp_url, amqp_url_via, bench_outbox_relay, broker_addr, connect, delete_queue,
    session_ready_event, test_config, test_relay_config, unique_queue,
};
use wasync_tests::proxy::TcpProxy;

/// A running relay over a store and a bus.
struct Relay {
    signal: RelaySignal,
    stop: CancellationToken,
    task: JoinHandle<u64>,
}

impl Relay {
    fn start(store: Arc<dyn Store>, bus: Arc<dyn EventBus>) -> Self {
        let signal = RelaySignal::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(relay::run(
            store,
            bus,
            signal.clone(),
            test_relay_config(),
            stop.clone(),
        ));
        Self { signal, stop, task }
    }

    async fn stop(self) -> u64 {
        self.stop.cancel();
        self.task.await.expect("relay task")
    }
}

fn open_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.path().join("wasync.redb")).expect("open store"))
}

async fn enqueue(store: &dyn Store, events: &[OutboxEvent]) -> HashSet<String> {
    for ev in events {
        store.enqueue_event(ev).await.expect("enqueue");
    }
    events.iter().map(|e| e.event_id.clone()).collect()
}

/// Every id arrived, none unknown, and copies of one id carry the same body.
fn assert_complete(consumer: &QueueConsumer, events: &[OutboxEvent]) {
    let by_id = consumer.by_id();
    let expected: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    for (id, copies) in &by_id {
        assert!(
            expected.contains(id.as_str()),
            "unexpected message id {id:?}"
        );
        for c in copies {
            assert_eq!(c.body, copies[0].body, "duplicates of {id} differ");
        }
    }
    for ev in events {
        let copies = by_id
            .get(&ev.event_id)
            .unwrap_or_else(|| panic!("event {} lost", ev.event_id));
        assert_eq!(
            copies[0].body,
            wasync_tests::amqp::envelope(ev),
            "body of {}",
            ev.event_id
        );
    }
}

async fn assert_outbox_empty(store: &dyn Store) {
    let pending = store.pending_events(10).await.expect("pending");
    assert!(pending.is_empty(), "still pending: {pending:?}");
}

#[tokio::test]
async fn amqp_session_ready_arrives_once_with_the_contract_envelope_and_properties() {
    let queue = unique_queue("contract");
    let mut consumer = QueueConsumer::start(&queue).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let bus = Arc::new(AmqpEvents::new(test_config(&amqp_url(), &queue)).unwrap());
    bus.ping().await.expect("broker reachable");
    let relay = Relay::start(store.clone(), bus);

    let events = vec![
        session_ready_event("alice", 3),
        session_ready_event("bob", 0),
        session_ready_event("carol", 120),
    ];
    let ids = enqueue(&*store, &events).await;
    relay.signal.kick();
    consumer.wait_for_ids(&ids, Duration::from_secs(15)).await;
    consumer.settle(Duration::from_millis(500)).await;

    assert_eq!(consumer.seen.len(), 3, "each event exactly once");
    for ev in &events {
        let got = consumer.by_id().remove(&ev.event_id).unwrap();
        let got = got[0];
        assert_eq!(
            got.body,
            serde_json::json!({
                "pattern": "session_ready",
                "data": { "sessionId": ev.session_id, "chats": ev.data["chats"] },
            })
        );
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert_eq!(got.delivery_mode, Some(2), "persistent");
        assert_eq!(got.message_id.as_deref(), Some(ev.event_id.as_str()));
        assert_eq!(got.timestamp, Some((ev.created_at / 1000) as u64));
        assert_eq!(got.kind.as_deref(), Some("session_ready"));
        assert_eq!(got.app_id.as_deref(), Some("wasync"));
        assert!(!got.redelivered);
    }
    // Chat ids are exact, in order.
    let alice = &consumer.by_id()[&events[0].event_id][0].body;
    assert_eq!(
        alice["data"]["chats"],
        serde_json::json!(["0@c.us", "1@c.us", "2@c.us"])
    );

    assert_outbox_empty(&*store).await;
    for ev in &events {
        let sid = SessionId::parse(&ev.session_id).unwrap();
        let stored = store.session_events(&sid).await.unwrap();
        assert!(stored[0].published_at.is_some(), "marked published");
    }
    assert_eq!(relay.stop().await, 3);
    consumer.delete().await;
}

#[tokio::test]
async fn amqp_outage_through_a_cut_proxy_loses_nothing() {
    let queue = unique_queue("outage");
    let mut consumer = QueueConsumer::start(&queue).await;
    let proxy = TcpProxy::start(broker_addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let bus = Arc::new(AmqpEvents::new(test_config(&amqp_url_via(proxy.addr()), &queue)).unwrap());
    let relay = Relay::start(store.clone(), bus.clone());

    // Before the cut: flowing.
    let before: Vec<_> = (0..20)
        .map(|i| session_ready_event(&format!("pre{i}"), 2))
        .collect();
    enqueue(&*store, &before).await;
    relay.signal.kick();
    consumer.wait_for_count(20, Duration::from_secs(15)).await;

    // A big backlog, cut while it is being published (mid confirm window).
    let backlog: Vec<_> = (0..600)
        .map(|i| session_ready_event(&format!("mid{}", i % 7), 5))
        .collect();
    enqueue(&*store, &backlog).await;
    relay.signal.kick();
    consumer.wait_for_count(40, Duration::from_secs(15)).await;
    proxy.cut();

    // During the cut: more events, none of which can go out.
    let during: Vec<_> = (0..30)
        .map(|i| session_ready_event(&format!("cut{i}"), 1))
        .collect();
    enqueue(&*store, &during).await;
    relay.signal.kick();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        matches!(bus.ping().await, Err(EventError::Unavailable(_))),
        "ping reports the outage"
    );
    let stuck = store.pending_events(10_000).await.unwrap();
    assert!(
        stuck.len() >= during.len(),
        "events wait in the outbox during the outage ({} pending)",
        stuck.len()
    );
    assert!(
        stuck.iter().any(|e| e.attempts > 0),
        "the relay kept trying"
    );

    proxy.restore();
    let all: Vec<OutboxEvent> = before.into_iter().chain(backlog).chain(during).collect();
    let ids: HashSet<String> = all.iter().map(|e| e.event_id.clone()).collect();
    consumer.wait_for_ids(&ids, Duration::from_secs(30)).await;
    consumer.settle(Duration::from_millis(500)).await;
    assert_complete(&consumer, &all);
    assert_outbox_empty(&*store).await;
    bus.ping().await.expect("ping healthy again");
    assert!(proxy.connections() >= 2, "the adapter reconnected");
    let dups = consumer.seen.len() - ids.len();
    eprintln!(
        "outage: {} events, {} deliveries, {dups} duplicates (same message_id)",
        ids.len(),
        consumer.seen.len()
    );
    relay.stop().await;
    consumer.delete().await;
}

#[tokio::test]
async fn amqp_events_pending_when_the_relay_stopped_go_out_after_restart() {
    let queue = unique_queue("restart");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasync.redb");
    let proxy = TcpProxy::start(broker_addr()).await;
    proxy.cut();

    // First life: broker unreachable, events pile up, then the host stops.
    let events: Vec<_> = (0..25)
        .map(|i| session_ready_event(&format!("r{i}"), 3))
        .collect();
    {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).unwrap());
        let bus =
            Arc::new(AmqpEvents::new(test_config(&amqp_url_via(proxy.addr()), &queue)).unwrap());
        let relay = Relay::start(store.clone(), bus);
        enqueue(&*store, &events).await;
        relay.signal.kick();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(relay.stop().await, 0, "nothing could be published");
        assert_eq!(store.pending_events(100).await.unwrap().len(), 25);
    }

    // Second life on the same file, broker reachable.
    let mut consumer = QueueConsumer::start(&queue).await;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).unwrap());
    let bus = Arc::new(AmqpEvents::new(test_config(&amqp_url(), &queue)).unwrap());
    let relay = Relay::start(store.clone(), bus);
    let ids: HashSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    consumer.wait_for_ids(&ids, Duration::from_secs(15)).await;
    consumer.settle(Duration::from_millis(300)).await;
    assert_eq!(consumer.seen.len(), 25, "each exactly once");
    assert_complete(&consumer, &events);
    assert_outbox_empty(&*store).await;
    relay.stop().await;
    consumer.delete().await;
}

#[tokio::test]
async fn amqp_host_starts_with_the_broker_down_and_ping_follows_it() {
    let queue = unique_queue("ping");
    let proxy = TcpProxy::start(broker_addr()).await;
    proxy.cut();
    let bus = AmqpEvents::new(test_config(&amqp_url_via(proxy.addr()), &queue))
        .expect("construction never needs the broker");
    assert!(matches!(bus.ping().await, Err(EventError::Unavailable(_))));
    let ev = session_ready_event("down", 1);
    let err = bus.publish(std::slice::from_ref(&ev)).await.unwrap_err();
    assert!(matches!(err, EventError::Unavailable(_)), "{err}");

    proxy.restore();
    // `ping` caches a failure for a second so probes cannot storm the broker.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bus.ping().await.expect("up once the network is back");
    assert_eq!(
        bus.publish(std::slice::from_ref(&ev)).await.unwrap(),
        vec![ev.event_id.clone()]
    );

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        bus.ping().await.is_err(),
        "a dropped link is noticed by ping"
    );
    delete_queue(&queue).await;
}

#[tokio::test]
async fn amqp_a_queue_deleted_under_the_adapter_is_declared_again() {
    let queue = unique_queue("redeclare");
    let bus = AmqpEvents::new(test_config(&amqp_url(), &queue)).unwrap();
    let first = session_ready_event("q1", 1);
    assert_eq!(
        bus.publish(std::slice::from_ref(&first)).await.unwrap(),
        vec![first.event_id.clone()]
    );
    delete_queue(&queue).await;

    // Unroutable now: returned by the broker, so not acknowledged.
    let second = session_ready_event("q2", 2);
    let err = bus
        .publish(std::slice::from_ref(&second))
        .await
        .unwrap_err();
    assert!(matches!(err, EventError::NotConfirmed(_)), "{err}");
    // The retry reconnects, declares the queue and delivers.
    assert_eq!(
        bus.publish(std::slice::from_ref(&second)).await.unwrap(),
        vec![second.event_id.clone()]
    );
    let mut consumer = QueueConsumer::start(&queue).await;
    consumer.wait_for_count(1, Duration::from_secs(10)).await;
    consumer.settle(Duration::from_millis(300)).await;
    assert_eq!(consumer.seen.len(), 1);
    assert_eq!(
        consumer.seen[0].message_id.as_deref(),
        Some(second.event_id.as_str())
    );
    consumer.delete().await;
}

#[tokio::test]
async fn amqp_a_queue_declared_by_operators_with_other_arguments_is_used_as_is() {
    let queue = unique_queue("foreign");
    let conn = connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(100_000));
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .unwrap();

    let bus = AmqpEvents::new(test_config(&amqp_url(), &queue)).unwrap();
    let ev = session_ready_event("foreign", 1);
    assert_eq!(
        bus.publish(std::slice::from_ref(&ev)).await.unwrap(),
        vec![ev.event_id.clone()]
    );
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("message in the operators' queue");
    assert_eq!(
        got.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some(ev.event_id.as_str())
    );
    delete_queue(&queue).await;
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn amqp_optional_patterns_follow_their_switches() {
    let queue = unique_queue("switches");
    let mut consumer = QueueConsumer::start(&queue).await;
    let mut cfg = test_config(&amqp_url(), &queue);
    cfg.switches = EventSwitches {
        sync_failed: false,
        message_received: true,
        message_updated: false,
    };
    let bus = AmqpEvents::new(cfg).unwrap();
    let sid = SessionId::parse("sw").unwrap();
    let ready = session_ready_event("sw", 1);
    let failed = OutboxEvent::new(
        SYNC_FAILED,
        &sid,
        serde_json::json!({"sessionId": "sw", "syncId": "y", "reason": "cancelled"}),
    );
    let message = OutboxEvent::new(
        MESSAGE_RECEIVED,
        &sid,
        serde_json::json!({"sessionId": "sw", "chatId": "1@c.us", "message": {"id": "m1", "body": "hi"}}),
    );
    let updated = OutboxEvent::new(
        wasync::events::MESSAGE_UPDATED,
        &sid,
        serde_json::json!({"sessionId": "sw", "chatId": "1@c.us", "messageId": "m1",
            "change": {"kind": "revoke", "at": 5}}),
    );
    let batch = [
        ready.clone(),
        failed.clone(),
        message.clone(),
        updated.clone(),
    ];
    let mut acked = bus.publish(&batch).await.unwrap();
    acked.sort();
    let mut all: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
    all.sort();
    assert_eq!(acked, all, "switched-off events leave the outbox too");

    consumer.wait_for_count(2, Duration::from_secs(10)).await;
    consumer.settle(Duration::from_millis(500)).await;
    let patterns: Vec<&str> = consumer
        .seen
        .iter()
        .map(|r| r.body["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(patterns, ["session_ready", "message_received"]);
    assert_eq!(
        consumer.seen[1].body,
        wasync_tests::amqp::envelope(&message)
    );
    assert_eq!(consumer.seen[1].kind.as_deref(), Some("message_received"));
    consumer.delete().await;
}

#[tokio::test]
async fn amqp_relay_bench_runs() {
    let r = bench_outbox_relay(300, 128, 64).await;
    assert_eq!(r.events, 300);
    assert!(r.events_per_sec() > 0.0);
    eprintln!("{r}");
}
