//! RabbitMQ adapter on `lapin`: publishes outbox events to one durable queue
//! in the envelope a NestJS `@EventPattern` consumer reads.
//!
//! Why it looks the way it does:
//! - **Lazy link.** The host must start (and sync, and stream progress) with
//!   the broker down, so [`AmqpEvents::new`] only validates the URL. The
//!   connection, the confirm-mode channel and the queue declaration are made
//!   on first use and remade after any failure. `lapin` does not reconnect by
//!   itself; the relay's retry with backoff drives reconnection, and the
//!   outbox keeps every event until the broker confirms it.
//! - **Pipelined confirms.** A persistent message is confirmed once the
//!   broker has it on disk, so awaiting each confirm before the next publish
//!   costs a round trip plus an fsync per event (~200 events/s through the
//!   relay on the shared 2-core test machine). Keeping a sliding window of
//!   confirms in flight lets the broker batch its fsyncs: ~3-6k events/s
//!   there, 15-30x more (`just bench`, row E1). Only acked ids are
//!   returned, so a nack, a timeout or a lost channel leaves those events
//!   pending.
//! - **Mandatory publishes.** A message the broker cannot route (the queue was
//!   deleted under us) comes back acked *and* returned; it counts as not
//!   delivered, and the link is remade so the queue is declared again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::{EventBus, EventError, EventSwitches};
use crate::domain::OutboxEvent;

/// Default queue (`AMQP_QUEUE`).
pub const DEFAULT_QUEUE: &str = "wasync.session_ready";

/// AMQP `delivery_mode` for messages the broker writes to disk.
const PERSISTENT: u8 = 2;

/// Heartbeat asked for when the URL does not set one: a half-open TCP link
/// (a cable pulled, a proxy that stops forwarding) is noticed in seconds
/// rather than after the server's default minute.
const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// How long `ping` trusts its last failed connect before trying again, so a
/// `/readyz` probe loop cannot turn into a connect storm against a dead
/// broker.
const PING_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Adapter configuration (the `AMQP_*` settings).
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `AMQP_URL`, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`; `amqps://`
    /// uses rustls with the system's root certificates. Query parameters
    /// such as `heartbeat` are honoured.
    pub url: String,
    /// `AMQP_QUEUE`: the durable queue every event goes to.
    pub queue: String,
    /// Which optional patterns go out (`AMQP_PUBLISH_SYNC_FAILED`,
    /// `AMQP_PUBLISH_MESSAGES`, `AMQP_PUBLISH_UPDATES`); events of a switched-off pattern are
    /// confirmed without being sent, so they leave the outbox.
    pub switches: EventSwitches,
    /// Messages whose confirms may be outstanding at once.
    pub confirm_window: usize,
    /// Upper bound for one publish to be written, and for the oldest
    /// outstanding confirm to arrive. Past it the link counts as lost.
    pub confirm_timeout: Duration,
    /// Upper bound for TCP connect + AMQP handshake + queue declaration.
    pub connect_timeout: Duration,
}

impl AmqpConfig {
    /// A config with the defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            queue: DEFAULT_QUEUE.to_owned(),
            switches: EventSwitches::default(),
            confirm_window: 512,
            confirm_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Publishes outbox events to RabbitMQ. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct AmqpEvents {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it carries the broker password.
        f.debug_struct("AmqpEvents")
            .field("host", &self.inner.uri.authority.host)
            .field("port", &self.inner.uri.authority.port)
            .field("queue", &self.inner.cfg.queue)
            .finish()
    }
}

struct Inner {
    cfg: AmqpConfig,
    uri: AMQPUri,
    link: Mutex<LinkState>,
    /// The link's last known state, readable while a publish holds `link`
    /// (a readiness probe must not queue behind a confirm window, nor report
    /// healthy while the relay is failing to connect).
    health: std::sync::Mutex<Result<(), String>>,
}

impl Inner {
    fn set_health(&self, h: Result<(), String>) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }

    fn health(&self) -> Result<(), String> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the link so the next publish reconnects.
    fn drop_link(&self, state: &mut LinkState, why: String) {
        if let Some(link) = state.link.take() {
            close_quietly(link);
        }
        self.set_health(Err(why));
    }
}

#[derive(Default)]
struct LinkState {
    link: Option<Link>,
    /// Why the last connect failed and when, for `ping` between retries.
    last_failure: Option<(Instant, String)>,
}

/// One connection with its confirm-mode channel, queue declared.
struct Link {
    conn: Connection,
    channel: Channel,
}

