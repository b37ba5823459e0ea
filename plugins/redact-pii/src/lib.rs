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

use wasync_plugin::{Batch, Edits, PerInstance, PluginError, SyncContext, Transformer, config};

struct Settings {
    opts: redact::Options,
    tag: String,
}

/// Read once per instance; the host gives each chat a fresh instance, so a
/// config change takes effect from the next chat on. Lenient on purpose: a
/// value other than `"false"` leaves a kind on, and a `min-phone-digits`
/// that is not a number keeps the default, so a typo errs towards masking.
static SETTINGS: PerInstance<Settings> = PerInstance::new();

fn read_settings() -> Settings {
    let mut opts = redact::Options::default();
    if let Some(m) = config::get("mask") {
        opts.email_mask = m.clone();
        opts.phone_mask = m;
    }
    if let Some(m) = config::get("email-mask") {
        opts.email_mask = m;
    }
    if let Some(m) = config::get("phone-mask") {
        opts.phone_mask = m;
    }
    opts.emails = config::get("emails").is_none_or(|v| v != "false");
    opts.phones = config::get("phones").is_none_or(|v| v != "false");
    if let Some(n) = config::get("min-phone-digits").and_then(|v| v.parse().ok()) {
        opts.min_phone_digits = n;
    }
    Settings {
        opts,
        tag: config::string_or("tag", "pii-redacted"),
    }
}

struct RedactPii;

impl Transformer for RedactPii {
    /// Reads only the bodies (one column for the batch) and answers only
    /// for the messages it changes.
    fn transform_batch(_ctx: SyncContext, batch: &Batch) -> Result<Edits, PluginError> {
        let s = SETTINGS.get_or_init(read_settings);
        let mut edits = Edits::new();
        for i in 0..batch.len() {
            redact_message(batch, i, s, &mut edits);
        }
        Ok(edits)
    }
}

fn redact_message(batch: &Batch, i: usize, s: &Settings, edits: &mut Edits) {
    let found = batch.body(i).and_then(|b| redact::redact(b, &s.opts));
    let truncated = batch.truncated(i);
    if found.is_none() && !truncated {
        return;
    }
    let (mut body, counts) = found.unwrap_or_else(|| {
        (
            batch.body(i).unwrap_or_default().to_owned(),
            redact::Counts::default(),
        )
    });
    if truncated {
        // The host cut the body: the unseen tail could hold PII, so store
        // only the redacted prefix (the host keeps a changed body as given).
        body.push_str(" [truncated]");
    }
    edits.set_body(i, body);
    if !s.tag.is_empty() {
        edits.add_tag(i, &s.tag);
    }
    edits.set_attribute(i, "pii.redacted", counts.total().to_string());
}

wasync_plugin::export_transformer!(RedactPii);

#[global_allocator]
static ALLOC: wasync_plugin::SmallAlloc = wasync_plugin::SmallAlloc::new();

#[cfg(test)]
mod tests {
    use super::*;
    use wasync_plugin::Message;
    use wasync_plugin::testing::{self, Instance};

    /// What the host would store: per message, `Some` when the plugin
    /// changed it, `None` when it kept it as it came.
    fn run(config: &[(&str, &str)], msgs: Vec<Message>) -> Vec<Option<Message>> {
        let edits = Instance::new(config)
            .run(|| RedactPii::transform_batch(testing::context(), &testing::batch(&msgs)))
            .unwrap();
        testing::apply(&msgs, &edits)
            .into_iter()
            .enumerate()
            .map(|(i, m)| edits.get(i).and(m))
            .collect()
    }

    fn replaced(o: &Option<Message>) -> &Message {
        o.as_ref().expect("a changed message")
    }

    #[test]
    fn masks_tags_and_counts() {
        let out = run(
            &[],
            testing::messages(&[
                "call +49 151 23456789 or mail ana@example.org",
                "meeting at 10:30",
            ]),
        );
        let m = replaced(&out[0]);
        assert_eq!(m.body.as_deref(), Some("call [phone] or mail [email]"));
        assert_eq!(m.tags, ["pii-redacted"]);
        assert_eq!(m.attribute("pii.redacted"), Some("2"));
        assert_eq!((m.id.as_str(), m.chat_id.as_str()), ("m0", "c1"));
        assert_eq!(out[1], None);
    }

    #[test]
    fn masks_kinds_and_tag_follow_the_config() {
        let msgs = || testing::messages(&["a@b.io, +49 151 23456789"]);
        let m = run(&[("mask", "***")], msgs());
        assert_eq!(replaced(&m[0]).body.as_deref(), Some("***, ***"));
        let m = run(&[("mask", "***"), ("email-mask", "<e>")], msgs());
        assert_eq!(replaced(&m[0]).body.as_deref(), Some("<e>, ***"));
        let m = run(&[("emails", "false"), ("tag", "")], msgs());
        let m = replaced(&m[0]);
        assert_eq!(m.body.as_deref(), Some("a@b.io, [phone]"));
        assert!(m.tags.is_empty());
        assert_eq!(m.attribute("pii.redacted"), Some("1"));
        assert_eq!(
            run(&[("emails", "false"), ("phones", "false")], msgs()),
            [None]
        );
    }

    #[test]
    fn min_phone_digits_is_lenient() {
        let msgs = || testing::messages(&["order 1234567"]);
        assert_eq!(run(&[], msgs()), [None]);
        assert_eq!(
            replaced(&run(&[("min-phone-digits", "7")], msgs())[0])
                .body
                .as_deref(),
            Some("order [phone]")
        );
        assert_eq!(
            run(&[("min-phone-digits", "seven")], msgs()),
            [None],
            "a bad number keeps the default"
        );
    }

    #[test]
    fn a_truncated_body_is_stored_as_its_redacted_prefix() {
        let clean = Message {
            truncated: true,
            ..testing::message("nothing here")
        };
        let pii = Message {
            truncated: true,
            ..testing::message("mail jo@example.com")
        };
        let out = run(&[], vec![clean, pii]);
        let m = replaced(&out[0]);
        assert_eq!(m.body.as_deref(), Some("nothing here [truncated]"));
        assert_eq!(m.attribute("pii.redacted"), Some("0"));
        assert_eq!(
            replaced(&out[1]).body.as_deref(),
            Some("mail [email] [truncated]")
        );
    }

    #[test]
    fn a_tag_already_there_is_not_repeated() {
        let m = Message {
            tags: vec!["pii-redacted".into()],
            ..testing::message("+49 151 23456789")
        };
        let out = run(&[], vec![m]);
        assert_eq!(replaced(&out[0]).tags, ["pii-redacted"]);
    }
}
