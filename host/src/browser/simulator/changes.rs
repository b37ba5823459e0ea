//! The simulated account's changes after ready (`simulator.changes`):
//! edits, deletes for everyone, acks and reactions of its seeded messages,
//! on a schedule that is a pure function of the configuration, so a test
//! can compute the exact final state ([`Account::changed`]).
//!
//! The targets are the seeded messages newest first, across chats: the
//! newest message of every chat (in chat order), then the second newest of
//! every chat, and so on. Edits take the first `edits` targets, revokes the
//! next `revokes`, acks the next `acks`, reactions the next `reactions`;
//! then `unreactions` take back the first reactions, `outOfOrder` sends two
//! edits of the next target (the newer first: it must win), and
//! `beforeMessage` reacts to (and edits) a new message of the first chat
//! before that message arrives. Each change's time is its message's time
//! plus one minute per step, so later steps are newer.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::account::Account;
use super::{ClientError, SimulatedClient};
use crate::browser::ClientEvent;
use crate::domain::{Message, MessageChange, MessageUpdate};

/// Most changes of one kind a simulated account makes.
pub const MAX_CHANGES: u32 = 100_000;

/// The `changes` object of the simulator options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ChangesConfig {
    /// Edits: the new text is `edited #<n>`.
    pub edits: u32,
    /// Deletes for everyone.
    pub revokes: u32,
    /// Acks: 3 (read), or 4 (played) for a message read already.
    pub acks: u32,
    /// Reactions, each by its own reactor (`4917<n, 8 digits>@c.us`).
    pub reactions: u32,
    /// Of the reactions, how many are taken back afterwards (the first).
    pub unreactions: u32,
    /// Two edits of one more message, the newer sent first.
    pub out_of_order: bool,
    /// A reaction (and an edit) of a new message of the first chat, sent
    /// before the message itself.
    pub before_message: bool,
    /// The first change comes this long after ready.
    pub after_ms: u64,
    /// Then one change every this many ms.
    pub every_ms: u64,
}

impl Default for ChangesConfig {
    fn default() -> Self {
        Self {
            edits: 0,
            revokes: 0,
            acks: 0,
            reactions: 0,
            unreactions: 0,
            out_of_order: false,
            before_message: false,
            after_ms: 500,
            every_ms: 20,
        }
    }
}

impl ChangesConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        for (name, n) in [
            ("edits", self.edits),
            ("revokes", self.revokes),
            ("acks", self.acks),
            ("reactions", self.reactions),
        ] {
            if n > MAX_CHANGES {
                return Err(format!(
                    "simulator.changes.{name} must be at most {MAX_CHANGES}"
                ));
            }
        }
        if self.unreactions > self.reactions {
            return Err("simulator.changes.unreactions must be at most reactions".into());
        }
        for (name, v) in [("afterMs", self.after_ms), ("everyMs", self.every_ms)] {
            if v > super::MAX_DELAY_MS {
                return Err(format!(
                    "simulator.changes.{name} must be at most {} (one day)",
                    super::MAX_DELAY_MS
                ));
            }
        }
        Ok(())
    }
}

/// One step of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Change(MessageUpdate),
    /// The new message of `beforeMessage`, after its changes.
    Message(Box<Message>),
}

const EMOJI: [&str; 6] = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
const MINUTE: i64 = 60_000;

impl Account {
    /// The `k`-th target (see the module doc): `(chat index, message index)`.
    fn targets(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let chats = self.cfg.chats;
        let most = (0..chats).map(|i| self.cfg.total_in(i)).max().unwrap_or(0);
        (0..most).flat_map(move |offset| {
            (0..chats).filter_map(move |i| {
                let n = self.cfg.total_in(i);
                (offset < n).then(|| (i, n - 1 - offset))
            })
        })
    }

