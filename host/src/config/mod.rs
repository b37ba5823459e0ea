//! Configuration: environment variables over an optional TOML file.
//!
//! Everything is read and validated before any port is bound, and every
//! problem is reported at once, each naming the variable (or file key) and
//! what was wrong, so an operator fixes a deployment in one round. Tests
//! pass a map instead of touching the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const WASYNC_LISTEN: &str = "WASYNC_LISTEN";
pub const WASYNC_API_KEY: &str = "WASYNC_API_KEY";
pub const WASYNC_DATA_DIR: &str = "WASYNC_DATA_DIR";
pub const WASYNC_STORE_CACHE_MIB: &str = "WASYNC_STORE_CACHE_MIB";
pub const WASYNC_OUTBOX_RETENTION_HOURS: &str = "WASYNC_OUTBOX_RETENTION_HOURS";
pub const WASYNC_QUARANTINE_RETENTION_DAYS: &str = "WASYNC_QUARANTINE_RETENTION_DAYS";
pub const WASYNC_PROVIDER: &str = "WASYNC_PROVIDER";
pub const WASYNC_SIMULATOR: &str = "WASYNC_SIMULATOR";
pub const WASYNC_PLUGINS_DIR: &str = "WASYNC_PLUGINS_DIR";
pub const WASYNC_MAX_BODY_BYTES: &str = "WASYNC_MAX_BODY_BYTES";
pub const WASYNC_MAX_PLUGIN_BYTES: &str = "WASYNC_MAX_PLUGIN_BYTES";
/// The default of `WASYNC_MAX_PLUGIN_BYTES`: 32 MiB.
pub const DEFAULT_MAX_PLUGIN_BYTES: usize = 32 << 20;
/// The largest `WASYNC_MAX_PLUGIN_BYTES` allowed: 512 MiB.
pub const MAX_MAX_PLUGIN_BYTES: usize = 512 << 20;
pub const WASYNC_WS_QUEUE: &str = "WASYNC_WS_QUEUE";
pub const WASYNC_WS_STALL_MS: &str = "WASYNC_WS_STALL_MS";
pub const WASYNC_MAX_CLIENTS: &str = "WASYNC_MAX_CLIENTS";
pub const WASYNC_MAX_ROOMS_PER_CLIENT: &str = "WASYNC_MAX_ROOMS_PER_CLIENT";
pub const WASYNC_WS_PING_MS: &str = "WASYNC_WS_PING_MS";
pub const WASYNC_BODY_TIMEOUT_MS: &str = "WASYNC_BODY_TIMEOUT_MS";
pub const WASYNC_LOG_FORMAT: &str = "WASYNC_LOG_FORMAT";
pub const WASYNC_ALLOWED_HOSTS: &str = "WASYNC_ALLOWED_HOSTS";
pub const WASYNC_ALLOWED_ORIGINS: &str = "WASYNC_ALLOWED_ORIGINS";
pub const MONGODB_URI: &str = "MONGODB_URI";
pub const MONGODB_DB: &str = "MONGODB_DB";
pub const AMQP_URL: &str = "AMQP_URL";
pub const AMQP_QUEUE: &str = "AMQP_QUEUE";
pub const AMQP_PUBLISH_SYNC_FAILED: &str = "AMQP_PUBLISH_SYNC_FAILED";
pub const AMQP_PUBLISH_MESSAGES: &str = "AMQP_PUBLISH_MESSAGES";
pub const AMQP_PUBLISH_UPDATES: &str = "AMQP_PUBLISH_UPDATES";
pub const WEBDRIVER_URL: &str = "WEBDRIVER_URL";
pub const CHROMEDRIVER_PATH: &str = "CHROMEDRIVER_PATH";
pub const CHROMIUM_PATH: &str = "CHROMIUM_PATH";
pub const WHATSAPP_WEB_URL: &str = "WHATSAPP_WEB_URL";
pub const WASYNC_LOGIN_SAVE_SECS: &str = "WASYNC_LOGIN_SAVE_SECS";
pub const RUST_LOG: &str = "RUST_LOG";
pub const WASYNC_HOST_ID: &str = "WASYNC_HOST_ID";
pub const WASYNC_ADVERTISE_URL: &str = "WASYNC_ADVERTISE_URL";
pub const WASYNC_MAX_SESSIONS: &str = "WASYNC_MAX_SESSIONS";
pub const WASYNC_LEASE_TTL_MS: &str = "WASYNC_LEASE_TTL_MS";
pub const WASYNC_LEASE_RENEW_MS: &str = "WASYNC_LEASE_RENEW_MS";
pub const AMQP_LIVE_EXCHANGE: &str = "AMQP_LIVE_EXCHANGE";
pub const WASYNC_MAX_WEBHOOKS: &str = "WASYNC_MAX_WEBHOOKS";
pub const WASYNC_WEBHOOK_ALLOW_PRIVATE: &str = "WASYNC_WEBHOOK_ALLOW_PRIVATE";
pub const WASYNC_WEBHOOK_MAX_AGE_SECS: &str = "WASYNC_WEBHOOK_MAX_AGE_SECS";
pub const WASYNC_WEBHOOK_RETRY_MIN_MS: &str = "WASYNC_WEBHOOK_RETRY_MIN_MS";
pub const WASYNC_WEBHOOK_RETRY_MAX_MS: &str = "WASYNC_WEBHOOK_RETRY_MAX_MS";
pub const WASYNC_WEBHOOK_TIMEOUT_MS: &str = "WASYNC_WEBHOOK_TIMEOUT_MS";
pub const WASYNC_WEBHOOK_CONCURRENCY: &str = "WASYNC_WEBHOOK_CONCURRENCY";
pub const WASYNC_WEBHOOK_RETENTION_HOURS: &str = "WASYNC_WEBHOOK_RETENTION_HOURS";

