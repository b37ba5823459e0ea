//! Live session events across hosts, through a RabbitMQ topic exchange.
//!
//! Every host publishes each event its sessions produce (the hub frames:
//! `qr`, `ready`, `sync_chats`, `sync_complete`, `message`...) to the
//! exchange with the session id as routing key. Each host has one
//! exclusive, auto-deleted queue, bound to the sessions its own clients
//! joined, and feeds what arrives into its hub. One channel publishes in
//! order and RabbitMQ keeps the order per queue, so a client on any host
//! reads the owner's sequence; the receiving hub applies its own coalescing
//! to slow clients. These are live UI events: transient, not confirmed,
//! never through the outbox (a client that misses some while the broker is
//! away re-reads the state with a join).
//!
//! A join binds before it takes its snapshot ([`Fabric::follow`]), so the
//! snapshot is followed by every later event; a room's last leave unbinds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::hub::{Frame, Hub, HubRelay};

/// Frames waiting to be published; past it new ones are dropped (and
/// counted) rather than slowing the sync.
const QUEUE: usize = 16_384;
/// How long a join waits for its binding before it goes on without.
const BIND_WAIT: Duration = Duration::from_secs(3);

enum Cmd {
    Publish {
        session: String,
        text: Arc<str>,
        progress: bool,
    },
    Bind {
        session: String,
        done: oneshot::Sender<()>,
    },
    Unbind {
        session: String,
    },
}

/// The host's end of the fabric: the hub's relay, and `follow` for joins.
pub struct Fabric {
    tx: mpsc::Sender<Cmd>,
    metrics: Arc<crate::telemetry::Metrics>,
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fabric").finish_non_exhaustive()
    }
}

/// Where the fabric connects.
#[derive(Debug, Clone)]
pub struct FabricSettings {
    pub amqp_url: String,
    pub exchange: String,
    pub host_id: String,
}

impl Fabric {
    /// Starts the fabric's task (it connects, and reconnects, by itself)
    /// and installs it as `hub`'s relay.
    pub fn start(
        settings: FabricSettings,
        hub: Arc<Hub>,
        metrics: Arc<crate::telemetry::Metrics>,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Fabric> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let fabric = Arc::new(Fabric {
            tx,
            metrics: metrics.clone(),
        });
        hub.set_relay(fabric.clone());
        tasks.spawn(run(settings, hub, metrics, rx, shutdown));
        fabric
    }

    /// Makes sure events of `session` from other hosts reach this host;
    /// returns once the binding is in place (or after a short wait if the
    /// broker is away).
    pub async fn follow(&self, session: &str) {
        let (done, rx) = oneshot::channel();
        let cmd = Cmd::Bind {
            session: session.to_owned(),
            done,
        };
        if self.tx.send(cmd).await.is_ok() {
            let _ = tokio::time::timeout(BIND_WAIT, rx).await;
        }
    }
}

impl HubRelay for Fabric {
    fn published(&self, session: &str, frame: &Frame) {
        let cmd = Cmd::Publish {
            session: session.to_owned(),
            text: frame.text.clone(),
            progress: frame.progress,
        };
        if self.tx.try_send(cmd).is_err() {
            tracing::debug!(session_id = %session, "cluster fabric backlog full: event not relayed");
        } else {
            self.metrics.cluster_events_out.inc();
        }
    }

    fn room_closed(&self, session: &str) {
        let _ = self.tx.try_send(Cmd::Unbind {
            session: session.to_owned(),
        });
    }
}

struct Link {
    _conn: Connection,
    channel: Channel,
    queue: String,
}

