//! The deterministic account: every chat, message and code a pure
//! function of the seed.

use super::SimulatorConfig;
use crate::domain::{Chat, Me, Message, MessageMark, PairingCode, PhoneNumber};

/// SplitMix64: a fixed, well-known mixing function, so the same seed gives
/// the same account on every platform and every version of the host.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn h(seed: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed) ^ a) ^ b.wrapping_mul(0x2545_F491_4F6C_DD1D))
}

pub(super) const BASE_MS: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
pub(super) const NAMES: [&str; 12] = [
    "Ana", "Bruno", "Chen", "Dara", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Julia", "Kofi",
    "Lena",
];
const GROUPS: [&str; 6] = [
    "Family",
    "Book club",
    "Ops on-call",
    "Climbing",
    "Neighbours",
    "Launch team",
];
const WORDS: [&str; 24] = [
    "ok", "see", "you", "tomorrow", "the", "report", "is", "ready", "call", "me", "at", "lunch",
    "thanks", "great", "news", "meeting", "moved", "to", "friday", "please", "check", "invoice",
    "photo", "later",
];

/// The characters of a pairing code: digits and capitals without the ones
/// a person mixes up (0/O, 1/I) or reads as a word (U), 32 in all.
pub(super) const CODE_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";

/// Pairing code `attempt` for `phone`: a pure function of the seed, the
/// number and the attempt, so a test can predict it.
pub fn pairing_code(seed: u64, phone: &PhoneNumber, attempt: u32) -> String {
    let number = phone.digits().parse::<u64>().unwrap_or(0);
    let mut r = h(seed ^ number, 79, attempt as u64);
    let mut raw = String::with_capacity(8);
    for _ in 0..8 {
        raw.push(CODE_ALPHABET[(r % 32) as usize] as char);
        r /= 32;
    }
    PairingCode::display(&raw)
}

/// The deterministic account behind a simulator session.
#[derive(Debug, Clone)]
pub struct Account {
    pub(super) cfg: SimulatorConfig,
    pub(super) me: String,
}

impl Account {
    pub fn new(cfg: SimulatorConfig) -> Self {
        let me = format!("4915{:08}@c.us", h(cfg.seed, 0, 0) % 100_000_000);
        Self { cfg, me }
    }

    pub fn me(&self) -> Me {
        Me {
            id: self.me.clone(),
            push_name: Some("Simulated account".into()),
        }
    }

    /// Chat at 0-based `index`; chats come newest activity first.
    pub fn chat(&self, index: u32) -> Chat {
        let seed = self.cfg.seed;
        let r = h(seed, 1, index as u64);
        let is_group = r.is_multiple_of(4);
        let id = if is_group {
            format!("1203630{:011}-{index}@g.us", r % 100_000_000_000)
        } else {
            format!("49{:010}{index}@c.us", r % 10_000_000_000)
        };
        let name = if is_group {
            GROUPS[(r >> 8) as usize % GROUPS.len()].to_string()
        } else {
            NAMES[(r >> 8) as usize % NAMES.len()].to_string()
        };
        let n = self.cfg.total_in(index);
        Chat {
            id,
            name: Some(format!("{name} {}", index + 1)),
            is_group,
            unread_count: ((r >> 16) % 5) as u32,
            archived: (r >> 20).is_multiple_of(7),
            pinned: index < 2 && (r >> 24).is_multiple_of(2),
            last_message_at: (n > 0).then(|| self.timestamp(index, n - 1)),
        }
    }

    /// When the newest seeded message of chat `index` was sent.
    fn last_message_at(&self, index: u32) -> i64 {
        BASE_MS - index as i64 * 60_000
    }

    /// When message `k` of chat `index` was sent: 45 s apart, the newest
    /// seeded one at [`Account::last_message_at`], new ones after it.
    pub(super) fn timestamp(&self, index: u32, k: u32) -> i64 {
        let newest_seeded = i64::from(self.cfg.messages_in(index)) - 1;
        self.last_message_at(index) + (i64::from(k) - newest_seeded) * 45_000
    }

    /// Message `k` (0 = oldest) of chat `index`.
    pub fn message(&self, index: u32, chat: &Chat, k: u32) -> Message {
        let r = h(self.cfg.seed, 2 + index as u64, k as u64);
        let from_me = r.is_multiple_of(3);
        let words = 3 + (r >> 8) % 9;
        let mut body = String::new();
        for w in 0..words {
            if w > 0 {
                body.push(' ');
            }
            body.push_str(WORDS[(h(r, w, 7) % WORDS.len() as u64) as usize]);
        }
        let has_media = (r >> 12).is_multiple_of(17);
        // A group member of the address book (by `@lid` or number), or,
        // without one, a stranger.
        let author = (chat.is_group && !from_me).then(|| {
            self.group_author(index, r)
                .unwrap_or_else(|| format!("49{:010}@c.us", h(r, 9, 9) % 10_000_000_000))
        });
        Message {
            id: format!(
                "{}_{}_{:016X}",
                from_me,
                chat.id,
                h(self.cfg.seed, index as u64, k as u64)
            ),
            chat_id: chat.id.clone(),
            from: if from_me {
                self.me.clone()
            } else {
                chat.id.clone()
            },
            to: if from_me {
                chat.id.clone()
            } else {
                self.me.clone()
            },
            author,
            body: Some(body),
            kind: if has_media {
                "image".into()
            } else {
                "chat".into()
            },
            timestamp: self.timestamp(index, k),
            from_me,
            has_media,
            ack: if from_me { 3 } else { 0 },
            quoted_id: None,
            tags: vec![],
            attributes: Default::default(),
            changes: Default::default(),
        }
    }

    /// The newest `limit` messages of chat `index`, oldest first.
    pub fn newest(&self, index: u32, limit: u32) -> Vec<Message> {
        let chat = self.chat(index);
        let n = self.cfg.total_in(index);
        let from = n.saturating_sub(limit);
        (from..n).map(|k| self.message(index, &chat, k)).collect()
    }

    /// Of the newest `limit` messages of chat `index`, those newer than
    /// `mark`, oldest first: generated newest first, stopping at the first
    /// one older than the mark, so an unchanged chat generates one message.
    pub fn newest_after(&self, index: u32, limit: u32, mark: &MessageMark) -> Vec<Message> {
        let chat = self.chat(index);
        let n = self.cfg.total_in(index);
        let mut out = Vec::new();
        for k in (n.saturating_sub(limit)..n).rev() {
            let m = self.message(index, &chat, k);
            if m.timestamp < mark.timestamp {
                break;
            }
            if mark.is_new(&m) {
                out.push(m);
            }
        }
        out.reverse();
        out
    }

    /// Total messages a sync with `limit` per chat stores.
    pub fn expected_total(&self, limit: u32) -> u64 {
        (0..self.cfg.chats)
            .map(|i| self.cfg.total_in(i).min(limit) as u64)
            .sum()
    }
}