/// The whole configuration, one struct per subsystem.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub events: EventsConfig,
    pub browser: BrowserConfig,
    pub plugins: PluginsConfig,
    pub log: LogConfig,
    pub cluster: ClusterConfig,
    pub webhooks: WebhooksConfig,
}

/// The HTTP/WebSocket gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to bind (`WASYNC_LISTEN`, default `127.0.0.1:3000`).
    pub listen: SocketAddr,
    /// Bearer key for every route but `/healthz` and the dashboard
    /// (`WASYNC_API_KEY`). Without one only loopback may be bound.
    pub api_key: Option<String>,
    /// Largest accepted JSON body (`WASYNC_MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Largest plugin upload (`WASYNC_MAX_PLUGIN_BYTES`, default 32 MiB).
    pub max_plugin_bytes: usize,
    /// Frames queued per WebSocket client before it is dropped
    /// (`WASYNC_WS_QUEUE`, default 4096).
    pub ws_queue: usize,
    /// How long one frame may take to send before the client counts as
    /// stuck (`WASYNC_WS_STALL_MS`, default 10 s).
    pub ws_stall: Duration,
    /// Live-event clients this host serves at once, `/ws` and Socket.IO
    /// together (`WASYNC_MAX_CLIENTS`, default 5000). Each holds a socket, a
    /// task and a queue; one past the cap is refused at the upgrade with 503
    /// `too_many_clients` instead of taking the host's file descriptors.
    pub max_clients: usize,
    /// Sessions one client may have joined at once
    /// (`WASYNC_MAX_ROOMS_PER_CLIENT`, default 100); a `join-session` past it
    /// gets an `error` event `too_many_rooms`.
    pub max_rooms_per_client: usize,
    /// How often the server pings an idle `/ws` client, and Socket.IO's
    /// Engine.IO ping interval (`WASYNC_WS_PING_MS`, default 20 s). A client
    /// that sends nothing, pong included, for twice this long is gone
    /// (half-open TCP, a suspended laptop) and is closed, freeing its slot.
    pub ws_ping: Duration,
    /// How long a request body may take to arrive (`WASYNC_BODY_TIMEOUT_MS`,
    /// default 10 s): a client that announces a body and trickles it is
    /// answered 408 `body_timeout` and its connection closed, instead of
    /// holding a task for ever.
    pub body_timeout: Duration,
    /// Host names requests may be addressed to besides IP literals,
    /// `localhost` and the advertise URL's host (`WASYNC_ALLOWED_HOSTS`,
    /// comma-separated, e.g. the name a reverse proxy serves; `*` turns the
    /// check off). A browser page on another name reached through DNS
    /// rebinding gets 403.
    pub allowed_hosts: Vec<String>,
    /// Origins besides the server's own whose pages may call it
    /// (`WASYNC_ALLOWED_ORIGINS`, comma-separated `scheme://host[:port]`),
    /// e.g. a frontend served elsewhere that uses `/socket.io/`.
    pub allowed_origins: Vec<String>,
}

