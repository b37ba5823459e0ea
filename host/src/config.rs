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

use serde::Deserialize;

pub const WASYNC_LISTEN: &str = "WASYNC_LISTEN";
pub const WASYNC_API_KEY: &str = "WASYNC_API_KEY";
pub const WASYNC_DATA_DIR: &str = "WASYNC_DATA_DIR";
pub const WASYNC_STORE_CACHE_MIB: &str = "WASYNC_STORE_CACHE_MIB";
pub const WASYNC_PROVIDER: &str = "WASYNC_PROVIDER";
pub const WASYNC_PLUGINS_DIR: &str = "WASYNC_PLUGINS_DIR";
pub const WASYNC_MAX_BODY_BYTES: &str = "WASYNC_MAX_BODY_BYTES";
pub const WASYNC_MAX_PLUGIN_BYTES: &str = "WASYNC_MAX_PLUGIN_BYTES";
pub const WASYNC_WS_QUEUE: &str = "WASYNC_WS_QUEUE";
pub const WASYNC_WS_STALL_MS: &str = "WASYNC_WS_STALL_MS";
pub const WASYNC_LOG_FORMAT: &str = "WASYNC_LOG_FORMAT";
pub const MONGODB_URI: &str = "MONGODB_URI";
pub const MONGODB_DB: &str = "MONGODB_DB";
pub const AMQP_URL: &str = "AMQP_URL";
pub const AMQP_QUEUE: &str = "AMQP_QUEUE";
pub const AMQP_PUBLISH_SYNC_FAILED: &str = "AMQP_PUBLISH_SYNC_FAILED";
pub const AMQP_PUBLISH_MESSAGES: &str = "AMQP_PUBLISH_MESSAGES";
pub const WEBDRIVER_URL: &str = "WEBDRIVER_URL";
pub const CHROMEDRIVER_PATH: &str = "CHROMEDRIVER_PATH";
pub const CHROMIUM_PATH: &str = "CHROMIUM_PATH";
pub const WHATSAPP_WEB_URL: &str = "WHATSAPP_WEB_URL";
pub const WASYNC_LOGIN_SAVE_SECS: &str = "WASYNC_LOGIN_SAVE_SECS";
pub const RUST_LOG: &str = "RUST_LOG";

/// The whole configuration, one struct per subsystem.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub events: EventsConfig,
    pub browser: BrowserConfig,
    pub plugins: PluginsConfig,
    pub log: LogConfig,
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
    /// default 4): the host's memory stays flat with the account's size;
    /// the kernel's page cache serves what it does not hold.
    pub store_cache_mib: usize,
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
}

/// WhatsApp providers.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserConfig {
    /// Provider of sessions whose create body names none (`WASYNC_PROVIDER`).
    pub default_provider: String,
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

/// Every problem found, each naming its variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The optional TOML file; every key mirrors a variable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    events: FileEvents,
    #[serde(default)]
    browser: FileBrowser,
    #[serde(default)]
    plugins: FilePlugins,
    #[serde(default)]
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<Scalar>,
    api_key: Option<Scalar>,
    max_body_bytes: Option<Scalar>,
    max_plugin_bytes: Option<Scalar>,
    ws_queue: Option<Scalar>,
    ws_stall_ms: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    data_dir: Option<Scalar>,
    cache_mib: Option<Scalar>,
    mongodb_uri: Option<Scalar>,
    mongodb_db: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEvents {
    amqp_url: Option<Scalar>,
    amqp_queue: Option<Scalar>,
    publish_sync_failed: Option<Scalar>,
    publish_messages: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBrowser {
    provider: Option<Scalar>,
    webdriver_url: Option<Scalar>,
    chromedriver_path: Option<Scalar>,
    chromium_path: Option<Scalar>,
    whatsapp_web_url: Option<Scalar>,
    login_save_secs: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlugins {
    dir: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<Scalar>,
    filter: Option<Scalar>,
}

/// A file value: a string, number or boolean, read as text so the file
/// and the environment go through the same checks.
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Scalar(s)),
            toml::Value::Integer(i) => Ok(Scalar(i.to_string())),
            toml::Value::Float(f) => Ok(Scalar(f.to_string())),
            toml::Value::Boolean(b) => Ok(Scalar(b.to_string())),
            _ => Err(serde::de::Error::custom(
                "expected a string, a number or a boolean",
            )),
        }
    }
}

/// Looks a setting up: the environment wins over the file.
struct Source<'a> {
    env: &'a HashMap<String, String>,
    problems: Vec<String>,
}

