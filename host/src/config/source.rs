//! Where settings come from: the optional TOML file's shape, and the
//! lookup that prefers the environment and records every problem.

use std::collections::HashMap;

use serde::Deserialize;

/// The optional TOML file; every key mirrors a variable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub(super) server: FileServer,
    #[serde(default)]
    pub(super) storage: FileStorage,
    #[serde(default)]
    pub(super) events: FileEvents,
    #[serde(default)]
    pub(super) browser: FileBrowser,
    #[serde(default)]
    pub(super) plugins: FilePlugins,
    #[serde(default)]
    pub(super) log: FileLog,
    #[serde(default)]
    pub(super) cluster: FileCluster,
    #[serde(default)]
    pub(super) webhooks: FileWebhooks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub(super) listen: Option<Scalar>,
    pub(super) api_key: Option<Scalar>,
    pub(super) max_body_bytes: Option<Scalar>,
    pub(super) max_plugin_bytes: Option<Scalar>,
    pub(super) ws_queue: Option<Scalar>,
    pub(super) ws_stall_ms: Option<Scalar>,
    pub(super) max_clients: Option<Scalar>,
    pub(super) max_rooms_per_client: Option<Scalar>,
    pub(super) ws_ping_ms: Option<Scalar>,
    pub(super) body_timeout_ms: Option<Scalar>,
    pub(super) allowed_hosts: Option<Scalar>,
    pub(super) allowed_origins: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStorage {
    pub(super) data_dir: Option<Scalar>,
    pub(super) cache_mib: Option<Scalar>,
    pub(super) mongodb_uri: Option<Scalar>,
    pub(super) mongodb_db: Option<Scalar>,
    pub(super) outbox_retention_hours: Option<Scalar>,
    pub(super) quarantine_retention_days: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEvents {
    pub(super) amqp_url: Option<Scalar>,
    pub(super) amqp_queue: Option<Scalar>,
    pub(super) publish_sync_failed: Option<Scalar>,
    pub(super) publish_messages: Option<Scalar>,
    pub(super) publish_updates: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBrowser {
    pub(super) provider: Option<Scalar>,
    pub(super) simulator: Option<Scalar>,
    pub(super) webdriver_url: Option<Scalar>,
    pub(super) chromedriver_path: Option<Scalar>,
    pub(super) chromium_path: Option<Scalar>,
    pub(super) whatsapp_web_url: Option<Scalar>,
    pub(super) login_save_secs: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePlugins {
    pub(super) dir: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    pub(super) format: Option<Scalar>,
    pub(super) filter: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCluster {
    pub(super) host_id: Option<Scalar>,
    pub(super) advertise_url: Option<Scalar>,
    pub(super) max_sessions: Option<Scalar>,
    pub(super) lease_ttl_ms: Option<Scalar>,
    pub(super) lease_renew_ms: Option<Scalar>,
    pub(super) live_exchange: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWebhooks {
    pub(super) max_webhooks: Option<Scalar>,
    pub(super) allow_private: Option<Scalar>,
    pub(super) max_age_secs: Option<Scalar>,
    pub(super) retry_min_ms: Option<Scalar>,
    pub(super) retry_max_ms: Option<Scalar>,
    pub(super) timeout_ms: Option<Scalar>,
    pub(super) concurrency: Option<Scalar>,
    pub(super) retention_hours: Option<Scalar>,
}

/// A file value: a string, number or boolean, read as text so the file
/// and the environment go through the same checks.
#[derive(Debug)]
pub(super) struct Scalar(pub(super) String);

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
pub(super) struct Source<'a> {
    pub(super) env: &'a HashMap<String, String>,
    pub(super) problems: Vec<String>,
}

impl Source<'_> {
    pub(super) fn get(&self, var: &str, file: &Option<Scalar>) -> Option<(String, String)> {
        match self.env.get(var) {
            Some(v) => Some((v.clone(), var.to_owned())),
            None => file
                .as_ref()
                .map(|v| (v.0.clone(), format!("{var} (from the config file)"))),
        }
    }

    pub(super) fn string(&self, var: &str, file: &Option<Scalar>) -> Option<String> {
        self.get(var, file)
            .map(|(v, _)| v)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn parse<T: std::str::FromStr>(
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

    /// A comma-separated list, lower-cased; each entry must pass `ok`.
    pub(super) fn list(
        &mut self,
        var: &str,
        file: &Option<Scalar>,
        ok: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let Some((raw, name)) = self.get(var, file) else {
            return Vec::new();
        };
        let items: Vec<String> = raw
            .split(',')
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .collect();
        for bad in items.iter().filter(|v| !ok(v)) {
            self.problems
                .push(format!("{name}: {bad:?} is not a valid entry"));
        }
        items
    }

    pub(super) fn flag(&mut self, var: &str, file: &Option<Scalar>) -> bool {
        self.flag_or(var, file, false)
    }

    /// A boolean that is `default` when unset.
    pub(super) fn flag_or(&mut self, var: &str, file: &Option<Scalar>, default: bool) -> bool {
        match self.get(var, file) {
            None => default,
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

    pub(super) fn url(
        &mut self,
        var: &str,
        file: &Option<Scalar>,
        schemes: &[&str],
    ) -> Option<String> {
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
