//! The manifest: the TOML file beside each component that tells the host
//! what the plugin is, where it runs in the chain, what it may use and what
//! happens when it fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PluginError;

/// Which WIT world a component implements; decides which exports the host
/// requires and calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Exports `message-transform`.
    Transformer,
    /// Exports `chat-hooks`.
    ChatHook,
    /// Exports both.
    Full,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Transformer => "transformer",
            World::ChatHook => "chat-hook",
            World::Full => "full",
        }
    }

    pub fn transforms(self) -> bool {
        matches!(self, World::Transformer | World::Full)
    }

    pub fn hooks(self) -> bool {
        matches!(self, World::ChatHook | World::Full)
    }
}

/// What happens to the messages a failed plugin was responsible for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Quarantine the batch (never store it unvetted); a failed chat hook
    /// skips the chat. The default, because a redaction plugin that fails
    /// open leaks what it exists to hide.
    #[default]
    FailClosed,
    /// Store the batch as it was, tagged `plugin-skipped:<name>`; a failed
    /// chat hook has no say.
    FailOpen,
}

/// Per-plugin limits; every field has a default (see `docs/plugins.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget of one `transform-batch` call (one sub-batch).
    pub deadline_ms: u32,
    /// Wall-clock budget of one chat-hook call.
    pub hook_deadline_ms: u32,
    /// Linear memory one instance may grow to; at most the host's ceiling
    /// (`RuntimeOptions::max_memory_mib`, 256 by default), checked at load.
    pub memory_mib: u32,
    /// Longer message bodies are passed cut to this, with `truncated` set.
    pub max_body_bytes: u32,
    /// Largest message a `replace` may return (body, tags and attributes).
    pub max_output_bytes: u32,
    /// Failures in one sync after which the plugin is tripped off for the
    /// rest of that sync (its `on_error` policy still applies).
    pub max_failures: u32,
    /// Most messages in one `transform-batch` call: a chat's messages are
    /// split into sub-batches so the per-call deadline and memory cap bound
    /// per-call work, whatever the chat's size.
    pub max_batch_messages: u32,
    /// Most bytes (as the plugin sees the messages) in one `transform-batch`
    /// call; a single larger message still goes alone.
    pub max_batch_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: 200,
            hook_deadline_ms: 100,
            memory_mib: 64,
            max_body_bytes: 64 * 1024,
            max_output_bytes: 256 * 1024,
            max_failures: 3,
            max_batch_messages: 256,
            max_batch_bytes: 1024 * 1024,
        }
    }
}

/// Hard ceilings no manifest can raise its limits past.
pub const MAX_DEADLINE_MS: u32 = 10_000;
pub const MAX_BODY_BYTES: u32 = 1024 * 1024;
pub const MAX_OUTPUT_BYTES: u32 = 4 * 1024 * 1024;
/// Absolute memory ceiling of a manifest; the host's own ceiling
/// (`RuntimeOptions::max_memory_mib`) is usually lower and is checked at load.
pub const MAX_MEMORY_MIB: u32 = 4096;
pub const MAX_BATCH_MESSAGES: u32 = 10_000;
pub const MAX_BATCH_BYTES: u32 = 16 * 1024 * 1024;

/// A parsed and validated manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `^[a-z0-9][a-z0-9-]{0,63}$`: it names the files on disk and the
    /// REST resource, so it is a security boundary like session ids.
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub world: World,
    /// Lower runs first; ties run by name.
    pub priority: i32,
    pub on_error: OnError,
    pub limits: Limits,
    /// The plugin's `config-get` answers.
    #[serde(skip)]
    pub config: BTreeMap<String, String>,
    /// Lower-case hex sha256 of the component the manifest vouches for.
    pub sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    version: String,
    description: Option<String>,
    world: World,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    on_error: OnError,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    config: toml::Table,
    sha256: Option<String>,
}

fn bad(reason: impl Into<String>) -> PluginError {
    PluginError::BadManifest {
        reason: reason.into(),
    }
}