/// Where data lives.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Embedded store, browser profiles, plugin cache (`WASYNC_DATA_DIR`,
    /// default `./data`).
    pub data_dir: PathBuf,
    /// Use MongoDB instead of the embedded store (`MONGODB_URI`).
    pub mongodb_uri: Option<String>,
    /// Database name (`MONGODB_DB`, default `wasync`).
    pub mongodb_db: String,
    /// The embedded store's page cache in MiB (`WASYNC_STORE_CACHE_MIB`,
    /// default 2): the host's memory stays flat with the account's size;
    /// the kernel's page cache serves what it does not hold.
    pub store_cache_mib: usize,
    /// How long published outbox events are kept
    /// (`WASYNC_OUTBOX_RETENTION_HOURS`, default 168 = 7 days): long
    /// enough to look into a delivery, short enough that event bodies
    /// (live messages) do not pile up.
    pub outbox_retention: Duration,
    /// How long quarantined messages are kept
    /// (`WASYNC_QUARANTINE_RETENTION_DAYS`, default 30): they are raw,
    /// unredacted messages a plugin refused.
    pub quarantine_retention: Duration,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// Publish to RabbitMQ (`AMQP_URL`); without it events are logged.
    pub amqp_url: Option<String>,
    /// Queue for `session_ready` (`AMQP_QUEUE`, default `wasync.session_ready`).
    pub amqp_queue: String,
    /// Also publish `sync_failed` (`AMQP_PUBLISH_SYNC_FAILED`, default false).
    pub publish_sync_failed: bool,
    /// Also publish `message_received` per live message
    /// (`AMQP_PUBLISH_MESSAGES`, default false).
    pub publish_messages: bool,
    /// Also publish `message_updated` per change of a stored message: an
    /// edit, a delete for everyone, an ack, a reaction
    /// (`AMQP_PUBLISH_UPDATES`, default false).
    pub publish_updates: bool,
}

/// WhatsApp providers.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserConfig {
    /// Provider of sessions whose create body names none (`WASYNC_PROVIDER`).
    pub default_provider: String,
    /// Offer the simulated account (`WASYNC_SIMULATOR`, default true). A
    /// production deployment turns it off: its sessions are fake accounts,
    /// and anyone with the API key could create them.
    pub simulator: bool,
    /// A remote WebDriver endpoint, e.g. a Selenium Grid (`WEBDRIVER_URL`).
    pub webdriver_url: Option<String>,
    /// chromedriver binary (`CHROMEDRIVER_PATH`, default from `PATH`).
    pub chromedriver_path: Option<PathBuf>,
    /// Chromium binary (`CHROMIUM_PATH`).
    pub chromium_path: Option<PathBuf>,
    /// The page to drive (`WHATSAPP_WEB_URL`).
    pub whatsapp_web_url: String,
    /// How often a ready webdriver session's login is saved for other
    /// hosts, when the store is MongoDB (`WASYNC_LOGIN_SAVE_SECS`, default
    /// 300, 1 to 86400).
    pub login_save_every: std::time::Duration,
}

/// WASM plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginsConfig {
    /// Directory of plugins loaded at start (`WASYNC_PLUGINS_DIR`).
    pub dir: Option<PathBuf>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `human` (default) or `json` (`WASYNC_LOG_FORMAT`).
    pub json: bool,
    /// A tracing filter (`RUST_LOG`).
    pub filter: Option<String>,
}

