//! RabbitMQ helpers for the tests and the bench: the broker URL, per-test
//! queue names, a real consumer, and the outbox relay throughput bench.
//!
//! The broker is real (`scripts/test.sh` starts it and exports
//! `WASYNC_TEST_AMQP_URL`); a test that cannot reach it panics with the
//! command that fixes it.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::mpsc;
use wasync::domain::{OutboxEvent, SessionId};
use wasync::events::amqp::{AmqpConfig, AmqpEvents};
use wasync::events::relay;
use wasync::storage::Store;
use wasync::storage::embedded::EmbeddedStore;

/// Env var naming the test broker.
pub const AMQP_URL_ENV: &str = "WASYNC_TEST_AMQP_URL";
const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The body a NestJS consumer reads for `ev`, parsed (what the test
/// consumers compare a delivery's body with).
pub fn envelope(ev: &OutboxEvent) -> serde_json::Value {
    serde_json::from_slice(&ev.envelope().expect("envelope")).expect("envelope is JSON")
}

/// The test broker's URL (`WASYNC_TEST_AMQP_URL`, else the local default).
pub fn amqp_url() -> String {
    std::env::var(AMQP_URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn parsed_url() -> AMQPUri {
    let url = amqp_url();
    url.parse()
        .unwrap_or_else(|e| panic!("{AMQP_URL_ENV}={url} is not an AMQP URL: {e}"))
}

/// The broker's TCP address, for a [`crate::proxy::TcpProxy`] upstream.
pub fn broker_addr() -> SocketAddr {
    let uri = parsed_url();
    (uri.authority.host.as_str(), uri.authority.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve the host of {AMQP_URL_ENV}={}", amqp_url()))
}

/// The broker URL with its host and port replaced by `addr` (a proxy).
pub fn amqp_url_via(addr: SocketAddr) -> String {
    let mut uri = parsed_url();
    uri.authority.host = addr.ip().to_string();
    uri.authority.port = addr.port();
    uri.to_string()
}

/// A queue name no other test uses.
pub fn unique_queue(tag: &str) -> String {
    format!("wasync.test.{tag}.{}", uuid::Uuid::new_v4().simple())
}

/// Whether the test broker answers, with the reason if not (for callers that
/// report rather than panic, like the bench).
pub async fn broker_reachable() -> Result<(), String> {
    let url = amqp_url();
    match tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(c)) => {
            let _ = c.close(200, "probe".into()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("RabbitMQ unreachable at {AMQP_URL_ENV}={url}: {e}")),
        Err(_) => Err(format!(
            "RabbitMQ at {AMQP_URL_ENV}={url} did not answer in 5s"
        )),
    }
}

/// Connects to the test broker or panics saying how to start it.
pub async fn connect() -> Connection {
    let url = amqp_url();
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!(
            "RabbitMQ unreachable at {AMQP_URL_ENV}={url}: {e}. \
             Start it with `rabbitmq-server -detached` (or run `just test`)."
        ),
        Err(_) => panic!(
            "RabbitMQ at {AMQP_URL_ENV}={url} did not answer in 10s. \
             Start it with `rabbitmq-server -detached` (or run `just test`)."
        ),
    }
}

/// An adapter config for `queue` on the test broker (or `url`), with short
/// timeouts so failure tests stay quick.
pub fn test_config(url: &str, queue: &str) -> AmqpConfig {
    let mut cfg = AmqpConfig::new(url);
    cfg.queue = queue.to_owned();
    cfg.connect_timeout = Duration::from_secs(3);
    cfg.confirm_timeout = Duration::from_secs(5);
    cfg
}

/// A relay tuned for tests: quick retries so recoveries show up fast.
pub fn test_relay_config() -> relay::RelayConfig {
    relay::RelayConfig {
        batch: 256,
        poll: Duration::from_millis(100),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..relay::RelayConfig::default()
    }
}

/// One message as a consumer saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub delivery_mode: Option<u8>,
    pub timestamp: Option<u64>,
    pub kind: Option<String>,
    pub app_id: Option<String>,
    pub redelivered: bool,
    /// The body, parsed (`Value::Null` plus `raw` if it was not JSON).
    pub body: serde_json::Value,
    pub raw: Vec<u8>,
}

/// A real consumer on its own connection straight to the broker (never
/// through a test proxy), acking everything it receives.
pub struct QueueConsumer {
    queue: String,
    conn: Connection,
    channel: Channel,
    rx: mpsc::UnboundedReceiver<Received>,
    /// Everything received so far, in order.
    pub seen: Vec<Received>,
}

impl std::fmt::Debug for QueueConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConsumer")
            .field("queue", &self.queue)
            .field("seen", &self.seen.len())
            .finish()
    }
}