/// True for names the host accepts (see [`Manifest::name`]).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl Manifest {
    /// Parses and validates; every refusal says which field is wrong.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let raw: Raw = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !valid_name(&raw.name) {
            return Err(bad(format!(
                "name {:?} must be 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit",
                raw.name
            )));
        }
        if raw.version.trim().is_empty() || raw.version.len() > 64 {
            return Err(bad("version must be 1-64 characters"));
        }
        let l = raw.limits;
        let check = |field: &str, v: u32, lo: u32, hi: u32| {
            if v < lo || v > hi {
                Err(bad(format!("limits.{field} = {v} is outside {lo}..={hi}")))
            } else {
                Ok(())
            }
        };
        check("deadline_ms", l.deadline_ms, 1, MAX_DEADLINE_MS)?;
        check("hook_deadline_ms", l.hook_deadline_ms, 1, MAX_DEADLINE_MS)?;
        check("memory_mib", l.memory_mib, 1, MAX_MEMORY_MIB)?;
        check("max_body_bytes", l.max_body_bytes, 64, MAX_BODY_BYTES)?;
        check(
            "max_output_bytes",
            l.max_output_bytes,
            1024,
            MAX_OUTPUT_BYTES,
        )?;
        check("max_failures", l.max_failures, 1, 1_000_000)?;
        check(
            "max_batch_messages",
            l.max_batch_messages,
            1,
            MAX_BATCH_MESSAGES,
        )?;
        check(
            "max_batch_bytes",
            l.max_batch_bytes,
            64 * 1024,
            MAX_BATCH_BYTES,
        )?;
        let sha256 = match raw.sha256 {
            None => None,
            Some(s) => {
                let s = s.to_ascii_lowercase();
                if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad("sha256 must be 64 hex digits"));
                }
                Some(s)
            }
        };
        let mut config = BTreeMap::new();
        for (k, v) in raw.config {
            config.insert(k.clone(), config_value(&k, v)?);
        }
        Ok(Self {
            name: raw.name,
            version: raw.version,
            description: raw.description,
            world: raw.world,
            priority: raw.priority,
            on_error: raw.on_error,
            limits: l,
            config,
            sha256,
        })
    }
}

/// Plugins see config values as strings: scalars as written, arrays of
/// scalars one item per line (so a plugin reads a list with `.lines()`).
fn config_value(key: &str, v: toml::Value) -> Result<String, PluginError> {
    fn scalar(v: &toml::Value) -> Option<String> {
        match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    }
    if let Some(s) = scalar(&v) {
        return Ok(s);
    }
    if let toml::Value::Array(items) = &v {
        let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
        if let Some(parts) = parts {
            return Ok(parts.join("\n"));
        }
    }
    Err(bad(format!(
        "config.{key} must be a string, number, boolean or an array of those"
    )))
}

/// Puts `sha256 = "<hex>"` into a manifest's text when it has none, at the
/// top so it stays a top-level key whatever tables follow.
pub(crate) fn with_sha256(text: &str, manifest: &Manifest, sha256: &str) -> String {
    if manifest.sha256.is_some() {
        text.to_owned()
    } else {
        format!("sha256 = \"{sha256}\"\n{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "name = \"p\"\nversion = \"1\"\nworld = \"transformer\"\n";

    #[test]
    fn defaults_apply() {
        let m = Manifest::parse(MIN).unwrap();
        assert_eq!(m.on_error, OnError::FailClosed);
        assert_eq!(m.priority, 0);
        assert_eq!(m.limits, Limits::default());
        assert!(m.config.is_empty());
    }

    #[test]
    fn config_values_become_strings() {
        let m = Manifest::parse(&format!(
            "{MIN}on_error = \"fail-open\"\n[limits]\ndeadline_ms = 50\n[config]\na = \"x\"\nb = 3\nc = true\nd = [\"one\", \"two\"]\n"
        ))
        .unwrap();
        assert_eq!(m.on_error, OnError::FailOpen);
        assert_eq!(m.limits.deadline_ms, 50);
        assert_eq!(m.config["a"], "x");
        assert_eq!(m.config["b"], "3");
        assert_eq!(m.config["c"], "true");
        assert_eq!(m.config["d"], "one\ntwo");
    }

    #[test]
    fn refuses_bad_manifests_with_a_reason() {
        for (text, needle) in [
            (
                "name = \"../x\"\nversion = \"1\"\nworld = \"full\"\n",
                "name",
            ),
            (
                "name = \"Upper\"\nversion = \"1\"\nworld = \"full\"\n",
                "name",
            ),
            ("name = \"p\"\nversion = \"1\"\nworld = \"nope\"\n", "world"),
            (&format!("{MIN}surprise = 1\n"), "surprise"),
            (&format!("{MIN}[limits]\ndeadline_ms = 0\n"), "deadline_ms"),
            (
                &format!("{MIN}[limits]\nmemory_mib = 100000\n"),
                "memory_mib",
            ),
            (&format!("{MIN}sha256 = \"abc\"\n"), "sha256"),
            (&format!("{MIN}[config]\nt = {{ a = 1 }}\n"), "config.t"),
            ("not toml at all", ""),
        ] {
            match Manifest::parse(text) {
                Err(PluginError::BadManifest { reason }) => {
                    assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn sha256_is_prepended_once() {
        let m = Manifest::parse(&format!("{MIN}[config]\nk = \"v\"\n")).unwrap();
        let sum = "a".repeat(64);
        let text = with_sha256(&format!("{MIN}[config]\nk = \"v\"\n"), &m, &sum);
        let back = Manifest::parse(&text).unwrap();
        assert_eq!(back.sha256.as_deref(), Some(sum.as_str()));
        assert_eq!(back.config["k"], "v");
        assert_eq!(with_sha256(&text, &back, &sum), text);
    }
}
