//! The composition root: the one place that reads the configuration and
//! chooses adapters. Everything else receives ports.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::browser::Providers;
use crate::browser::simulator::SimulatorProvider;
use crate::browser::vault::{LoginVault, gridfs::GridFsVault};
use crate::browser::webdriver::{WebDriverProvider, WebDriverSettings};
use crate::cluster::fabric::{Fabric, FabricSettings};
use crate::cluster::mongo::MongoCoordinator;
use crate::cluster::solo::SoloCoordinator;
use crate::cluster::{Cluster, ClusterSettings, Coordinator, identity, keeper};
use crate::config::Config;
use crate::events::amqp::{AmqpConfig, AmqpEvents};
use crate::events::local::LocalEvents;
use crate::events::relay::{self, RelayConfig, RelaySignal};
use crate::events::{EventBus, EventGate, EventSwitches};
use crate::gateway::{self, Gateway, GatewayDeps};
use crate::hub::{Hub, QueueLimits};
use crate::plugins::wasm::{ManagerOptions, PluginManager, PluginRuntime, RuntimeOptions};
use crate::plugins::{NoPlugins, PluginHost};
use crate::session::{SessionDeps, Sessions};
use crate::storage::Store;
use crate::storage::embedded::EmbeddedStore;
use crate::storage::mongo::MongoStore;
use crate::storage::webhooks::WebhookStore;
use crate::sync::SyncOptions;
use crate::telemetry::Metrics;
use crate::webhooks::{WebhookSettings, WebhookTuning, Webhooks};

/// Knobs that are not configuration: tests and benchmarks turn them to
/// make retries fast; production keeps the defaults.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    pub sync: SyncOptions,
    pub relay: RelayConfig,
    /// Period of the retention pass (`None`: hourly).
    pub retention_every: Option<std::time::Duration>,
    pub webhooks: WebhookTuning,
}

/// Turns transparent huge pages off for this process, before it serves.
///
/// The host's memory is many small allocations freed within a group
/// commit, and mimalloc gives freed pages back to the kernel after a few
/// milliseconds. On huge pages each give-back splits or drops a 2 MiB page
/// and the next allocation there faults a whole one in again, zeroed: the
/// 100k-message embedded sync spent most of its kernel time in
/// `clear_page_erms` under `do_huge_pmd_anonymous_page`, ran 0.85× as fast
/// and peaked at 1.6× the resident memory of the same sync on 4 KiB pages
/// (BENCHMARKS.md, P2). The flag holds for the whole process whatever the
/// system's THP mode (`always` or `madvise`), and is inherited by the
/// processes it starts. A kernel without the call only logs a warning
/// when logging starts: the host runs as before.
pub fn small_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

/// A running host.
pub struct App {
    addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sessions: Arc<Sessions>,
    store: Arc<dyn Store>,
    gateway: Arc<Gateway>,
    hub: Arc<Hub>,
    plugins: Option<Arc<PluginManager>>,
    cluster: Arc<Cluster>,
    /// Held until the host is gone: one host per data directory.
    _data_lock: identity::DataDirLock,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("addr", &self.addr).finish()
    }
}

/// Picks the store adapter.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_store_and_db(config).await?.0)
}

/// The store (as the main port and as the webhooks' port), and its
/// MongoDB database when it is shared (the cluster coordinates in it).
type Stores = (
    Arc<dyn Store>,
    Arc<dyn WebhookStore>,
    Option<mongodb::Database>,
);

async fn open_store_and_db(config: &Config) -> anyhow::Result<Stores> {
    if let Some(uri) = &config.storage.mongodb_uri {
        // The URI is not in the error context: it may carry credentials.
        let store = MongoStore::connect(uri, &config.storage.mongodb_db)
            .await
            .with_context(|| {
                format!(
                    "opening the MongoDB store (database {})",
                    config.storage.mongodb_db
                )
            })?;
        let db = store.database().clone();
        let store = Arc::new(store);
        return Ok((store.clone(), store, Some(db)));
    }
    let path = config.storage.data_dir.join("wasync.redb");
    let store = EmbeddedStore::open_with_cache(&path, config.storage.store_cache_mib << 20)
        .with_context(|| format!("opening the embedded store {}", path.display()))?;
    let store = Arc::new(store);
    Ok((store.clone(), store, None))
}