/// This host's part in a cluster (hosts sharing one MongoDB). Ignored on
/// the embedded store, which is single-host.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This host's id (`WASYNC_HOST_ID`; default: made once and kept in
    /// `<data>/host-id`). Letters, digits, `.`, `_`, `-`; 1 to 64.
    pub host_id: Option<String>,
    /// How the other hosts reach this one's HTTP (`WASYNC_ADVERTISE_URL`;
    /// default `http://<listen address>`).
    pub advertise_url: Option<String>,
    /// Sessions this host takes at most (`WASYNC_MAX_SESSIONS`, default
    /// 100): creates past it go to a host with room, takeovers stop at it.
    pub max_sessions: u32,
    /// Lifetime of a session lease (`WASYNC_LEASE_TTL_MS`, default 15 s):
    /// how long a dead host's sessions wait before another host takes them.
    pub lease_ttl: Duration,
    /// Lease renewal and heartbeat period (`WASYNC_LEASE_RENEW_MS`, default
    /// a third of the TTL; at most a third of it, so two renewals may fail
    /// before a lease is lost).
    pub lease_renew: Duration,
    /// The RabbitMQ topic exchange that carries live events between hosts
    /// (`AMQP_LIVE_EXCHANGE`, default `wasync.live`).
    pub live_exchange: String,
}

/// Every problem found, each naming its variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

mod source;
mod webhooks;

use self::source::{FileConfig, Source};
pub use self::webhooks::WebhooksConfig;