impl Link {
    fn is_up(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

/// What went wrong in a window, deciding whether the link is kept.
enum WindowFault {
    /// The broker nacked some messages: its problem, the link is fine.
    Nacked(usize),
    /// Messages came back unroutable: the queue is gone; redeclare.
    Returned(usize),
    /// The channel or connection failed, or a confirm did not come in time.
    Link(String),
}

impl AmqpEvents {
    /// Validates the configuration; does not touch the network, so the host
    /// starts whether or not the broker is up.
    pub fn new(cfg: AmqpConfig) -> Result<Self, EventError> {
        let mut uri: AMQPUri = cfg
            .url
            .parse()
            .map_err(|e| EventError::InvalidConfig(format!("AMQP_URL: {e}")))?;
        if cfg.queue.is_empty() || cfg.queue.len() > 255 {
            return Err(EventError::InvalidConfig(
                "AMQP_QUEUE must be 1 to 255 bytes".into(),
            ));
        }
        if cfg.queue.starts_with("amq.") {
            return Err(EventError::InvalidConfig(
                "AMQP_QUEUE must not start with `amq.` (reserved by the broker)".into(),
            ));
        }
        if cfg.confirm_window == 0 {
            return Err(EventError::InvalidConfig(
                "confirm window must be at least 1".into(),
            ));
        }
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_SECS);
        }
        if uri.query.connection_timeout.is_none() {
            uri.query.connection_timeout = Some(cfg.connect_timeout.as_millis() as u64);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                uri,
                link: Mutex::new(LinkState::default()),
                health: std::sync::Mutex::new(Err("not connected yet".into())),
            }),
        })
    }

    /// The queue events go to.
    pub fn queue(&self) -> &str {
        &self.inner.cfg.queue
    }
}