/// Picks the login vault: GridFS in the store's MongoDB database (hosts
/// share it, so logins move with sessions); none with the embedded store
/// (one host, whose profile folder is the login).
fn open_login_vault(mongo_db: Option<&mongodb::Database>) -> Option<Arc<dyn LoginVault>> {
    mongo_db.map(|db| Arc::new(GridFsVault::new(db)) as Arc<dyn LoginVault>)
}

/// Picks the events adapter.
/// RabbitMQ when `AMQP_URL` is set: built without touching the network, so
/// the host starts (and syncs) with the broker down; events wait in the
/// outbox until it is back.
pub fn open_events(config: &Config) -> anyhow::Result<Arc<dyn EventBus>> {
    let Some(url) = &config.events.amqp_url else {
        return Ok(Arc::new(LocalEvents));
    };
    let mut amqp = AmqpConfig::new(url.clone());
    amqp.queue = config.events.amqp_queue.clone();
    amqp.switches = switches(config);
    Ok(Arc::new(
        AmqpEvents::new(amqp).context("configuring the RabbitMQ events adapter")?,
    ))
}

/// The broker's optional patterns, as configured.
fn switches(config: &Config) -> EventSwitches {
    EventSwitches {
        sync_failed: config.events.publish_sync_failed,
        message_received: config.events.publish_messages,
        message_updated: config.events.publish_updates,
    }
}

/// The webhooks' settings from the configuration.
fn webhook_settings(config: &Config, host_id: &str, tuning: WebhookTuning) -> WebhookSettings {
    let w = &config.webhooks;
    WebhookSettings {
        max_webhooks: w.max_webhooks,
        allow_private: crate::webhooks::target::AllowList::new(w.allow_private.clone()),
        max_age: w.max_age,
        retry_min: w.retry_min,
        retry_max: w.retry_max,
        timeout: w.timeout,
        concurrency: w.concurrency,
        retention: w.retention,
        host_id: host_id.to_owned(),
        tuning,
    }
}

/// Loads the plugins of `WASYNC_PLUGINS_DIR`, when set; a broken plugin
/// fails the start (skipping a redaction plugin would leak what it hides).
pub async fn open_plugins(config: &Config) -> anyhow::Result<Option<Arc<PluginManager>>> {
    let Some(dir) = config.plugins.dir.clone() else {
        return Ok(None);
    };
    let runtime = PluginRuntime::global(RuntimeOptions {
        cache_dir: Some(config.storage.data_dir.join("plugin-cache")),
        ..RuntimeOptions::default()
    })?;
    let opts = ManagerOptions {
        max_component_bytes: config.server.max_plugin_bytes,
        ..ManagerOptions::default()
    };
    let mgr = tokio::task::spawn_blocking(move || PluginManager::open(runtime, dir, opts))
        .await?
        .context("loading plugins")?;
    tracing::info!(plugins = mgr.list().len(), dir = %mgr.dir().display(), "plugins loaded");
    Ok(Some(Arc::new(mgr)))
}

