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
use crate::config::Config;
use crate::events::amqp::{AmqpConfig, AmqpEvents};
use crate::events::local::LocalEvents;
use crate::events::relay::{self, RelayConfig, RelaySignal};
use crate::events::{EventBus, EventSwitches};
use crate::gateway::{self, Gateway, GatewayDeps};
use crate::hub::{Hub, QueueLimits};
use crate::plugins::wasm::{ManagerOptions, PluginManager, PluginRuntime, RuntimeOptions};
use crate::plugins::{NoPlugins, PluginHost};
use crate::session::{SessionDeps, Sessions};
use crate::storage::Store;
use crate::storage::embedded::EmbeddedStore;
use crate::storage::mongo::MongoStore;
use crate::sync::SyncOptions;
use crate::telemetry::Metrics;

/// Knobs that are not configuration: tests and benchmarks turn them to
/// make retries fast; production keeps the defaults.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    pub sync: SyncOptions,
    pub relay: RelayConfig,
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
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("addr", &self.addr).finish()
    }
}

/// Picks the store adapter.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
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
        return Ok(Arc::new(store));
    }
    let path = config.storage.data_dir.join("wasync.redb");
    let store = EmbeddedStore::open_with_cache(&path, config.storage.store_cache_mib << 20)
        .with_context(|| format!("opening the embedded store {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Picks the login vault: GridFS in the MongoDB database when the store is
/// MongoDB (hosts share it, so logins move with sessions); none with the
/// embedded store (one host, whose profile folder is the login).
pub async fn open_login_vault(config: &Config) -> anyhow::Result<Option<Arc<dyn LoginVault>>> {
    let Some(uri) = &config.storage.mongodb_uri else {
        return Ok(None);
    };
    let vault = GridFsVault::connect(uri, &config.storage.mongodb_db)
        .await
        .context("opening the login vault")?;
    Ok(Some(Arc::new(vault)))
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
    amqp.switches = EventSwitches {
        sync_failed: config.events.publish_sync_failed,
        message_received: config.events.publish_messages,
    };
    Ok(Arc::new(
        AmqpEvents::new(amqp).context("configuring the RabbitMQ events adapter")?,
    ))
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
        let store = open_store(&config).await?;
        let bus = open_events(&config)?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        let relay = RelaySignal::default();
        let metrics = Arc::new(Metrics::new());
        let mut relay_cfg = tuning.relay.clone();
        relay_cfg.metrics = Some(metrics.clone());
        tasks.spawn(relay::run(
            store.clone(),
            bus.clone(),
            relay.clone(),
            relay_cfg,
            shutdown.clone(),
        ));

        let hub = Arc::new(Hub::new(QueueLimits {
            max_frames: config.server.ws_queue,
            coalesce_after: QueueLimits::default()
                .coalesce_after
                .min(config.server.ws_queue),
            stall_timeout: config.server.ws_stall,
        }));
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
            login_vault: open_login_vault(&config).await?,
            login_save_every: config.browser.login_save_every,
        });
        let providers = Arc::new(
            Providers::default()
                .with(Arc::new(SimulatorProvider))
                .with(Arc::new(webdriver)),
        );
        let mut sync = tuning.sync.clone();
        sync.publish_sync_failed = config.events.publish_sync_failed;
        let sessions = Arc::new(Sessions::new(
            SessionDeps {
                store: store.clone(),
                providers,
                hub: hub.clone(),
                plugins,
                relay,
                sync,
                default_provider: config.browser.default_provider.clone(),
                publish_messages: config.events.publish_messages,
                metrics: metrics.clone(),
            },
            shutdown.clone(),
        ));
        let restored = sessions.restore().await.context("restoring sessions")?;
        if restored > 0 {
            tracing::info!(restored, "sessions restored");
        }

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
        }));
        tasks.spawn(gateway::serve(listener, gw.clone()));
        tracing::info!(%addr, store = store.kind(), "wasync listening");
        Ok(App {
            addr,
            shutdown,
            tasks,
            sessions,
            store,
            gateway: gw,
            hub: hub_handle,
            plugins: plugin_manager,
        })
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
        self.tasks.close();
        self.tasks.wait().await;
    }
}