impl Source<'_> {
    fn get(&self, var: &str, file: &Option<Scalar>) -> Option<(String, String)> {
        match self.env.get(var) {
            Some(v) => Some((v.clone(), var.to_owned())),
            None => file
                .as_ref()
                .map(|v| (v.0.clone(), format!("{var} (from the config file)"))),
        }
    }

    fn string(&self, var: &str, file: &Option<Scalar>) -> Option<String> {
        self.get(var, file)
            .map(|(v, _)| v)
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &mut self,
        var: &str,
        file: &Option<Scalar>,
        default: T,
        what: &str,
        ok: impl Fn(&T) -> bool,
    ) -> T {
        match self.get(var, file) {
            None => default,
            Some((raw, name)) => match raw.trim().parse::<T>() {
                Ok(v) if ok(&v) => v,
                _ => {
                    self.problems
                        .push(format!("{name}={raw:?} is not valid: expected {what}"));
                    default
                }
            },
        }
    }

    fn flag(&mut self, var: &str, file: &Option<Scalar>) -> bool {
        match self.get(var, file) {
            None => false,
            Some((raw, name)) => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                _ => {
                    self.problems.push(format!(
                        "{name}={raw:?} is not valid: expected true or false"
                    ));
                    false
                }
            },
        }
    }

    fn url(&mut self, var: &str, file: &Option<Scalar>, schemes: &[&str]) -> Option<String> {
        let (raw, name) = self.get(var, file)?;
        if raw.is_empty() {
            return None;
        }
        if schemes.iter().any(|s| raw.starts_with(&format!("{s}://"))) {
            Some(raw)
        } else {
            self.problems.push(format!(
                "{name} must start with {}",
                schemes
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
            None
        }
    }
}

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
                32 << 20,
                "a byte count between 1024 and 536870912",
                |v| (1024..=512 << 20).contains(v),
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
            store_cache_mib: s.parse(
                WASYNC_STORE_CACHE_MIB,
                &f.storage.cache_mib,
                4,
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
        let browser = BrowserConfig {
            default_provider,
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

        if s.problems.is_empty() {
            Ok(Config {
                server,
                storage,
                events,
                browser,
                plugins,
                log,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Config::defaults();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
        assert!(c.storage.mongodb_uri.is_none());
        assert!(c.events.amqp_url.is_none());
        assert_eq!(c.events.amqp_queue, "wasync.session_ready");
        assert_eq!(c.browser.default_provider, "simulator");
        assert_eq!(c.browser.whatsapp_web_url, "https://web.whatsapp.com/");
        assert_eq!(c.server.max_body_bytes, 1 << 20);
        assert_eq!(c.storage.store_cache_mib, 4);
        assert_eq!(
            c.browser.login_save_every,
            std::time::Duration::from_secs(300)
        );
    }

    #[test]
    fn every_bad_value_is_reported_by_name() {
        let err = Config::load(
            &env(&[
                (WASYNC_LISTEN, "nonsense"),
                (MONGODB_URI, "http://x"),
                (AMQP_URL, "tcp://x"),
                (WASYNC_PROVIDER, "phone"),
                (AMQP_PUBLISH_MESSAGES, "maybe"),
                (WASYNC_MAX_BODY_BYTES, "12"),
                (WASYNC_LOG_FORMAT, "xml"),
                (WASYNC_STORE_CACHE_MIB, "0"),
                (WASYNC_LOGIN_SAVE_SECS, "0"),
            ]),
            None,
        )
        .unwrap_err();
        let text = err.to_string();
        for var in [
            WASYNC_LISTEN,
            MONGODB_URI,
            AMQP_URL,
            WASYNC_PROVIDER,
            AMQP_PUBLISH_MESSAGES,
            WASYNC_MAX_BODY_BYTES,
            WASYNC_LOG_FORMAT,
            WASYNC_STORE_CACHE_MIB,
            WASYNC_LOGIN_SAVE_SECS,
        ] {
            assert!(text.contains(var), "{var} missing from: {text}");
        }
        assert_eq!(err.problems.len(), 9);
    }

    #[test]
    fn non_loopback_needs_a_key() {
        let err = Config::load(&env(&[(WASYNC_LISTEN, "0.0.0.0:3000")]), None).unwrap_err();
        assert!(err.to_string().contains(WASYNC_API_KEY));
        let ok = Config::load(
            &env(&[
                (WASYNC_LISTEN, "0.0.0.0:3000"),
                (WASYNC_API_KEY, "0123456789abcdef"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(ok.server.api_key.as_deref(), Some("0123456789abcdef"));
        let short = Config::load(&env(&[(WASYNC_API_KEY, "short")]), None).unwrap_err();
        assert!(short.to_string().contains("at least 16"));
    }

    #[test]
    fn file_values_apply_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasync.toml");
        std::fs::write(
            &path,
            "[storage]\ndata_dir = \"/tmp/x\"\nmongodb_db = \"filedb\"\ncache_mib = 16\n[events]\namqp_queue = \"q\"\npublish_messages = true\n[server]\nmax_body_bytes = 2048\n",
        )
        .unwrap();
        let c = Config::load(&env(&[(MONGODB_DB, "envdb")]), Some(&path)).unwrap();
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.storage.mongodb_db, "envdb");
        assert_eq!(c.events.amqp_queue, "q");
        assert!(c.events.publish_messages);
        assert_eq!(c.server.max_body_bytes, 2048);
        assert_eq!(c.storage.store_cache_mib, 16);

        std::fs::write(&path, "[storage]\ndatadir = \"/tmp/x\"\n").unwrap();
        let err = Config::load(&HashMap::new(), Some(&path)).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");

        std::fs::write(&path, "[server]\nlisten = \"bad\"\n").unwrap();
        let err = Config::load(&HashMap::new(), Some(&path)).unwrap_err();
        assert!(
            err.to_string()
                .contains("WASYNC_LISTEN (from the config file)"),
            "{err}"
        );
    }
}