impl App {
    /// Starts everything on `listener` and restores the sessions that were
    /// running when the host last stopped.
    pub async fn start(
        config: Config,
        listener: TcpListener,
        tuning: Tuning,
    ) -> anyhow::Result<App> {
        let addr = listener.local_addr()?;
        let data_dir = &config.storage.data_dir;
        let data_lock = identity::lock_data_dir(data_dir)?;
        let host_id = identity::host_id(data_dir, config.cluster.host_id.as_deref())?;
        let (store, hook_store, mongo_db) = open_store_and_db(&config).await?;
        let bus = open_events(&config)?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let metrics = Arc::new(Metrics::new());

        let coordinator: Arc<dyn Coordinator> = match &mongo_db {
            Some(db) => Arc::new(
                MongoCoordinator::open(db)
                    .await
                    .context("preparing the cluster's collections")?,
            ),
            None => Arc::new(SoloCoordinator::default()),
        };
        let cluster = Arc::new(Cluster::new(
            ClusterSettings {
                host_id: host_id.clone(),
                advertise_url: advertise_url(&config, addr),
                max_sessions: config.cluster.max_sessions,
                lease_ttl: config.cluster.lease_ttl,
                renew_every: config.cluster.lease_renew,
                watch_every: config.cluster.lease_renew,
            },
            coordinator,
            config.server.api_key.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));

        tasks.spawn(crate::storage::retention::run(
            store.clone(),
            crate::storage::retention::Retention {
                pending_changes: crate::storage::retention::PENDING_CHANGES,
                published: config.storage.outbox_retention,
                quarantined: config.storage.quarantine_retention,
                every: tuning
                    .retention_every
                    .unwrap_or(std::time::Duration::from_secs(3_600)),
            },
            shutdown.clone(),
        ));

        // What the producers queue besides `session_ready`: what the broker
        // is switched on for, and what the webhooks want (kept current by
        // the webhooks subsystem).
        let gate = EventGate::new(switches(&config));
        let webhooks = Arc::new(Webhooks {
            store: hook_store,
            gate: gate.clone(),
            settings: webhook_settings(&config, &host_id, tuning.webhooks.clone()),
            wake: Default::default(),
            metrics: metrics.clone(),
        });
        webhooks.refresh_interest().await;
        tasks.spawn(crate::webhooks::dispatch::run(
            webhooks.clone(),
            shutdown.clone(),
        ));

        let relay = RelaySignal::default();
        let mut relay_cfg = tuning.relay.clone();
        relay_cfg.metrics = Some(metrics.clone());
        relay_cfg.claimer = host_id.clone();
        relay_cfg.tap = Some(Arc::new(crate::webhooks::fanout::Fanout(webhooks.clone())));
        tasks.spawn(relay::run(
            store.clone(),
            bus.clone(),
            relay.clone(),
            relay_cfg,
            shutdown.clone(),
        ));

        let hub = Arc::new(
            Hub::new(QueueLimits {
                max_rooms: config.server.max_rooms_per_client,
                max_frames: config.server.ws_queue,
                coalesce_after: QueueLimits::default()
                    .coalesce_after
                    .min(config.server.ws_queue),
                stall_timeout: config.server.ws_stall,
            })
            .with_max_clients(config.server.max_clients)
            .with_host_id(&host_id),
        );
        let fabric = match (&config.events.amqp_url, cluster.is_shared()) {
            (Some(url), true) => Some(Fabric::start(
                FabricSettings {
                    amqp_url: url.clone(),
                    exchange: config.cluster.live_exchange.clone(),
                    host_id: host_id.clone(),
                },
                hub.clone(),
                metrics.clone(),
                &tasks,
                shutdown.clone(),
            )),
            (None, true) => {
                tracing::warn!(
                    "MONGODB_URI without AMQP_URL: live events reach only the clients connected to the host that runs the session"
                );
                None
            }
            _ => None,
        };
        let hub_handle = hub.clone();
        let plugin_manager = open_plugins(&config).await?;
        let plugins: Arc<dyn PluginHost> = match &plugin_manager {
            Some(m) => m.clone(),
            None => Arc::new(NoPlugins),
        };
        let webdriver = WebDriverProvider::new(WebDriverSettings {
            webdriver_url: config.browser.webdriver_url.clone(),
            chromedriver_path: config.browser.chromedriver_path.clone(),
            chromium_path: config.browser.chromium_path.clone(),
            whatsapp_web_url: config.browser.whatsapp_web_url.clone(),
            profiles_dir: config.storage.data_dir.join("profiles"),
            login_vault: open_login_vault(mongo_db.as_ref()),
            login_save_every: config.browser.login_save_every,
        });
        let mut providers = Providers::default();
        if config.browser.simulator {
            providers = providers.with(Arc::new(SimulatorProvider));
        }
        let providers = Arc::new(providers.with(Arc::new(webdriver)));
        let mut sync = tuning.sync.clone();
        sync.events = gate.clone();
        let sessions = Arc::new(Sessions::new(
            SessionDeps {
                store: store.clone(),
                providers,
                hub: hub.clone(),
                plugins,
                relay,
                sync,
                default_provider: config.browser.default_provider.clone(),
                events: gate.clone(),
                metrics: metrics.clone(),
                leases: cluster.leases.clone(),
                max_sessions: config.cluster.max_sessions,
                spool_dir: Some(config.storage.data_dir.join("spool")),
            },
            shutdown.clone(),
        ));
        if let Err(e) = cluster.heartbeat().await {
            anyhow::bail!("joining the cluster: {e}");
        }
        let restored = keeper::restore_pass(&cluster, &sessions)
            .await
            .context("restoring sessions")?
            .taken;
        if restored > 0 {
            tracing::info!(restored, "sessions restored");
        }
        tasks.spawn(keeper::run(
            cluster.clone(),
            sessions.clone(),
            shutdown.clone(),
        ));

        let gw = Arc::new(Gateway::new(GatewayDeps {
            sessions: sessions.clone(),
            store: store.clone(),
            bus,
            hub,
            metrics: metrics.clone(),
            api_key: config.server.api_key.clone(),
            max_body_bytes: config.server.max_body_bytes,
            plugins: plugin_manager.clone(),
            max_plugin_bytes: config.server.max_plugin_bytes,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            cluster: cluster.clone(),
            fabric,
            allowed_hosts: config.server.allowed_hosts.clone(),
            allowed_origins: config.server.allowed_origins.clone(),
            body_timeout: config.server.body_timeout,
            ws_ping: config.server.ws_ping,
            webhooks,
        }));
        tasks.spawn(gateway::serve(listener, gw.clone()));
        tracing::info!(%addr, store = store.kind(), host_id = %host_id, "wasync listening");
        Ok(App {
            addr,
            shutdown,
            tasks,
            sessions,
            store,
            gateway: gw,
            hub: hub_handle,
            plugins: plugin_manager,
            cluster,
            _data_lock: data_lock,
        })
    }