impl Inner {
    /// Returns a working link, connecting if there is none.
    async fn ensure<'a>(&self, state: &'a mut LinkState) -> Result<&'a Link, EventError> {
        if state.link.as_ref().is_some_and(|l| !l.is_up())
            && let Some(dead) = state.link.take()
        {
            tracing::info!(target: "wasync::events", "amqp: link lost, reconnecting");
            close_quietly(dead);
            self.set_health(Err("link lost".into()));
        }
        if state.link.is_none() {
            match tokio::time::timeout(self.cfg.connect_timeout, self.connect()).await {
                Ok(Ok(link)) => {
                    if state.last_failure.take().is_some() {
                        tracing::info!(target: "wasync::events", queue = %self.cfg.queue, "amqp: broker reachable again");
                    }
                    state.link = Some(link);
                    self.set_health(Ok(()));
                }
                Ok(Err(e)) => {
                    state.last_failure = Some((Instant::now(), e.clone()));
                    self.set_health(Err(e.clone()));
                    return Err(EventError::Unavailable(e));
                }
                Err(_) => {
                    let e = format!("connect timed out after {:?}", self.cfg.connect_timeout);
                    state.last_failure = Some((Instant::now(), e.clone()));
                    self.set_health(Err(e.clone()));
                    return Err(EventError::Unavailable(e));
                }
            }
        }
        Ok(state.link.as_ref().expect("link set above"))
    }

    async fn connect(&self) -> Result<Link, String> {
        let props = ConnectionProperties::default().with_connection_name("wasync".into());
        let conn = Connection::connect_uri(self.uri.clone(), props)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| format!("open channel: {e}"))?;
        let queue = self.cfg.queue.as_str();
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let channel = match declared {
            Ok(_) => channel,
            Err(e) => {
                // Usually PRECONDITION_FAILED: operators created the queue
                // with other arguments (quorum type, TTL...). Their queue
                // wins; the broker closed this channel, so check on a fresh
                // one that it exists and publish into it as it is.
                let channel = conn
                    .create_channel()
                    .await
                    .map_err(|e| format!("open channel: {e}"))?;
                channel
                    .queue_declare(
                        queue.into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e2| format!("declare queue {queue}: {e}; passive check: {e2}"))?;
                tracing::warn!(target: "wasync::events", queue, error = %e, "amqp: queue exists with other arguments; using it as it is");
                channel
            }
        };
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("enable publisher confirms: {e}"))?;
        tracing::debug!(target: "wasync::events", queue, "amqp: connected");
        Ok(Link { conn, channel })
    }

    /// Publishes `events` keeping up to `confirm_window` confirms in
    /// flight: a slot frees as the oldest confirm arrives and the next
    /// message goes out at once, so the broker's fsync batches never wait
    /// for the client. Returns the acked ids, plus what went wrong for the
    /// others. Stops at the first link fault: what follows would fail too.
    async fn publish_all(
        &self,
        channel: &Channel,
        events: &[&OutboxEvent],
    ) -> (Vec<String>, Option<WindowFault>) {
        let window = self.cfg.confirm_window;
        let mut in_flight = VecDeque::with_capacity(window.min(events.len()));
        let mut acked = Vec::with_capacity(events.len());
        let (mut nacked, mut returned) = (0usize, 0usize);
        let mut next = events.iter();
        let mut fault = None;
        'outer: loop {
            // Fill the window.
            while in_flight.len() < window {
                let Some(ev) = next.next() else { break };
                let body = match ev.envelope() {
                    Ok(b) => b,
                    Err(e) => {
                        // Cannot happen for a `Value`; kept pending, not dropped.
                        tracing::error!(target: "wasync::events", event_id = %ev.event_id, error = %e, "amqp: event not serialisable");
                        continue;
                    }
                };
                let sent = tokio::time::timeout(
                    self.cfg.confirm_timeout,
                    channel.basic_publish(
                        "".into(),
                        self.cfg.queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        properties(ev),
                    ),
                )
                .await;
                match sent {
                    Ok(Ok(confirm)) => in_flight.push_back((ev.event_id.as_str(), confirm)),
                    Ok(Err(e)) => {
                        fault = Some(WindowFault::Link(format!("publish: {e}")));
                        break 'outer;
                    }
                    Err(_) => {
                        fault = Some(WindowFault::Link("publish timed out".into()));
                        break 'outer;
                    }
                }
            }
            // Take the oldest confirm (the broker confirms in order).
            let Some((id, confirm)) = in_flight.pop_front() else {
                break;
            };
            match tokio::time::timeout(self.cfg.confirm_timeout, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => acked.push(id.to_owned()),
                Ok(Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)))) => returned += 1,
                Ok(Ok(Confirmation::Nack(None))) => nacked += 1,
                Ok(Ok(Confirmation::NotRequested)) => {
                    // Confirm mode is set before a link is handed out; if it
                    // is not in effect, nothing here can be trusted.
                    fault = Some(WindowFault::Link("confirms not enabled".into()));
                    break;
                }
                Ok(Err(e)) => {
                    fault = Some(WindowFault::Link(format!("awaiting confirm: {e}")));
                    break;
                }
                Err(_) => {
                    fault = Some(WindowFault::Link(format!(
                        "no confirm within {:?}",
                        self.cfg.confirm_timeout
                    )));
                    break;
                }
            }
        }
        // On a link fault, confirms still in flight may yet resolve (the
        // broker may have them); collect those already settled, without
        // waiting, so fewer events are published twice.
        if fault.is_some() {
            for (id, confirm) in in_flight {
                if let Ok(Ok(Confirmation::Ack(None))) =
                    tokio::time::timeout(Duration::ZERO, confirm).await
                {
                    acked.push(id.to_owned());
                }
            }
        }
        if fault.is_none() {
            if returned > 0 {
                fault = Some(WindowFault::Returned(returned));
            } else if nacked > 0 {
                fault = Some(WindowFault::Nacked(nacked));
            }
        }
        (acked, fault)
    }
}

/// The AMQP properties of an event's message.
fn properties(ev: &OutboxEvent) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(PERSISTENT)
        .with_message_id(ev.event_id.as_str().into())
        // AMQP timestamps are whole seconds; the event's creation, not the
        // (possibly much later) publish.
        .with_timestamp(u64::try_from(ev.created_at / 1000).unwrap_or(0))
        .with_type(ev.pattern.as_str().into())
        .with_app_id("wasync".into())
}

/// Closes a link without waiting: on a dead socket the close handshake can
/// only time out, and the caller wants its new link now.
fn close_quietly(link: Link) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            link.conn.close(200, "wasync reconnecting".into()),
        )
        .await;
    });
}