impl QueueConsumer {
    /// Declares `queue` as the host does (durable, no arguments) and
    /// consumes from it.
    pub async fn start(queue: &str) -> Self {
        let conn = connect().await;
        let channel = conn.create_channel().await.expect("consumer channel");
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consumer declares queue");
        channel
            .basic_qos(1000, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                format!("test-{}", uuid::Uuid::new_v4().simple()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("basic_consume");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let p = &d.properties;
                let received = Received {
                    message_id: p.message_id().as_ref().map(|s| s.to_string()),
                    content_type: p.content_type().as_ref().map(|s| s.to_string()),
                    delivery_mode: *p.delivery_mode(),
                    timestamp: *p.timestamp(),
                    kind: p.kind().as_ref().map(|s| s.to_string()),
                    app_id: p.app_id().as_ref().map(|s| s.to_string()),
                    redelivered: d.redelivered,
                    body: serde_json::from_slice(&d.data).unwrap_or(serde_json::Value::Null),
                    raw: d.data.clone(),
                };
                let _ = d.ack(BasicAckOptions::default()).await;
                if tx.send(received).is_err() {
                    break;
                }
            }
        });
        Self {
            queue: queue.to_owned(),
            conn,
            channel,
            rx,
            seen: Vec::new(),
        }
    }

    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Waits until messages with every id in `ids` were seen, or panics
    /// after `timeout` listing what is missing.
    pub async fn wait_for_ids(&mut self, ids: &HashSet<String>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen: HashSet<&str> = self
                .seen
                .iter()
                .filter_map(|r| r.message_id.as_deref())
                .collect();
            let missing = ids.iter().filter(|i| !seen.contains(i.as_str())).count();
            if missing == 0 {
                return;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => self.seen.push(r),
                Ok(None) => panic!("consumer of {} stopped", self.queue),
                Err(_) => panic!(
                    "{missing} of {} events never reached queue {} within {timeout:?} ({} messages seen)",
                    ids.len(),
                    self.queue,
                    self.seen.len()
                ),
            }
        }
    }

    /// Waits until at least `n` messages were seen (or panics after `timeout`).
    pub async fn wait_for_count(&mut self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.seen.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => self.seen.push(r),
                Ok(None) => panic!("consumer of {} stopped", self.queue),
                Err(_) => panic!(
                    "only {} of {n} messages reached queue {} within {timeout:?}",
                    self.seen.len(),
                    self.queue
                ),
            }
        }
    }

    /// Collects whatever else arrives within `quiet` (to catch duplicates
    /// or stray messages after the expected ones).
    pub async fn settle(&mut self, quiet: Duration) {
        while let Ok(Some(r)) = tokio::time::timeout(quiet, self.rx.recv()).await {
            self.seen.push(r);
        }
    }

    /// Deliveries grouped by message id.
    pub fn by_id(&self) -> HashMap<String, Vec<&Received>> {
        let mut m: HashMap<String, Vec<&Received>> = HashMap::new();
        for r in &self.seen {
            m.entry(r.message_id.clone().unwrap_or_default())
                .or_default()
                .push(r);
        }
        m
    }

    /// Deletes the queue and closes the connection.
    pub async fn delete(self) {
        delete_queue_on(&self.channel, &self.queue).await;
        let _ = self.conn.close(200, "test done".into()).await;
    }
}

