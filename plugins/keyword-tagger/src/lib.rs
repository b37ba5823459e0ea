//! `keyword-tagger`: adds tags to messages whose body mentions configured
//! keywords, so downstream consumers (the AI service, search) can filter on
//! them without reading every body.
//!
//! Config (manifest `[config]`):
//! - `rules`: one rule per line (a TOML array is passed one item per line),
//!   `tag: keyword, keyword, ...`. Keywords match whole words, ignoring
//!   case; a keyword may contain spaces (`"due date"`).
//! - `prefix`: put before every tag (default none), e.g. `kw:`.

use std::sync::OnceLock;

use exports::wasync::plugin::message_transform::{Guest, Message, Outcome, PluginError, SyncContext};
use wasync::plugin::host::{Level, config_get, log};

wit_bindgen::generate!({ path: "../../wit", world: "transformer" });

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
            return Err(format!("rule {} needs a tag and at least one keyword", n + 1));
        }
        rules.push(Rule { tag: format!("{prefix}{}", tag.trim()), keywords });
    }
    Ok(rules)
}

fn rules() -> &'static Result<Vec<Rule>, String> {
    static R: OnceLock<Result<Vec<Rule>, String>> = OnceLock::new();
    R.get_or_init(|| {
        let prefix = config_get("prefix").unwrap_or_default();
        let rules = parse_rules(&config_get("rules").unwrap_or_default(), &prefix);
        if let Ok(r) = &rules {
            if r.is_empty() {
                log(Level::Warn, "no rules configured: every message is kept as is");
            }
        }
        rules
    })
}

/// True when `kw` occurs in `hay` with no letter or digit right before or
/// after it. Both are lower-case.
fn contains_word(hay: &str, kw: &str) -> bool {
    let mut from = 0;
    while let Some(pos) = hay[from..].find(kw) {
        let start = from + pos;
        let end = start + kw.len();
        let before_ok = hay[..start].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        let after_ok = hay[end..].chars().next().is_none_or(|c| !c.is_alphanumeric());
        if before_ok && after_ok {
            return true;
        }
        from = start + hay[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

struct KeywordTagger;

impl Guest for KeywordTagger {
    fn transform_batch(_ctx: SyncContext, msgs: Vec<Message>) -> Result<Vec<Outcome>, PluginError> {
        let rules = rules().as_ref().map_err(|e| PluginError {
            code: "bad-config".to_owned(),
            message: e.clone(),
        })?;
        Ok(msgs
            .into_iter()
            .map(|mut m| {
                let Some(body) = m.body.as_deref().map(str::to_lowercase) else {
                    return Outcome::Keep;
                };
                let mut added = false;
                for rule in rules {
                    if !m.tags.contains(&rule.tag) && rule.keywords.iter().any(|k| contains_word(&body, k)) {
                        m.tags.push(rule.tag.clone());
                        added = true;
                    }
                }
                if added { Outcome::Replace(m) } else { Outcome::Keep }
            })
            .collect())
    }
}

export!(KeywordTagger);
