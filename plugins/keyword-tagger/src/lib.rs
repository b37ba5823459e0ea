//! `keyword-tagger`: adds tags to messages whose body mentions configured
//! keywords, so downstream consumers (the AI service, search) can filter on
//! them without reading every body.
//!
//! Config (manifest `[config]`):
//! - `rules`: one rule per line (a TOML array is passed one item per line),
//!   `tag: keyword, keyword, ...`. Keywords match whole words, ignoring
//!   case; a keyword may contain spaces (`"due date"`).
//! - `prefix`: put before every tag (default none), e.g. `kw:`.

use wasync_plugin::{
    Batch, Edits, PerInstance, PluginError, SyncContext, Transformer, config, log,
};

struct Rule {
    tag: String,
    /// Lower-cased.
    keywords: Vec<String>,
}

fn parse_rules(raw: &str, prefix: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (n, line) in raw.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (tag, kws) = line
            .split_once(':')
            .ok_or_else(|| format!("rule {} has no ':' (want `tag: kw, kw`): {line:?}", n + 1))?;
        let keywords: Vec<String> = kws
            .split(',')
            .map(|k| k.trim().to_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        if tag.trim().is_empty() || keywords.is_empty() {
            return Err(format!(
                "rule {} needs a tag and at least one keyword",
                n + 1
            ));
        }
        rules.push(Rule {
            tag: format!("{prefix}{}", tag.trim()),
            keywords,
        });
    }
    Ok(rules)
}

/// Parsed once per instance (the host makes one per chat); a bad rule fails
/// every call of the instance with `bad-config`.
static RULES: PerInstance<Result<Vec<Rule>, PluginError>> = PerInstance::new();

fn read_rules() -> Result<Vec<Rule>, PluginError> {
    let prefix = config::string_or("prefix", "");
    let rules =
        parse_rules(&config::string_or("rules", ""), &prefix).map_err(PluginError::bad_config)?;
    if rules.is_empty() {
        log::warn("no rules configured: every message is kept as is");
    }
    Ok(rules)
}