async fn delete_queue_on(channel: &Channel, queue: &str) {
    let _ = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
}

/// Deletes `queue` on the test broker (cleanup; errors ignored).
pub async fn delete_queue(queue: &str) {
    let conn = connect().await;
    if let Ok(ch) = conn.create_channel().await {
        delete_queue_on(&ch, queue).await;
    }
    let _ = conn.close(200, "cleanup".into()).await;
}

/// A `session_ready` event like the sync makes, with `n_chats` chat ids.
pub fn session_ready_event(session: &str, n_chats: usize) -> OutboxEvent {
    let sid = SessionId::parse(session).expect("valid session id");
    let chats: Vec<String> = (0..n_chats).map(|i| format!("{i}@c.us")).collect();
    OutboxEvent::new(
        wasync::events::SESSION_READY,
        &sid,
        serde_json::json!({ "sessionId": session, "chats": chats }),
    )
}

/// Result of [`bench_outbox_relay`].
#[derive(Debug, Clone)]
pub struct RelayBench {
    pub events: usize,
    pub batch: u32,
    pub confirm_window: usize,
    /// Time to enqueue the events into the embedded store (one durable
    /// write each, as the sync does).
    pub enqueue: Duration,
    /// Time for the relay to drain the outbox: read, publish with
    /// confirms, mark published.
    pub drain: Duration,
}

impl RelayBench {
    /// Events per second through the relay, confirms on.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.drain.as_secs_f64()
    }
}

impl std::fmt::Display for RelayBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "outbox relay -> RabbitMQ (confirms on): {} events, batch {}, window {}: \
             {:.0} events/s (drain {:.2?}; enqueue {:.2?}, {:.0} events/s)",
            self.events,
            self.batch,
            self.confirm_window,
            self.events_per_sec(),
            self.drain,
            self.enqueue,
            self.events as f64 / self.enqueue.as_secs_f64()
        )
    }
}

/// Outbox relay throughput with publisher confirms: `events` pre-enqueued
/// in a fresh embedded store, drained through [`AmqpEvents`] into a fresh
/// queue (deleted afterwards). Panics if the broker is unreachable.
pub async fn bench_outbox_relay(events: usize, batch: u32, confirm_window: usize) -> RelayBench {
    // Fail loudly up front rather than time out inside the relay.
    drop(connect().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("bench.redb")).expect("open store"));
    let queue = unique_queue("bench");
    let mut cfg = test_config(&amqp_url(), &queue);
    cfg.confirm_window = confirm_window;
    let bus = AmqpEvents::new(cfg).expect("amqp config");

    let started = Instant::now();
    for i in 0..events {
        let ev = session_ready_event(&format!("bench{}", i % 64), 10);
        store.enqueue_event(&ev).await.expect("enqueue");
    }
    let enqueue = started.elapsed();

    // Connect (and declare the queue) before the clock starts.
    wasync::events::EventBus::ping(&bus)
        .await
        .expect("broker reachable");
    let started = Instant::now();
    let mut drained = 0u64;
    let mut failures = 0;
    while (drained as usize) < events {
        match relay::drain_once(&*store, &bus, batch).await {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) => {
                failures += 1;
                assert!(failures < 20, "relay keeps failing: {e}");
            }
        }
    }
    let drain = started.elapsed();
    assert_eq!(drained as usize, events, "every event published");
    assert!(
        store.pending_events(1).await.expect("pending").is_empty(),
        "outbox drained"
    );
    delete_queue(&queue).await;
    RelayBench {
        events,
        batch,
        confirm_window,
        enqueue,
        drain,
    }
}
