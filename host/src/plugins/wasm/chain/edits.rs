//! A 0.2 plugin's answer to a batch: its edits checked against the batch,
//! then applied. All or nothing: one bad edit is a fault for the whole
//! batch, as a wrong outcome count is in 0.1.
//!
//! The rules are 0.1's, restated for edits: every index names a message of
//! the batch and no message twice; a `replace` keeps `id` and `chat-id`; no
//! changed message is over `max_output_bytes`; a body the host cut that
//! comes back unchanged keeps the full original, a changed one is stored as
//! written.

use super::failure;
use super::part::{Applied, Part, Verdict};
use super::trace::TracedOutcome;
use crate::domain;
use crate::plugins::wasm::bindings::v2::{self, Change, Edit, Message, Update};
use crate::plugins::wasm::bindings::{cut_of, fields_size};
use crate::plugins::wasm::stats::FailureKind;

/// What becomes of one message.
enum Fate {
    Keep,
    /// Applied in place at commit: no copy of the message.
    Update(Update),
    /// Boxed: replacements are rare, and the fates of a batch one vector.
    Replaced(Box<domain::Message>),
    Drop(String),
}

/// An answer that passed the checks; empty when it kept every message.
pub(super) struct Checked {
    fates: Vec<Fate>,
    max_body: usize,
}

/// Checks `edits` against `part` and works out each message's fate;
/// `Err` names the first rule broken.
pub(super) fn apply(
    part: &[domain::Message],
    edits: Vec<Edit>,
    max_body: usize,
    max_output: usize,
) -> Result<Checked, String> {
    let n = part.len();
    if edits.is_empty() {
        return Ok(Checked {
            fates: Vec::new(),
            max_body,
        });
    }
    if edits.len() > n {
        return Err(format!("returned {} edits for {n} messages", edits.len()));
    }
    let mut fates: Vec<Fate> = (0..n).map(|_| Fate::Keep).collect();
    for Edit { index, change } in edits {
        let i = index as usize;
        let Some(m) = part.get(i) else {
            return Err(format!(
                "edit names message {index} of a batch of {n} messages"
            ));
        };
        if !matches!(fates[i], Fate::Keep) {
            return Err(format!("edit names message {index} ({:?}) twice", m.id));
        }
        fates[i] = match change {
            Change::Drop(reason) => Fate::Drop(reason),
            Change::Update(u) => {
                // An upper bound first (cheap); the exact size only when
                // the bound is over the cap.
                if bound(m, &u) > max_output {
                    let mut new = m.clone();
                    let size = update(&mut new, cut_of(m, max_body).map(str::len), u.clone());
                    within(m, size, max_output)?;
                }
                Fate::Update(u)
            }
            Change::Replace(r) => {
                if r.id != m.id || r.chat_id != m.chat_id {
                    return Err(format!(
                        "replace changed message {:?} (chat {:?}) into {:?} (chat {:?})",
                        m.id, m.chat_id, r.id, r.chat_id
                    ));
                }
                let size = size(&r);
                within(m, size, max_output)?;
                Fate::Replaced(Box::new(v2::apply(m, cut_of(m, max_body), r)))
            }
        };
    }
    Ok(Checked { fates, max_body })
}

fn within(m: &domain::Message, size: usize, max_output: usize) -> Result<(), String> {
    match size > max_output {
        true => Err(format!(
            "replacement of {:?} is {size} bytes, over the {max_output}-byte cap",
            m.id
        )),
        false => Ok(()),
    }
}

impl Checked {
    /// Applies the answer to `part` in place: kept and changed messages
    /// stay in order (changed ones marked), dropped ones go.
    pub(super) fn commit(self, part: &mut Part) -> Applied {
        if self.fates.is_empty() {
            return Applied {
                kept: part.len() as u64,
                ..Applied::default()
            };
        }
        debug_assert_eq!(self.fates.len(), part.len());
        let mut fates = self.fates.into_iter();
        part.apply(|m| match fates.next() {
            None | Some(Fate::Keep) => Verdict::Kept,
            Some(Fate::Update(u)) => {
                let cut = cut_of(m, self.max_body).map(str::len);
                update(m, cut, u);
                Verdict::Changed
            }
            Some(Fate::Replaced(new)) => {
                *m = *new;
                Verdict::Changed
            }
            Some(Fate::Drop(_)) => Verdict::Dropped,
        })
    }

    /// Per message, what the plugin answered, for the developer kit's trace.
    pub(super) fn traced(&self, part: &[domain::Message]) -> Vec<TracedOutcome> {
        part.iter()
            .enumerate()
            .map(|(i, m)| {
                let (outcome, reason) = match self.fates.get(i) {
                    None | Some(Fate::Keep) => ("keep", None),
                    Some(Fate::Update(_) | Fate::Replaced(_)) => ("replace", None),
                    Some(Fate::Drop(r)) => ("drop", Some(failure(FailureKind::Error, r).reason)),
                };
                TracedOutcome {
                    id: m.id.clone(),
                    outcome,
                    reason,
                }
            })
            .collect()
    }
}

/// Applies an update to `m` in place; `cut` is the length of the body the
/// plugin saw when the host cut it. Returns the size of the result as the
/// plugin wrote it (a body it handed back as it saw it counted at that
/// length).
fn update(m: &mut domain::Message, cut: Option<usize>, u: Update) -> usize {
    let mut body_seen = None;
    if let Some(body) = u.body {
        let same_cut = cut.is_some_and(|c| {
            body.len() == c
                && m.body
                    .as_deref()
                    .is_some_and(|b| b.as_bytes().starts_with(body.as_bytes()))
        });
        match same_cut {
            // The cut body handed back unchanged: the full original stays.
            true => body_seen = cut,
            false => m.body = Some(body),
        }
    } else {
        body_seen = cut;
    }
    for t in u.add_tags {
        if !m.tags.contains(&t) {
            m.tags.push(t);
        }
    }
    for (k, v) in u.set_attributes {
        m.attributes.insert(k, v);
    }
    let body = body_seen.unwrap_or_else(|| m.body.as_ref().map_or(0, String::len));
    fields_size(m) + body
}

