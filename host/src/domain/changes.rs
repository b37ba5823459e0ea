//! What happens to a message after it was stored: edits, deletions for
//! everyone (revokes), delivery receipts (acks) and reactions.
//!
//! A [`MessageChange`] carries its own time (`at`, ms), and a stored
//! message keeps, per field, the time of the change that set it
//! ([`ChangeState`]). Applying a change compares times, so the newest
//! change of a field wins whatever order the changes arrive in, and
//! applying one twice changes nothing: a set of changes gives one document,
//! applied in any order, any number of times. Ties (two changes of a field
//! at the same millisecond) are broken by the value, so they too end the
//! same way in every order.
//!
//! - **edit**: the body becomes the new text and `editedAt` the edit's
//!   time, if no newer edit is stored.
//! - **revoke** (deleted for everyone): the record stays, `revoked` is set
//!   and `revokedAt` holds the (newest) revoke's time; the body is removed
//!   unless the session keeps revoked bodies (`keepRevokedBodies`). An edit
//!   of a revoked message still moves `editedAt`, and its text is only kept
//!   where revoked bodies are.
//! - **ack**: the delivery state and `ackAt`, newest wins.
//! - **reaction**: one per reactor, newest wins; an empty (or absent)
//!   emoji takes the reaction back. A taken-back reaction is remembered in
//!   `reactionsRemoved` (reactor and time), so an older reaction that
//!   arrives late does not come back.

use serde::{Deserialize, Serialize};

use super::Message;

/// A reaction on a message: the latest one of its reactor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    /// Who reacted (a WhatsApp id such as `4915112345678@c.us`).
    pub reactor: String,
    pub emoji: String,
    /// When, ms.
    pub at: i64,
}

/// A reaction its reactor took back (kept so a late older reaction does
/// not reappear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemovedReaction {
    pub reactor: String,
    /// When the reaction was taken back, ms.
    pub at: i64,
}

/// What changes after the sync did to a stored message (all absent or
/// empty for a message nothing happened to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeState {
    /// When the body was last edited (the edit's own time), ms; `null`:
    /// never edited.
    #[serde(default)]
    pub edited_at: Option<i64>,
    /// Deleted for everyone. The record stays; its body is removed unless
    /// the session was created with `keepRevokedBodies`.
    #[serde(default)]
    pub revoked: bool,
    /// When it was deleted for everyone, ms.
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// When `ack` last changed after the sync, ms; `null`: `ack` is as the
    /// sync (or the live message) read it.
    #[serde(default)]
    pub ack_at: Option<i64>,
    /// The current reactions, one per reactor, by reactor.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// Reactions taken back, by reactor (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions_removed: Vec<RemovedReaction>,
}

impl ChangeState {
    pub fn is_empty(&self) -> bool {
        *self == ChangeState::default()
    }

    /// The stored reaction state of `reactor`: `(at, emoji)`, the emoji
    /// empty for a taken-back reaction.
    fn reaction_of(&self, reactor: &str) -> Option<(i64, &str)> {
        self.reactions
            .iter()
            .find(|r| r.reactor == reactor)
            .map(|r| (r.at, r.emoji.as_str()))
            .or_else(|| {
                self.reactions_removed
                    .iter()
                    .find(|r| r.reactor == reactor)
                    .map(|r| (r.at, ""))
            })
    }

    /// Sets `reactor`'s reaction (empty `emoji`: taken back), keeping both
    /// lists sorted by reactor so equal states encode equally.
    pub fn set_reaction(&mut self, reactor: &str, emoji: &str, at: i64) {
        self.reactions.retain(|r| r.reactor != reactor);
        self.reactions_removed.retain(|r| r.reactor != reactor);
        if emoji.is_empty() {
            let i = self
                .reactions_removed
                .partition_point(|r| r.reactor.as_str() < reactor);
            self.reactions_removed.insert(
                i,
                RemovedReaction {
                    reactor: reactor.to_owned(),
                    at,
                },
            );
        } else {
            let i = self
                .reactions
                .partition_point(|r| r.reactor.as_str() < reactor);
            self.reactions.insert(
                i,
                Reaction {
                    reactor: reactor.to_owned(),
                    emoji: emoji.to_owned(),
                    at,
                },
            );
        }
    }
}

/// One change of a stored message, with its own time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum MessageChange {
    /// The sender edited the text (or a media message's caption).
    Edit {
        /// The new text, after the session's plugins.
        body: Option<String>,
        /// When it was edited, ms.
        at: i64,
    },
    /// Deleted for everyone.
    Revoke {
        /// When, ms.
        at: i64,
    },
    /// The delivery state moved: -1 error, 0 pending, 1 server, 2 device,
    /// 3 read, 4 played.
    Ack { ack: i32, at: i64 },
    /// `reactor` reacted with `emoji`; an empty or absent emoji takes the
    /// reaction back.
    Reaction {
        reactor: String,
        #[serde(default)]
        emoji: Option<String>,
        at: i64,
    },
}