    /// This host's place in the cluster.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The event hub (benchmarks subscribe to it in-process).
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The plugin manager, when `WASYNC_PLUGINS_DIR` is set (its
    /// `render_prometheus()` feeds the metrics endpoint).
    pub fn plugins(&self) -> Option<Arc<PluginManager>> {
        self.plugins.clone()
    }

    /// Stops accepting, ends every session actor (running syncs stop
    /// between batches and resume at the next start) and waits for all
    /// tasks, so the store is closed when this returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.gateway.close_socketio().await;
        self.sessions.join().await;
        // The actors are gone: hand the leases back so other hosts take the
        // sessions now rather than after the TTL.
        keeper::retire(&self.cluster).await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// `WASYNC_ADVERTISE_URL`, or `http://<bound address>` (loopback in place
/// of an unspecified address such as `0.0.0.0`, which another host could
/// not dial).
fn advertise_url(config: &Config, addr: SocketAddr) -> String {
    if let Some(url) = &config.cluster.advertise_url {
        return url.trim_end_matches('/').to_owned();
    }
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        if config.storage.mongodb_uri.is_some() {
            tracing::warn!(
                "listening on {addr} without WASYNC_ADVERTISE_URL: other hosts are told to use loopback; set it to this host's reachable address"
            );
        }
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}