impl Config {
    /// Reads the configuration from `env` and, if given, a TOML file.
    pub fn load(env: &HashMap<String, String>, file: Option<&Path>) -> Result<Config, ConfigError> {
        let f: FileConfig = match file {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    problems: vec![format!("cannot read config file {}: {e}", path.display())],
                })?;
                toml::from_str(&text).map_err(|e| ConfigError {
                    problems: vec![format!("config file {}: {e}", path.display())],
                })?
            }
        };
        let mut s = Source {
            env,
            problems: Vec::new(),
        };

        let listen = s.parse(
            WASYNC_LISTEN,
            &f.server.listen,
            SocketAddr::from(([127, 0, 0, 1], 3000)),
            "an address such as 127.0.0.1:3000",
            |_| true,
        );
        let api_key = s.string(WASYNC_API_KEY, &f.server.api_key);
        if let Some(k) = &api_key
            && (k.len() < 16 || k.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            s.problems.push(format!(
                "{WASYNC_API_KEY} must be at least 16 characters without whitespace"
            ));
        }
        if api_key.is_none() && !listen.ip().is_loopback() {
            s.problems.push(format!(
                "{WASYNC_LISTEN}={listen} is not a loopback address: set {WASYNC_API_KEY} to expose the server, or listen on 127.0.0.1"
            ));
        }
        let server = ServerConfig {
            listen,
            api_key,
            max_body_bytes: s.parse(
                WASYNC_MAX_BODY_BYTES,
                &f.server.max_body_bytes,
                1 << 20,
                "a byte count between 1024 and 67108864",
                |v| (1024..=64 << 20).contains(v),
            ),
            max_plugin_bytes: s.parse(
                WASYNC_MAX_PLUGIN_BYTES,
                &f.server.max_plugin_bytes,
                DEFAULT_MAX_PLUGIN_BYTES,
                "a byte count between 1024 and 536870912",
                |v| (1024..=MAX_MAX_PLUGIN_BYTES).contains(v),
            ),
            ws_queue: s.parse(
                WASYNC_WS_QUEUE,
                &f.server.ws_queue,
                4096,
                "a frame count between 16 and 1000000",
                |v| (16..=1_000_000).contains(v),
            ),
            ws_stall: Duration::from_millis(s.parse(
                WASYNC_WS_STALL_MS,
                &f.server.ws_stall_ms,
                10_000u64,
                "milliseconds between 100 and 600000",
                |v| (100..=600_000).contains(v),
            )),
            max_clients: s.parse(
                WASYNC_MAX_CLIENTS,
                &f.server.max_clients,
                5_000,
                "a client count between 1 and 1000000",
                |v| (1..=1_000_000).contains(v),
            ),
            max_rooms_per_client: s.parse(
                WASYNC_MAX_ROOMS_PER_CLIENT,
                &f.server.max_rooms_per_client,
                100,
                "a session count between 1 and 100000",
                |v| (1..=100_000).contains(v),
            ),
            ws_ping: Duration::from_millis(s.parse(
                WASYNC_WS_PING_MS,
                &f.server.ws_ping_ms,
                20_000u64,
                "milliseconds between 100 and 600000",
                |v| (100..=600_000).contains(v),
            )),
            body_timeout: Duration::from_millis(s.parse(
                WASYNC_BODY_TIMEOUT_MS,
                &f.server.body_timeout_ms,
                10_000u64,
                "milliseconds between 100 and 600000",
                |v| (100..=600_000).contains(v),
            )),
            allowed_hosts: s.list(WASYNC_ALLOWED_HOSTS, &f.server.allowed_hosts, |h| {
                h == "*"
                    || (!h.is_empty()
                        && h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c)))
            }),
            allowed_origins: s.list(WASYNC_ALLOWED_ORIGINS, &f.server.allowed_origins, |o| {
                let rest = o
                    .strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"));
                rest.is_some_and(|r| !r.is_empty() && !r.contains('/'))
            }),
        };

        let storage = StorageConfig {
            data_dir: PathBuf::from(
                s.string(WASYNC_DATA_DIR, &f.storage.data_dir)
                    .unwrap_or_else(|| "./data".into()),
            ),
            mongodb_uri: s.url(
                MONGODB_URI,
                &f.storage.mongodb_uri,
                &["mongodb", "mongodb+srv"],
            ),
            mongodb_db: s
                .string(MONGODB_DB, &f.storage.mongodb_db)
                .unwrap_or_else(|| "wasync".into()),
            outbox_retention: Duration::from_secs(
                3_600
                    * s.parse(
                        WASYNC_OUTBOX_RETENTION_HOURS,
                        &f.storage.outbox_retention_hours,
                        168u64,
                        "hours between 1 and 87600",
                        |v| (1..=87_600).contains(v),
                    ),
            ),
            quarantine_retention: Duration::from_secs(
                86_400
                    * s.parse(
                        WASYNC_QUARANTINE_RETENTION_DAYS,
                        &f.storage.quarantine_retention_days,
                        30u64,
                        "days between 1 and 3650",
                        |v| (1..=3_650).contains(v),
                    ),
            ),
            store_cache_mib: s.parse(
                WASYNC_STORE_CACHE_MIB,
                &f.storage.cache_mib,
                crate::storage::embedded::CACHE_BYTES >> 20,
                "a size in MiB between 1 and 65536",
                |v| (1..=65_536).contains(v),
            ),
        };
        if storage.mongodb_db.is_empty()
            || storage.mongodb_db.len() > 63
            || storage
                .mongodb_db
                .chars()
                .any(|c| "/\\. \"$*<>:|?".contains(c))
        {
            s.problems.push(format!(
                "{MONGODB_DB}={:?} is not a valid MongoDB database name",
                storage.mongodb_db
            ));
        }

        let events = EventsConfig {
            amqp_url: s.url(AMQP_URL, &f.events.amqp_url, &["amqp", "amqps"]),
            amqp_queue: s
                .string(AMQP_QUEUE, &f.events.amqp_queue)
                .unwrap_or_else(|| "wasync.session_ready".into()),
            publish_sync_failed: s.flag(AMQP_PUBLISH_SYNC_FAILED, &f.events.publish_sync_failed),
            publish_messages: s.flag(AMQP_PUBLISH_MESSAGES, &f.events.publish_messages),
            publish_updates: s.flag(AMQP_PUBLISH_UPDATES, &f.events.publish_updates),
        };
        if events.amqp_queue.len() > 255 {
            s.problems
                .push(format!("{AMQP_QUEUE} must be at most 255 bytes"));
        }

        let default_provider = s
            .string(WASYNC_PROVIDER, &f.browser.provider)
            .unwrap_or_else(|| "simulator".into());
        if !["simulator", "webdriver"].contains(&default_provider.as_str()) {
            s.problems.push(format!(
                "{WASYNC_PROVIDER}={default_provider:?} is not valid: expected simulator or webdriver"
            ));
        }
        let simulator = s.flag_or(WASYNC_SIMULATOR, &f.browser.simulator, true);
        if !simulator && default_provider == "simulator" {
            s.problems.push(format!(
                "{WASYNC_SIMULATOR}=false needs another default provider: set {WASYNC_PROVIDER}=webdriver"
            ));
        }
        let browser = BrowserConfig {
            default_provider,
            simulator,
            webdriver_url: s.url(WEBDRIVER_URL, &f.browser.webdriver_url, &["http", "https"]),
            chromedriver_path: s
                .string(CHROMEDRIVER_PATH, &f.browser.chromedriver_path)
                .map(PathBuf::from),
            chromium_path: s
                .string(CHROMIUM_PATH, &f.browser.chromium_path)
                .map(PathBuf::from),
            whatsapp_web_url: s
                .url(
                    WHATSAPP_WEB_URL,
                    &f.browser.whatsapp_web_url,
                    &["http", "https"],
                )
                .unwrap_or_else(|| "https://web.whatsapp.com/".into()),
            login_save_every: std::time::Duration::from_secs(s.parse(
                WASYNC_LOGIN_SAVE_SECS,
                &f.browser.login_save_secs,
                crate::browser::webdriver::DEFAULT_LOGIN_SAVE_EVERY.as_secs(),
                "seconds from 1 to 86400",
                |n| (1..=86_400).contains(n),
            )),
        };

        let plugins = PluginsConfig {
            dir: s
                .string(WASYNC_PLUGINS_DIR, &f.plugins.dir)
                .map(PathBuf::from),
        };

        let format = s
            .string(WASYNC_LOG_FORMAT, &f.log.format)
            .unwrap_or_else(|| "human".into());
        let json = match format.as_str() {
            "human" => false,
            "json" => true,
            other => {
                s.problems.push(format!(
                    "{WASYNC_LOG_FORMAT}={other:?} is not valid: expected human or json"
                ));
                false
            }
        };
        let log = LogConfig {
            json,
            filter: s.string(RUST_LOG, &f.log.filter),
        };

        let cluster = cluster(&mut s, &f.cluster);
        let webhooks = webhooks::webhooks(&mut s, &f.webhooks);

        if s.problems.is_empty() {
            Ok(Config {
                server,
                storage,
                events,
                browser,
                plugins,
                log,
                cluster,
                webhooks,
            })
        } else {
            Err(ConfigError {
                problems: s.problems,
            })
        }
    }

    /// The defaults: what `cargo run` gets with an empty environment.
    pub fn defaults() -> Config {
        Config::load(&HashMap::new(), None).expect("the defaults are valid")
    }
}