/// At least the size of `m` after `u`: everything added counted, nothing
/// it replaces taken off.
fn bound(m: &domain::Message, u: &Update) -> usize {
    let body = match &u.body {
        Some(b) => b.len(),
        None => m.body.as_ref().map_or(0, String::len),
    };
    fields_size(m)
        + body
        + u.add_tags.iter().map(String::len).sum::<usize>()
        + u.set_attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Rough size of what a `replace` asks the host to store (as 0.1 counts).
fn size(m: &Message) -> usize {
    m.id.len()
        + m.chat_id.len()
        + m.sender.len()
        + m.recipient.len()
        + m.author.as_ref().map_or(0, String::len)
        + m.body.as_ref().map_or(0, String::len)
        + m.kind.len()
        + m.quoted_id.as_ref().map_or(0, String::len)
        + m.tags.iter().map(String::len).sum::<usize>()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, body: &str) -> domain::Message {
        crate::plugins::wasm::test_message(id, body)
    }

    fn upd(body: Option<&str>, tags: &[&str], attrs: &[(&str, &str)]) -> Change {
        Change::Update(Update {
            body: body.map(str::to_owned),
            add_tags: tags.iter().map(|t| t.to_string()).collect(),
            set_attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn edit(index: u32, change: Change) -> Edit {
        Edit { index, change }
    }

    #[test]
    fn no_edits_keep_the_batch_as_is() {
        let part = Part::new(vec![msg("a", "x"), msg("b", "y")]);
        let mut next = part.clone();
        let a = apply(&part.msgs, Vec::new(), 64, 1024)
            .unwrap()
            .commit(&mut next);
        assert_eq!((a.kept, a.replaced, a.dropped), (2, 0, 0));
        assert_eq!(next, part);
    }

    #[test]
    fn updates_drops_and_replaces_apply_in_place() {
        let mut part = Part::new(vec![msg("a", "x"), msg("b", "y"), msg("c", "z")]);
        let mut r = v2::message(&part.msgs[2], 64);
        r.body = None;
        r.tags.clear();
        let edits = vec![
            edit(2, Change::Replace(r)),
            edit(0, upd(Some("X"), &["t", "new"], &[("k", "w"), ("j", "1")])),
            edit(1, Change::Drop("spam".into())),
        ];
        let a = apply(&part.msgs, edits, 64, 1024)
            .unwrap()
            .commit(&mut part);
        assert_eq!((a.kept, a.replaced, a.dropped), (0, 2, 1));
        assert_eq!(part.changed, [true, true]);
        let m = &part.msgs[0];
        assert_eq!(m.body.as_deref(), Some("X"));
        assert_eq!(m.tags, ["t", "new"], "tags already there are not repeated");
        assert_eq!(m.attributes["k"], "w");
        assert_eq!(m.attributes["j"], "1");
        assert_eq!(part.msgs[1].id, "c");
        assert_eq!(part.msgs[1].body, None);
        assert!(part.msgs[1].tags.is_empty());
    }

    #[test]
    fn a_cut_body_handed_back_keeps_the_original() {
        let part = Part::new(vec![msg("a", &"é".repeat(100)), msg("b", &"é".repeat(100))]);
        let seen = cut_of(&part.msgs[0], 51).unwrap().to_owned();
        assert_eq!(seen.len(), 50);
        let mut r = v2::message(&part.msgs[1], 51);
        assert!(r.truncated);
        r.tags.push("x".into());
        let edits = vec![
            edit(0, upd(Some(&seen), &["x"], &[])),
            edit(1, Change::Replace(r)),
        ];
        let mut next = part.clone();
        apply(&part.msgs, edits, 51, 1024)
            .unwrap()
            .commit(&mut next);
        assert_eq!(next.msgs[0].body, part.msgs[0].body);
        assert_eq!(next.msgs[1].body, part.msgs[1].body);
        let edits = vec![edit(0, upd(Some("cut"), &[], &[]))];
        let mut next = part.clone();
        apply(&part.msgs, edits, 51, 1024)
            .unwrap()
            .commit(&mut next);
        assert_eq!(next.msgs[0].body.as_deref(), Some("cut"));
    }

    #[test]
    fn broken_rules_are_faults() {
        let part = vec![msg("a", "x"), msg("b", "y")];
        let err = |edits| apply(&part, edits, 64, 256).err().expect("a fault");
        assert!(err(vec![edit(2, upd(None, &[], &[]))]).contains("message 2 of a batch of 2"));
        assert!(
            err(vec![
                edit(1, upd(None, &[], &[])),
                edit(1, Change::Drop("x".into()))
            ])
            .contains("twice")
        );
        let mut r = v2::message(&part[0], 64);
        r.id = "other".into();
        assert!(err(vec![edit(0, Change::Replace(r))]).contains("replace changed"));
        let mut r = v2::message(&part[0], 64);
        r.chat_id = "c2".into();
        assert!(err(vec![edit(0, Change::Replace(r))]).contains("replace changed"));
        let big = "x".repeat(300);
        assert!(err(vec![edit(0, upd(Some(&big), &[], &[]))]).contains("over the 256-byte cap"));
        assert!(
            err(vec![
                edit(0, Change::Drop(String::new())),
                edit(1, Change::Drop(String::new())),
                edit(0, Change::Drop(String::new())),
            ])
            .contains("3 edits for 2 messages")
        );
    }
}