#[async_trait]
impl EventBus for AmqpEvents {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    async fn publish(&self, events: &[OutboxEvent]) -> Result<Vec<String>, EventError> {
        let inner = &*self.inner;
        let mut acked = Vec::with_capacity(events.len());
        let mut wanted = Vec::with_capacity(events.len());
        for ev in events {
            if inner.cfg.switches.allows(&ev.pattern) {
                wanted.push(ev);
            } else {
                // Switched off: confirm without sending so the outbox drains.
                tracing::debug!(target: "wasync::events", event_id = %ev.event_id, pattern = %ev.pattern, "amqp: pattern switched off, not published");
                acked.push(ev.event_id.clone());
            }
        }
        if wanted.is_empty() {
            return Ok(acked);
        }
        let mut state = inner.link.lock().await;
        let channel = match inner.ensure(&mut state).await {
            Ok(link) => link.channel.clone(),
            Err(e) if acked.is_empty() => return Err(e),
            Err(e) => {
                tracing::warn!(target: "wasync::events", error = %e, "amqp: broker unavailable");
                return Ok(acked);
            }
        };
        let (ok, fault) = inner.publish_all(&channel, &wanted).await;
        acked.extend(ok);
        let last_fault = match fault {
            None => None,
            Some(WindowFault::Nacked(n)) => {
                Some(EventError::NotConfirmed(format!("{n} messages nacked")))
            }
            Some(WindowFault::Returned(n)) => {
                let e = format!(
                    "{n} messages returned unroutable (queue {} missing?)",
                    inner.cfg.queue
                );
                inner.drop_link(&mut state, e.clone());
                Some(EventError::NotConfirmed(e))
            }
            Some(WindowFault::Link(e)) => {
                inner.drop_link(&mut state, e.clone());
                Some(EventError::Unavailable(e))
            }
        };
        match last_fault {
            Some(e) if acked.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(target: "wasync::events", error = %e, acked = acked.len(), of = events.len(), "amqp: batch partly confirmed");
                Ok(acked)
            }
            None => Ok(acked),
        }
    }

    async fn ping(&self) -> Result<(), EventError> {
        // A publish holds the link: report what it last saw rather than
        // queue a readiness probe behind a confirm window.
        let Ok(mut state) = self.inner.link.try_lock() else {
            return self.inner.health().map_err(EventError::Unavailable);
        };
        if state.link.as_ref().is_some_and(Link::is_up) {
            return Ok(());
        }
        if let Some((at, why)) = &state.last_failure
            && at.elapsed() < PING_RETRY_AFTER
            && state.link.is_none()
        {
            return Err(EventError::Unavailable(why.clone()));
        }
        self.inner.ensure(&mut state).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_is_a_clear_error_not_a_panic() {
        for (url, queue, needle) in [
            ("http://x", DEFAULT_QUEUE, "AMQP_URL"),
            ("not a url", DEFAULT_QUEUE, "AMQP_URL"),
            ("amqp://127.0.0.1", "", "AMQP_QUEUE"),
            ("amqp://127.0.0.1", "amq.direct", "AMQP_QUEUE"),
        ] {
            let mut cfg = AmqpConfig::new(url);
            cfg.queue = queue.into();
            let err = AmqpEvents::new(cfg).unwrap_err();
            assert!(
                matches!(err, EventError::InvalidConfig(_)) && err.to_string().contains(needle),
                "{url} {queue}: {err}"
            );
        }
    }

    #[test]
    fn construction_does_not_need_a_broker() {
        let ev = AmqpEvents::new(AmqpConfig::new("amqp://guest:secret@127.0.0.1:1/%2f")).unwrap();
        assert_eq!(ev.queue(), DEFAULT_QUEUE);
        assert!(!format!("{ev:?}").contains("secret"));
    }

    #[tokio::test]
    async fn broker_down_is_unavailable_not_a_hang() {
        let mut cfg = AmqpConfig::new("amqp://127.0.0.1:1/%2f");
        cfg.connect_timeout = Duration::from_secs(2);
        let bus = AmqpEvents::new(cfg).unwrap();
        let sid = crate::domain::SessionId::parse("s").unwrap();
        let ev = OutboxEvent::new(super::super::SESSION_READY, &sid, serde_json::json!({}));
        assert!(matches!(bus.ping().await, Err(EventError::Unavailable(_))));
        assert!(matches!(
            bus.publish(std::slice::from_ref(&ev)).await,
            Err(EventError::Unavailable(_))
        ));
    }

    #[test]
    fn message_properties_follow_the_contract() {
        let sid = crate::domain::SessionId::parse("s").unwrap();
        let ev = OutboxEvent::new("session_ready", &sid, serde_json::json!({}));
        let p = properties(&ev);
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            p.message_id().as_ref().map(|s| s.as_str()),
            Some(ev.event_id.as_str())
        );
        assert_eq!(p.timestamp(), &Some((ev.created_at / 1000) as u64));
        assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some("session_ready"));
    }
}
