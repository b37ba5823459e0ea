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
static RULES: PerInstance<Result<Matcher, PluginError>> = PerInstance::new();

fn read_rules() -> Result<Matcher, PluginError> {
    let prefix = config::string_or("prefix", "");
    let rules =
        parse_rules(&config::string_or("rules", ""), &prefix).map_err(PluginError::bad_config)?;
    if rules.is_empty() {
        log::warn("no rules configured: every message is kept as is");
    }
    Ok(Matcher::new(rules))
}

/// Every rule's keywords, found in one pass over a body.
///
/// A keyword matches where no letter or digit comes right before or after
/// it, so only the start of a word can begin a match: the pass walks the
/// body's characters once and, at each word start, compares the keywords
/// whose first byte is the one there (about one for a handful of rules).
/// Searching the body once per keyword, as before, cost three times the
/// instructions. A match starts and ends on character boundaries (the
/// first byte of a UTF-8 keyword is never a continuation byte).
struct Matcher {
    rules: Vec<Rule>,
    /// `by_first[b]`: (rule, keyword) of the keywords starting with byte `b`.
    by_first: Vec<Vec<(usize, usize)>>,
}

impl Matcher {
    fn new(rules: Vec<Rule>) -> Self {
        let mut by_first = vec![Vec::new(); 256];
        for (r, rule) in rules.iter().enumerate() {
            for (k, kw) in rule.keywords.iter().enumerate() {
                // `parse_rules` leaves empty keywords out.
                if let Some(&b) = kw.as_bytes().first() {
                    by_first[b as usize].push((r, k));
                }
            }
        }
        Self { rules, by_first }
    }

    /// Sets `hit[r]` for each rule `r` that lower-case `hay` mentions.
    fn rules_in(&self, hay: &str, hit: &mut [bool]) {
        hit.fill(false);
        let h = hay.as_bytes();
        let mut in_word = false;
        for (i, c) in hay.char_indices() {
            if !in_word {
                for &(r, k) in &self.by_first[h[i] as usize] {
                    let kw = self.rules[r].keywords[k].as_bytes();
                    if !hit[r]
                        && h[i..].starts_with(kw)
                        && hay[i + kw.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| !c.is_alphanumeric())
                    {
                        hit[r] = true;
                    }
                }
            }
            in_word = c.is_alphanumeric();
        }
    }
}

/// `body` lower-cased into `out`, without `str::to_lowercase`'s
/// per-character Unicode tables for an ASCII body (the same result), and
/// without an allocation per message.
fn lower_into(body: &str, out: &mut String) {
    out.clear();
    if body.is_ascii() {
        out.push_str(body);
        out.make_ascii_lowercase();
    } else {
        out.push_str(&body.to_lowercase());
    }
}

struct KeywordTagger;

impl Transformer for KeywordTagger {
    /// Reads the bodies (one column for the batch), and a message's tags
    /// only when a rule matches it, so a message already tagged is kept
    /// unchanged.
    fn transform_batch(_ctx: SyncContext, batch: &Batch) -> Result<Edits, PluginError> {
        let matcher = RULES.try_get_or_init(read_rules)?;
        let mut edits = Edits::new();
        if matcher.rules.is_empty() {
            return Ok(edits);
        }
        let mut body = String::new();
        let mut hit = vec![false; matcher.rules.len()];
        for i in 0..batch.len() {
            let Some(b) = batch.body(i) else {
                continue;
            };
            lower_into(b, &mut body);
            matcher.rules_in(&body, &mut hit);
            let mut tags: Option<Vec<String>> = None;
            for (rule, _) in matcher.rules.iter().zip(&hit).filter(|(_, hit)| **hit) {
                let have = tags.get_or_insert_with(|| batch.tags(i));
                if !have.contains(&rule.tag) {
                    have.push(rule.tag.clone());
                    edits.add_tag(i, &rule.tag);
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

    /// Whether `hay` mentions keyword `kw` (both lower-case).
    fn contains_word(hay: &str, kw: &str) -> bool {
        let m = Matcher::new(parse_rules(&format!("t: {kw}"), "").unwrap());
        let mut hit = [false];
        m.rules_in(hay, &mut hit);
        hit[0]
    }

    /// The definition, written plainly: some occurrence of `kw` in `hay`
    /// with no letter or digit right before or after it.
    fn reference(hay: &str, kw: &str) -> bool {
        hay.match_indices(kw).any(|(i, _)| {
            hay[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
                && hay[i + kw.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric())
        })
    }

    #[test]
    fn one_pass_finds_what_a_search_per_keyword_finds() {
        // Bodies from an alphabet of letters, digits, spaces, punctuation
        // and multi-byte characters; keywords sharing first bytes.
        let alphabet: Vec<char> = "aabcdeimnprstu 0-,.(éüß".chars().collect();
        let keywords = [
            "a", "ab", "abc", "due date", "é", "éa", "-a", "ß", "m", "me",
        ];
        let rules: String = keywords
            .iter()
            .enumerate()
            .map(|(i, k)| format!("t{i}: {k}\n"))
            .collect();
        let m = Matcher::new(parse_rules(&rules, "").unwrap());
        let mut hit = vec![false; keywords.len()];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 12) as usize;
            let hay: String = (0..len)
                .map(|j| alphabet[((x >> (j * 5)) % alphabet.len() as u64) as usize])
                .collect();
            m.rules_in(&hay, &mut hit);
            for (r, kw) in keywords.iter().enumerate() {
                assert_eq!(hit[r], reference(&hay, kw), "{kw:?} in {hay:?}");
            }
        }
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