/// True when `kw` occurs in `hay` with no letter or digit right before or
/// after it. Both are lower-case; `kw` is not empty (`parse_rules` leaves
/// empty keywords out).
///
/// One pass over the bytes per keyword, comparing only where its first
/// byte is: `str::find` would set up a two-way searcher per keyword and
/// message, which costs more than the search on short bodies. A match
/// starts and ends on character boundaries (the first byte of a UTF-8
/// keyword is never a continuation byte), as `find`'s do.
fn contains_word(hay: &str, kw: &str) -> bool {
    let (h, k) = (hay.as_bytes(), kw.as_bytes());
    let Some(&first) = k.first() else {
        return false;
    };
    let Some(last) = h.len().checked_sub(k.len()) else {
        return false;
    };
    let mut i = 0;
    while i <= last {
        match h[i..=last].iter().position(|&b| b == first) {
            Some(p) => i += p,
            None => return false,
        }
        if &h[i..i + k.len()] == k {
            let before_ok = hay[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric());
            let after_ok = hay[i + k.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric());
            if before_ok && after_ok {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// `str::to_lowercase`, without its per-character Unicode tables for an
/// ASCII body (the same result).
fn lower(body: &str) -> String {
    match body.is_ascii() {
        true => body.to_ascii_lowercase(),
        false => body.to_lowercase(),
    }
}

struct KeywordTagger;

impl Transformer for KeywordTagger {
    /// Reads the bodies (one column for the batch), and a message's tags
    /// only when a rule matches it, so a message already tagged is kept
    /// unchanged.
    fn transform_batch(_ctx: SyncContext, batch: &Batch) -> Result<Edits, PluginError> {
        let rules = RULES.try_get_or_init(read_rules)?;
        let mut edits = Edits::new();
        if rules.is_empty() {
            return Ok(edits);
        }
        for i in 0..batch.len() {
            let Some(body) = batch.body(i).map(lower) else {
                continue;
            };
            let mut tags: Option<Vec<String>> = None;
            for rule in rules {
                if rule.keywords.iter().any(|k| contains_word(&body, k)) {
                    let have = tags.get_or_insert_with(|| batch.tags(i));
                    if !have.contains(&rule.tag) {
                        have.push(rule.tag.clone());
                        edits.add_tag(i, &rule.tag);
                    }
                }
            }
        }
        Ok(edits)
    }
}

wasync_plugin::export_transformer!(KeywordTagger);

#[global_allocator]
static ALLOC: wasync_plugin::SmallAlloc = wasync_plugin::SmallAlloc::new();

#[cfg(test)]
mod tests {
    use super::*;
    use wasync_plugin::testing::{self, Instance};
    use wasync_plugin::{Level, Message};

    const MANIFEST_RULES: &str = "urgent: urgent, asap, emergency\nbilling: invoice, payment, refund\nmeeting: meeting, call me, due date";

    fn run(config: &[(&str, &str)], msgs: &[Message]) -> Result<Edits, PluginError> {
        testing::with_config(config, || {
            KeywordTagger::transform_batch(testing::context(), &testing::batch(msgs))
        })
    }

    /// The tags of the messages the plugin changed; none for those it kept.
    fn tags(msgs: &[Message], edits: &Edits) -> Vec<Vec<String>> {
        testing::apply(msgs, edits)
            .into_iter()
            .enumerate()
            .map(|(i, m)| match edits.get(i) {
                Some(_) => m.unwrap().tags,
                None => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn tags_whole_words_in_any_case() {
        let msgs = testing::messages(&[
            "URGENT: the invoice is wrong",
            "an urgently worded note",
            "can we set a due date?",
        ]);
        let out = run(&[("rules", MANIFEST_RULES)], &msgs).unwrap();
        assert_eq!(
            tags(&msgs, &out),
            [vec!["urgent", "billing"], vec![], vec!["meeting"]]
        );
        assert_eq!(out.get(1), None);
    }

    #[test]
    fn prefix_comments_and_existing_tags() {
        let config = [("rules", "# a comment\n\nurgent: asap"), ("prefix", "kw:")];
        let tagged = Message {
            tags: vec!["kw:urgent".into()],
            ..testing::message("asap!")
        };
        let no_body = Message {
            body: None,
            ..testing::message("")
        };
        let msgs = vec![testing::message("ASAP please"), tagged, no_body];
        let out = run(&config, &msgs).unwrap();
        assert_eq!(tags(&msgs, &out), [vec!["kw:urgent"], vec![], vec![]]);
        assert_eq!(
            out.len(),
            1,
            "the tagged message and the one without a body are kept"
        );
    }

    #[test]
    fn a_bad_rule_fails_every_call_with_bad_config() {
        let plugin = Instance::new(&[("rules", "urgent: asap\nno colon here")]);
        for _ in 0..2 {
            let err = plugin
                .run(|| {
                    let msgs = testing::messages(&["x"]);
                    KeywordTagger::transform_batch(testing::context(), &testing::batch(&msgs))
                })
                .unwrap_err();
            assert_eq!(err.code, "bad-config");
            assert_eq!(
                err.message,
                "rule 2 has no ':' (want `tag: kw, kw`): \"no colon here\""
            );
        }
        let err = testing::with_config(&[("rules", "urgent: ,")], || read_rules().err()).unwrap();
        assert_eq!(err.message, "rule 1 needs a tag and at least one keyword");
    }

    #[test]
    fn no_rules_keeps_everything_and_warns_once_per_instance() {
        let plugin = Instance::new(&[]);
        for _ in 0..2 {
            let msgs = testing::messages(&["urgent"]);
            let out = plugin
                .run(|| KeywordTagger::transform_batch(testing::context(), &testing::batch(&msgs)));
            assert!(out.unwrap().is_empty());
        }
        assert_eq!(
            plugin.logs(),
            [(
                Level::Warn,
                "no rules configured: every message is kept as is".to_owned()
            )]
        );
    }

    #[test]
    fn word_boundaries() {
        assert!(contains_word("call me maybe", "call me"));
        assert!(contains_word("(asap)", "asap"));
        assert!(contains_word("ünïcode asap", "asap"));
        assert!(!contains_word("urgently", "urgent"));
        assert!(!contains_word("näsap", "asap"));
        assert!(
            contains_word("asapx asap", "asap"),
            "a later whole-word hit counts"
        );
    }
}