impl MessageChange {
    /// The change's own time, ms.
    pub fn at(&self) -> i64 {
        match self {
            MessageChange::Edit { at, .. }
            | MessageChange::Revoke { at }
            | MessageChange::Ack { at, .. }
            | MessageChange::Reaction { at, .. } => *at,
        }
    }

    /// `edit`, `revoke`, `ack` or `reaction`.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageChange::Edit { .. } => "edit",
            MessageChange::Revoke { .. } => "revoke",
            MessageChange::Ack { .. } => "ack",
            MessageChange::Reaction { .. } => "reaction",
        }
    }

    /// Which field the change sets: two changes of one slot compete (the
    /// newest wins), changes of different slots never do.
    pub fn slot(&self) -> String {
        match self {
            MessageChange::Reaction { reactor, .. } => format!("reaction:{reactor}"),
            other => other.kind().to_owned(),
        }
    }

    /// Whether `self` wins over `other` (same slot): later, or at the same
    /// time the greater value, so every order of a set picks one winner.
    pub fn beats(&self, other: &MessageChange) -> bool {
        let key = |c: &MessageChange| -> (i64, String) {
            match c {
                MessageChange::Edit { body, at } => (*at, body.clone().unwrap_or_default()),
                MessageChange::Revoke { at } => (*at, String::new()),
                MessageChange::Ack { ack, at } => (*at, format!("{:011}", i64::from(*ack) + 1)),
                MessageChange::Reaction { emoji, at, .. } => {
                    (*at, emoji.clone().unwrap_or_default())
                }
            }
        };
        key(self) > key(other)
    }
}

/// A change and the message it is for, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageUpdate {
    pub chat_id: String,
    pub message_id: String,
    pub change: MessageChange,
}

/// A change waiting for its message (not stored yet when the change came):
/// applied, then dropped, when the message is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingChange {
    pub update: MessageUpdate,
    /// The session's `keepRevokedBodies` when the change came.
    #[serde(default)]
    pub keep_revoked_bodies: bool,
    /// When it was kept, ms (pending changes expire; see the storage docs).
    pub received_at: i64,
}

/// What applying one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The stored message changed.
    Applied,
    /// Nothing to do: the change was applied before, or a newer one of the
    /// same field is stored.
    Unchanged,
    /// The message is not stored (yet): the change waits for it.
    Pending,
}

/// Keeps, of `pending` plus `new`, the changes that can still matter: per
/// slot the winner only (a loser would lose again when applied). Returns
/// whether `new` was kept.
pub fn keep_pending(pending: &mut Vec<PendingChange>, new: PendingChange) -> bool {
    let slot = new.update.change.slot();
    match pending.iter().position(|p| p.update.change.slot() == slot) {
        Some(i) if new.update.change.beats(&pending[i].update.change) => {
            pending[i] = new;
            true
        }
        Some(_) => false,
        None => {
            pending.push(new);
            true
        }
    }
}

impl Message {
    /// Applies `change` in place; returns whether the message changed.
    /// `keep_revoked_bodies`: a revoke leaves the body (the session's
    /// `keepRevokedBodies`).
    pub fn apply_change(&mut self, change: &MessageChange, keep_revoked_bodies: bool) -> bool {
        let before = (self.body.clone(), self.ack, self.changes.clone());
        match change {
            MessageChange::Edit { body, at } => {
                let current = MessageChange::Edit {
                    body: self.body.clone(),
                    at: self.changes.edited_at.unwrap_or(i64::MIN),
                };
                let newer = self.changes.edited_at.is_none() || change.beats(&current);
                if newer {
                    self.changes.edited_at = Some(*at);
                    if !self.changes.revoked || keep_revoked_bodies {
                        self.body = body.clone();
                    }
                }
            }
            MessageChange::Revoke { at } => {
                self.changes.revoked = true;
                self.changes.revoked_at = Some(self.changes.revoked_at.map_or(*at, |t| t.max(*at)));
                if !keep_revoked_bodies {
                    self.body = None;
                }
            }
            MessageChange::Ack { ack, at } => {
                let current = MessageChange::Ack {
                    ack: self.ack,
                    at: self.changes.ack_at.unwrap_or(i64::MIN),
                };
                if self.changes.ack_at.is_none() || change.beats(&current) {
                    self.ack = *ack;
                    self.changes.ack_at = Some(*at);
                }
            }
            MessageChange::Reaction { reactor, emoji, at } => {
                let emoji = emoji.as_deref().unwrap_or("");
                let newer = match self.changes.reaction_of(reactor) {
                    None => true,
                    Some((t, e)) => {
                        let current = MessageChange::Reaction {
                            reactor: reactor.clone(),
                            emoji: Some(e.to_owned()),
                            at: t,
                        };
                        change.beats(&current)
                    }
                };
                if newer {
                    self.changes.set_reaction(reactor, emoji, *at);
                }
            }
        }
        (self.body.clone(), self.ack, self.changes.clone()) != before
    }

