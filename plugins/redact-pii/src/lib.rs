//! `redact-pii`: masks phone numbers and e-mail addresses in message bodies
//! before they reach the store.
//!
//! Config (manifest `[config]`, all optional):
//! - `mask`: the text that replaces both kinds (default `[email]` / `[phone]`)
//! - `email-mask`, `phone-mask`: per kind, override `mask`
//! - `emails`, `phones`: `"false"` turns a kind off
//! - `min-phone-digits`: digits a number without `+` needs (default 9)
//! - `tag`: added to redacted messages (default `pii-redacted`; empty = none)
//!
//! A body longer than the host's input cap arrives cut (`truncated`); since
//! the tail was never scanned, the plugin replaces such a body with its
//! redacted prefix plus ` [truncated]` rather than let the tail through.

mod redact;

use std::sync::OnceLock;

use exports::wasync::plugin::message_transform::{Guest, Message, Outcome, PluginError, SyncContext};
use wasync::plugin::host::config_get;

wit_bindgen::generate!({ path: "../../wit", world: "transformer" });

struct Settings {
    opts: redact::Options,
    tag: String,
}

/// Read once per instance; the host gives each chat a fresh instance, so a
/// config change takes effect from the next chat on.
fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        let mut opts = redact::Options::default();
        if let Some(m) = config_get("mask") {
            opts.email_mask = m.clone();
            opts.phone_mask = m;
        }
        if let Some(m) = config_get("email-mask") {
            opts.email_mask = m;
        }
        if let Some(m) = config_get("phone-mask") {
            opts.phone_mask = m;
        }
        opts.emails = config_get("emails").is_none_or(|v| v != "false");
        opts.phones = config_get("phones").is_none_or(|v| v != "false");
        if let Some(n) = config_get("min-phone-digits").and_then(|v| v.parse().ok()) {
            opts.min_phone_digits = n;
        }
        let tag = config_get("tag").unwrap_or_else(|| "pii-redacted".to_owned());
        Settings { opts, tag }
    })
}

struct RedactPii;

impl Guest for RedactPii {
    fn transform_batch(_ctx: SyncContext, msgs: Vec<Message>) -> Result<Vec<Outcome>, PluginError> {
        let s = settings();
        Ok(msgs
            .into_iter()
            .map(|mut m| {
                let found = m.body.as_deref().and_then(|b| redact::redact(b, &s.opts));
                if found.is_none() && !m.truncated {
                    return Outcome::Keep;
                }
                let (mut body, counts) = found.unwrap_or_else(|| (m.body.clone().unwrap_or_default(), redact::Counts::default()));
                if m.truncated {
                    // The host cut the body: the unseen tail could hold PII, so
                    // store only the redacted prefix (the host keeps a replaced
                    // body as given).
                    body.push_str(" [truncated]");
                }
                m.body = Some(body);
                if !s.tag.is_empty() && !m.tags.contains(&s.tag) {
                    m.tags.push(s.tag.clone());
                }
                m.attributes.push(("pii.redacted".to_owned(), counts.total().to_string()));
                Outcome::Replace(m)
            })
            .collect())
    }
}

export!(RedactPii);