    /// Every change the account makes after ready, in the order it sends
    /// them.
    pub fn change_plan(&self) -> Vec<Step> {
        let Some(c) = &self.cfg.changes else {
            return Vec::new();
        };
        let mut targets = self.targets();
        let mut steps = Vec::new();
        let mut step = |m: &Message, change: MessageChange| {
            steps.push(Step::Change(MessageUpdate {
                chat_id: m.chat_id.clone(),
                message_id: m.id.clone(),
                change,
            }))
        };
        let next = |targets: &mut dyn Iterator<Item = (u32, u32)>| {
            targets
                .next()
                .map(|(i, k)| self.message(i, &self.chat(i), k))
        };
        let mut n: i64 = 0;
        let mut at = |m: &Message| {
            n += 1;
            m.timestamp + n * MINUTE
        };
        for j in 0..c.edits {
            let Some(m) = next(&mut targets) else { break };
            let t = at(&m);
            step(
                &m,
                MessageChange::Edit {
                    body: Some(format!("edited #{j}")),
                    at: t,
                },
            );
        }
        for _ in 0..c.revokes {
            let Some(m) = next(&mut targets) else { break };
            let t = at(&m);
            step(&m, MessageChange::Revoke { at: t });
        }
        for _ in 0..c.acks {
            let Some(m) = next(&mut targets) else { break };
            let t = at(&m);
            let ack = if m.ack >= 3 { 4 } else { 3 };
            step(&m, MessageChange::Ack { ack, at: t });
        }
        let mut reacted = Vec::new();
        for j in 0..c.reactions {
            let Some(m) = next(&mut targets) else { break };
            let t = at(&m);
            let reactor = format!("4917{j:08}@c.us");
            step(
                &m,
                MessageChange::Reaction {
                    reactor: reactor.clone(),
                    emoji: Some(EMOJI[j as usize % EMOJI.len()].into()),
                    at: t,
                },
            );
            reacted.push((m, reactor));
        }
        for (m, reactor) in reacted.iter().take(c.unreactions as usize) {
            let t = at(m);
            step(
                m,
                MessageChange::Reaction {
                    reactor: reactor.clone(),
                    emoji: None,
                    at: t,
                },
            );
        }
        if c.out_of_order
            && let Some(m) = next(&mut targets)
        {
            let older = at(&m);
            let newer = at(&m);
            step(
                &m,
                MessageChange::Edit {
                    body: Some("out of order: newer".into()),
                    at: newer,
                },
            );
            step(
                &m,
                MessageChange::Edit {
                    body: Some("out of order: older".into()),
                    at: older,
                },
            );
        }
        if c.before_message && self.cfg.chats > 0 {
            let m = self.early_message();
            let t = at(&m);
            step(
                &m,
                MessageChange::Reaction {
                    reactor: "491799999999@c.us".into(),
                    emoji: Some("👀".into()),
                    at: t,
                },
            );
            let t = at(&m);
            step(
                &m,
                MessageChange::Edit {
                    body: Some("edited before it arrived".into()),
                    at: t,
                },
            );
            steps.push(Step::Message(Box::new(m)));
        }
        steps
    }

    /// The new message `beforeMessage` sends after its changes: in the
    /// first chat, a minute after its newest message.
    pub fn early_message(&self) -> Message {
        let chat = self.chat(0);
        let mut m = self.message(0, &chat, 0);
        m.id = format!(
            "false_{}_EARLY{:016X}",
            chat.id,
            super::h(self.cfg.seed, 98, 0)
        );
        m.from = chat.id.clone();
        m.to = self.me.clone();
        m.from_me = false;
        m.author = None;
        m.body = Some("a message its changes came before".into());
        m.kind = "chat".into();
        m.has_media = false;
        m.ack = 0;
        m.timestamp = chat.last_message_at.unwrap_or(0) + MINUTE;
        m
    }

    /// The newest `limit` messages of chat `index` as the phone shows them
    /// after every planned change: what the store must hold once the
    /// changes were applied (`keepRevokedBodies` off).
    pub fn changed(&self, index: u32, limit: u32) -> Vec<Message> {
        let plan = self.change_plan();
        let mut messages = self.newest(index, limit);
        apply_plan(&plan, &mut messages);
        messages
    }
}

/// Applies the planned changes of `messages` to them.
fn apply_plan(steps: &[Step], messages: &mut [Message]) {
    let mut by_id: HashMap<&str, Vec<&MessageChange>> = HashMap::new();
    for s in steps {
        if let Step::Change(u) = s {
            by_id
                .entry(u.message_id.as_str())
                .or_default()
                .push(&u.change);
        }
    }
    if by_id.is_empty() {
        return;
    }
    for m in messages {
        if let Some(changes) = by_id.get(m.id.as_str()) {
            for c in changes {
                m.apply_change(c, false);
            }
        }
    }
}

impl SimulatedClient {
    /// Fetched messages as the phone shows them now: with the changes
    /// sent so far.
    pub(super) fn with_changes(&self, mut messages: Vec<Message>) -> Vec<Message> {
        let sent = self.changes_sent.lock().unwrap_or_else(|p| p.into_inner());
        apply_plan(&sent, &mut messages);
        messages
    }
}

/// Sends the planned changes, `everyMs` apart, after `afterMs`.
pub(super) async fn run(
    client: std::sync::Arc<SimulatedClient>,
    events: mpsc::Sender<ClientEvent>,
) -> Result<(), ClientError> {
    let Some(cfg) = client.account.cfg.changes.clone() else {
        return Ok(());
    };
    let stop = client.stop.clone();
    let plan = client.account.change_plan();
    let mut wait = Duration::from_millis(cfg.after_ms);
    for step in plan {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_millis(cfg.every_ms);
        let ev = match &step {
            Step::Change(u) => ClientEvent::MessageChanged {
                update: Box::new(u.clone()),
            },
            Step::Message(m) => ClientEvent::Message { message: m.clone() },
        };
        client
            .changes_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(step);
        if events.send(ev).await.is_err() {
            return Err(ClientError::Disconnected("session ended".into()));
        }
    }
    Ok(())
}