    /// Folds what changed about `stored` after it was written into `self`,
    /// a fresh copy of the same message (a re-sync or a repeated live
    /// message): the newer value of each field wins, the fresh copy on a
    /// tie (it has been through the current plugins). A revoke is never
    /// undone, and a revoked message keeps the body the store kept
    /// (removed, unless the session keeps revoked bodies).
    pub fn merge_stored(&mut self, stored: &Message) {
        let s = &stored.changes;
        if s.edited_at > self.changes.edited_at {
            self.body = stored.body.clone();
            self.changes.edited_at = s.edited_at;
        }
        if s.revoked {
            self.changes.revoked = true;
            self.changes.revoked_at = self.changes.revoked_at.max(s.revoked_at);
            self.body = stored.body.clone();
        }
        if s.ack_at > self.changes.ack_at {
            self.ack = stored.ack;
            self.changes.ack_at = s.ack_at;
        }
        for r in &s.reactions {
            self.apply_change(
                &MessageChange::Reaction {
                    reactor: r.reactor.clone(),
                    emoji: Some(r.emoji.clone()),
                    at: r.at,
                },
                true,
            );
        }
        for r in &s.reactions_removed {
            self.apply_change(
                &MessageChange::Reaction {
                    reactor: r.reactor.clone(),
                    emoji: None,
                    at: r.at,
                },
                true,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message {
            id: "m1".into(),
            chat_id: "c@c.us".into(),
            from: "c@c.us".into(),
            to: "me@c.us".into(),
            author: None,
            body: Some("original".into()),
            kind: "chat".into(),
            timestamp: 1_000,
            from_me: false,
            has_media: false,
            ack: 1,
            quoted_id: None,
            tags: vec![],
            attributes: Default::default(),
            changes: Default::default(),
        }
    }

    fn edit(body: &str, at: i64) -> MessageChange {
        MessageChange::Edit {
            body: Some(body.into()),
            at,
        }
    }

    fn react(who: &str, emoji: Option<&str>, at: i64) -> MessageChange {
        MessageChange::Reaction {
            reactor: who.into(),
            emoji: emoji.map(str::to_owned),
            at,
        }
    }

    /// Every order of a set of changes, each applied twice, ends in one
    /// document.
    fn all_orders_agree(changes: &[MessageChange], keep: bool) -> Message {
        fn permutations(v: &[MessageChange]) -> Vec<Vec<MessageChange>> {
            if v.len() <= 1 {
                return vec![v.to_vec()];
            }
            let mut out = Vec::new();
            for i in 0..v.len() {
                let mut rest = v.to_vec();
                let x = rest.remove(i);
                for mut p in permutations(&rest) {
                    p.insert(0, x.clone());
                    out.push(p);
                }
            }
            out
        }
        let mut result: Option<Message> = None;
        for order in permutations(changes) {
            let mut m = msg();
            for c in order.iter().chain(order.iter()) {
                m.apply_change(c, keep);
            }
            match &result {
                None => result = Some(m),
                Some(r) => assert_eq!(&m, r, "order {order:?}"),
            }
        }
        result.expect("some order")
    }

    #[test]
    fn the_newest_edit_wins_in_any_order() {
        let m = all_orders_agree(&[edit("b", 20), edit("a", 10), edit("c", 15)], false);
        assert_eq!(m.body.as_deref(), Some("b"));
        assert_eq!(m.changes.edited_at, Some(20));
        // Two edits in one millisecond: the same winner every time.
        let m = all_orders_agree(&[edit("x", 7), edit("y", 7)], false);
        assert_eq!(m.body.as_deref(), Some("y"));
    }

    #[test]
    fn a_revoke_removes_the_body_unless_kept_and_sticks() {
        let changes = [
            edit("edited", 10),
            MessageChange::Revoke { at: 30 },
            edit("late edit", 20),
        ];
        let m = all_orders_agree(&changes, false);
        assert!(m.changes.revoked);
        assert_eq!(m.changes.revoked_at, Some(30));
        assert_eq!(m.body, None, "the body goes with a revoke");
        assert_eq!(m.changes.edited_at, Some(20));
        let kept = all_orders_agree(&changes, true);
        assert_eq!(kept.body.as_deref(), Some("late edit"), "the newest text");
        assert!(kept.changes.revoked);
    }

    #[test]
    fn acks_and_reactions_are_latest_wins_per_field() {
        let m = all_orders_agree(
            &[
                MessageChange::Ack { ack: 2, at: 5 },
                MessageChange::Ack { ack: 3, at: 9 },
                react("a@c.us", Some("👍"), 5),
                react("a@c.us", None, 8),
                react("b@c.us", Some("❤️"), 6),
                react("b@c.us", Some("😂"), 7),
            ],
            false,
        );
        assert_eq!((m.ack, m.changes.ack_at), (3, Some(9)));
        assert_eq!(
            m.changes.reactions,
            [Reaction {
                reactor: "b@c.us".into(),
                emoji: "😂".into(),
                at: 7
            }]
        );
        assert_eq!(
            m.changes.reactions_removed,
            [RemovedReaction {
                reactor: "a@c.us".into(),
                at: 8
            }]
        );
        // A reaction newer than its removal comes back.
        let mut again = m.clone();
        assert!(again.apply_change(&react("a@c.us", Some("🎉"), 12), false));
        assert_eq!(again.changes.reactions.len(), 2);
        assert!(again.changes.reactions_removed.is_empty());
        assert!(!again.apply_change(&react("a@c.us", Some("🎉"), 12), false));
    }

    #[test]
    fn a_fresh_copy_keeps_what_changed_after_the_sync() {
        let mut stored = msg();
        stored.apply_change(&edit("edited", 10), false);
        stored.apply_change(&MessageChange::Ack { ack: 3, at: 11 }, false);
        stored.apply_change(&react("a@c.us", Some("👍"), 12), false);
        // The provider's copy knows nothing of it (or less).
        let mut fresh = msg();
        fresh.tags = vec!["new-plugin".into()];
        fresh.merge_stored(&stored);
        assert_eq!(fresh.body.as_deref(), Some("edited"));
        assert_eq!((fresh.ack, fresh.changes.ack_at), (3, Some(11)));
        assert_eq!(fresh.changes.reactions.len(), 1);
        assert_eq!(
            fresh.tags,
            ["new-plugin"],
            "plugins' output is the fresh one"
        );
        // A provider that reports the edit itself: its copy wins the tie.
        let mut fresh = msg();
        fresh.apply_change(&edit("edited, redacted now", 10), false);
        fresh.merge_stored(&stored);
        assert_eq!(fresh.body.as_deref(), Some("edited, redacted now"));
        // A revoke sticks, with the body the store kept.
        let mut revoked = stored.clone();
        revoked.apply_change(&MessageChange::Revoke { at: 20 }, false);
        let mut fresh = msg();
        fresh.merge_stored(&revoked);
        assert!(fresh.changes.revoked && fresh.body.is_none());
    }

    #[test]
    fn pending_changes_keep_one_winner_per_field() {
        let p = |c: MessageChange| PendingChange {
            update: MessageUpdate {
                chat_id: "c".into(),
                message_id: "m".into(),
                change: c,
            },
            keep_revoked_bodies: false,
            received_at: 0,
        };
        let mut v = Vec::new();
        assert!(keep_pending(&mut v, p(edit("a", 5))));
        assert!(!keep_pending(&mut v, p(edit("old", 1))));
        assert!(keep_pending(&mut v, p(edit("b", 9))));
        assert!(keep_pending(&mut v, p(react("x", Some("👍"), 1))));
        assert!(keep_pending(&mut v, p(react("y", Some("👍"), 1))));
        assert!(!keep_pending(&mut v, p(react("y", Some("👍"), 1))));
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].update.change, edit("b", 9));
    }

    #[test]
    fn changes_use_their_wire_names() {
        let u = MessageUpdate {
            chat_id: "c@c.us".into(),
            message_id: "m1".into(),
            change: react("a@c.us", Some("👍"), 5),
        };
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"chatId": "c@c.us", "messageId": "m1",
                "change": {"kind": "reaction", "reactor": "a@c.us", "emoji": "👍", "at": 5}})
        );
        let m = serde_json::to_value(msg()).unwrap();
        for k in ["editedAt", "revoked", "revokedAt", "ackAt", "reactions"] {
            assert!(m.get(k).is_some(), "{k} in {m}");
        }
        assert!(m.get("reactionsRemoved").is_none());
        // Documents written before these fields existed still read.
        let old = serde_json::json!({"id": "m", "chatId": "c", "from": "f", "to": "t",
            "author": null, "body": "b", "type": "chat", "timestamp": 1, "fromMe": false,
            "hasMedia": false, "ack": 0, "quotedId": null});
        let back: Message = serde_json::from_value(old).unwrap();
        assert!(back.changes.is_empty());
    }
}