fn cluster(s: &mut Source<'_>, f: &source::FileCluster) -> ClusterConfig {
    let host_id = s.string(WASYNC_HOST_ID, &f.host_id);
    if let Some(id) = &host_id
        && !crate::cluster::identity::valid_host_id(id)
    {
        s.problems.push(format!(
            "{WASYNC_HOST_ID}={id:?} is not valid: expected 1 to 64 letters, digits, '.', '_' or '-'"
        ));
    }
    let lease_ttl = Duration::from_millis(s.parse(
        WASYNC_LEASE_TTL_MS,
        &f.lease_ttl_ms,
        15_000u64,
        "milliseconds between 1000 and 600000",
        |v| (1_000..=600_000).contains(v),
    ));
    let default_renew = lease_ttl.as_millis() as u64 / 3;
    let max_renew = lease_ttl.as_millis() as u64 / 3;
    let lease_renew = Duration::from_millis(s.parse(
        WASYNC_LEASE_RENEW_MS,
        &f.lease_renew_ms,
        default_renew,
        &format!("milliseconds between 100 and a third of {WASYNC_LEASE_TTL_MS} ({max_renew})"),
        |v| (100..=max_renew).contains(v),
    ));
    let live_exchange = s
        .string(AMQP_LIVE_EXCHANGE, &f.live_exchange)
        .unwrap_or_else(|| "wasync.live".into());
    if live_exchange.len() > 255 || live_exchange.starts_with("amq.") {
        s.problems.push(format!(
            "{AMQP_LIVE_EXCHANGE}={live_exchange:?} is not valid: at most 255 bytes, not starting with amq."
        ));
    }
    ClusterConfig {
        host_id,
        advertise_url: s.url(WASYNC_ADVERTISE_URL, &f.advertise_url, &["http", "https"]),
        max_sessions: s.parse(
            WASYNC_MAX_SESSIONS,
            &f.max_sessions,
            100u32,
            "a session count between 1 and 100000",
            |v| (1..=100_000).contains(v),
        ),
        lease_ttl,
        lease_renew,
        live_exchange,
    }
}

#[cfg(test)]
mod tests;
