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

use wasync_plugin::{
    Message, Outcome, PerInstance, PluginError, SyncContext, Transformer, Verdict, config,
    map_batch,
};

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
    fn transform_batch(_ctx: SyncContext, msgs: Vec<Message>) -> Result<Vec<Outcome>, PluginError> {
        let s = SETTINGS.get_or_init(read_settings);
        Ok(map_batch(msgs, |m| redact_message(m, s)))
    }
}

fn redact_message(m: &mut Message, s: &Settings) -> Verdict {
    let found = m.body.as_deref().and_then(|b| redact::redact(b, &s.opts));
    if found.is_none() && !m.truncated {
        return Verdict::Keep;
    }
    let (mut body, counts) =
        found.unwrap_or_else(|| (m.body.take().unwrap_or_default(), redact::Counts::default()));
    if m.truncated {
        // The host cut the body: the unseen tail could hold PII, so store
        // only the redacted prefix (the host keeps a replaced body as given).
        body.push_str(" [truncated]");
    }
    m.body = Some(body);
    if !s.tag.is_empty() {
        m.add_tag(&s.tag);
    }
    m.set_attribute("pii.redacted", counts.total().to_string());
    Verdict::Replace
}

wasync_plugin::export_transformer!(RedactPii);

#[cfg(test)]
mod tests {
    use super::*;
    use wasync_plugin::testing::{self, Instance};

    fn run(config: &[(&str, &str)], msgs: Vec<Message>) -> Vec<Outcome> {
        Instance::new(config)
            .run(|| RedactPii::transform_batch(testing::context(), msgs))
            .unwrap()
    }

    fn replaced(o: &Outcome) -> &Message {
        match o {
            Outcome::Replace(m) => m,
            other => panic!("expected a replace, got {other:?}"),
        }
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
        assert_eq!(out[1], Outcome::Keep);
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
            [Outcome::Keep]
        );
    }

    #[test]
    fn min_phone_digits_is_lenient() {
        let msgs = || testing::messages(&["order 1234567"]);
        assert_eq!(run(&[], msgs()), [Outcome::Keep]);
        assert_eq!(
            replaced(&run(&[("min-phone-digits", "7")], msgs())[0])
                .body
                .as_deref(),
            Some("order [phone]")
        );
        assert_eq!(
            run(&[("min-phone-digits", "seven")], msgs()),
            [Outcome::Keep],
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