async fn connect(
    s: &FabricSettings,
    hub: &Arc<Hub>,
    metrics: &Arc<crate::telemetry::Metrics>,
    shutdown: &CancellationToken,
) -> Result<Link, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_connection_name(format!("wasync-fabric-{}", s.host_id).into());
    let conn = Connection::connect(&s.amqp_url, props).await?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            s.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queue = queue.name().as_str().to_owned();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            format!("fabric-{}", s.host_id).into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let me = s.host_id.clone();
    let hub = hub.clone();
    let metrics = metrics.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                d = consumer.next() => d,
            };
            let Some(Ok(d)) = next else { return };
            let from = d.properties.app_id().as_ref().map(|a| a.as_str());
            if from == Some(me.as_str()) {
                continue; // our own event: our clients had it from our hub
            }
            let progress = d.properties.kind().as_ref().map(|k| k.as_str()) == Some("progress");
            let Ok(text) = std::str::from_utf8(&d.data) else {
                continue;
            };
            metrics.cluster_events_in.inc();
            hub.publish_remote(d.routing_key.as_str(), Arc::from(text), progress);
        }
    });
    Ok(Link {
        _conn: conn,
        channel,
        queue,
    })
}

async fn bind(link: &Link, exchange: &str, session: &str) -> Result<(), lapin::Error> {
    link.channel
        .queue_bind(
            link.queue.as_str().into(),
            exchange.into(),
            session.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// The fabric's task: owns the link, applies commands in order, and
/// reconnects (re-binding what local clients follow) after a failure.
async fn run(
    s: FabricSettings,
    hub: Arc<Hub>,
    metrics: Arc<crate::telemetry::Metrics>,
    mut rx: mpsc::Receiver<Cmd>,
    shutdown: CancellationToken,
) {
    // The sessions local clients follow: bound on every (re)connect.
    let mut wanted: HashSet<String> = HashSet::new();
    let mut link: Option<Link> = None;
    let mut backoff = Duration::from_millis(100);
    let mut next_try = tokio::time::Instant::now();
    loop {
        if link.is_none() && tokio::time::Instant::now() >= next_try {
            match connect(&s, &hub, &metrics, &shutdown).await {
                Ok(l) => {
                    let mut ok = true;
                    for k in &wanted {
                        if let Err(e) = bind(&l, &s.exchange, k).await {
                            tracing::warn!(error = %e, "cluster fabric: re-bind failed");
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        tracing::debug!(queue = %l.queue, "cluster fabric connected");
                        link = Some(l);
                        backoff = Duration::from_millis(100);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cluster fabric: cannot reach the broker");
                    next_try = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let cmd = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
            _ = tokio::time::sleep_until(next_try), if link.is_none() => continue,
        };
        let result = match cmd {
            Cmd::Publish {
                session,
                text,
                progress,
            } => match &link {
                None => Ok(()), // live events are not kept while the broker is away
                Some(l) => {
                    let props = BasicProperties::default()
                        .with_content_type("application/json".into())
                        .with_app_id(s.host_id.as_str().into())
                        .with_type(if progress { "progress" } else { "event" }.into());
                    l.channel
                        .basic_publish(
                            s.exchange.as_str().into(),
                            session.as_str().into(),
                            BasicPublishOptions::default(),
                            text.as_bytes(),
                            props,
                        )
                        .await
                        .map(|_| ())
                }
            },
            Cmd::Bind { session, done } => {
                let new = wanted.insert(session.clone());
                let r = match (&link, new) {
                    (Some(l), true) => bind(l, &s.exchange, &session).await,
                    _ => Ok(()),
                };
                let _ = done.send(());
                r
            }
            Cmd::Unbind { session } => {
                // A join may have come back since the room closed.
                if hub.room_size(&session) > 0 {
                    Ok(())
                } else {
                    wanted.remove(&session);
                    match &link {
                        Some(l) => l
                            .channel
                            .queue_unbind(
                                l.queue.as_str().into(),
                                s.exchange.as_str().into(),
                                session.as_str().into(),
                                FieldTable::default(),
                            )
                            .await
                            .map(|_| ()),
                        None => Ok(()),
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cluster fabric: broker link lost; reconnecting");
            link = None;
            next_try = tokio::time::Instant::now();
        }
    }
}
