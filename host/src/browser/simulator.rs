//! Simulator adapter: a deterministic fake WhatsApp account.
//!
//! Same seed, same account: chat ids, names, message ids, bodies and
//! timestamps are pure functions of `(seed, chat index, message index)`, so
//! tests and benchmarks can predict exactly what must be stored, and a chat's
//! newest `limit` messages are generated without materialising the rest
//! (a million-message account costs no memory until it is fetched).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ClientError, ClientEvent, Provider, WhatsAppClient};
use crate::domain::{
    Chat, Me, Message, MessageMark, PairingCode, PhoneNumber, QrCode, SessionId, now_ms,
};

/// Messages per chat: one number for every chat, or one per chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerChat {
    All(u32),
    Each(Vec<u32>),
}

/// The account's shape, taken from the create body's `simulator` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Number of chats.
    pub chats: u32,
    /// Messages in each chat; when a list is shorter than `chats`, it repeats.
    pub messages_per_chat: PerChat,
    /// QR rotation period.
    pub qr_every_ms: u64,
    /// Pairing code refresh period (a session with `login.phoneNumber`).
    pub pairing_code_every_ms: u64,
    /// The phone "scans" the QR code (or enters the pairing code) this long
    /// after the first one; `null`: never.
    pub scan_after_ms: Option<u64>,
    /// QR codes (or pairing codes) shown before giving up with
    /// `disconnected` (`qr_timeout`, `pairing_code_timeout`).
    pub max_qr_attempts: u32,
    /// Delay of every `list_chats` / `fetch_messages` call.
    pub fetch_latency_ms: u64,
    /// A live message every this many ms once ready; `null`: none.
    pub live_message_every_ms: Option<u64>,
    pub seed: u64,
    /// Makes the fetch of a chat fail: 1-based chat position → number of
    /// failures before it succeeds (`u32::MAX`: always).
    pub fail_fetch: BTreeMap<u32, u32>,
    /// Report `auth_failure` instead of authenticating.
    pub fail_auth: bool,
    /// Messages that arrived after the seeded ones: 1-based chat position →
    /// how many, each 45 s after the one before it, so the chat's
    /// `lastMessageAt` moves on and the seeded messages keep their ids and
    /// times. The same account with and without them is the same account
    /// before and after new messages came in.
    pub new_messages: BTreeMap<u32, u32>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            chats: 8,
            messages_per_chat: PerChat::Each(vec![42, 17, 120, 5, 64, 0, 33, 250]),
            qr_every_ms: 20_000,
            pairing_code_every_ms: 180_000,
            scan_after_ms: Some(3_000),
            max_qr_attempts: 6,
            fetch_latency_ms: 5,
            live_message_every_ms: None,
            seed: 1,
            fail_fetch: BTreeMap::new(),
            fail_auth: false,
            new_messages: BTreeMap::new(),
        }
    }
}

/// The largest account the simulator will pretend to be.
pub const MAX_CHATS: u32 = 1_000_000;
pub const MAX_MESSAGES_PER_CHAT: u32 = 1_000_000;
/// Longest timer a simulator option may set (one day): larger values would
/// overflow the runtime's clock arithmetic.
pub const MAX_DELAY_MS: u64 = 86_400_000;
/// Shortest live-message period: one message every 10 ms is already more
/// than any account sends; a shorter one would only load the store.
pub const MIN_LIVE_EVERY_MS: u64 = 10;
/// Most QR codes one login attempt shows.
pub const MAX_QR_ATTEMPTS: u32 = 1_000;
/// Longest `messagesPerChat` list.
pub const MAX_PER_CHAT_LIST: usize = 100_000;

impl SimulatorConfig {
    /// Reads and checks the `simulator` object of a create body.
    pub fn from_options(options: &serde_json::Value) -> Result<Self, ClientError> {
        let cfg: SimulatorConfig = match options.get("simulator") {
            None | Some(serde_json::Value::Null) => SimulatorConfig::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| ClientError::Unsupported(format!("simulator: {e}")))?,
        };
        if cfg.chats > MAX_CHATS {
            return Err(ClientError::Unsupported(format!(
                "simulator.chats must be at most {MAX_CHATS}"
            )));
        }
        let too_many = match &cfg.messages_per_chat {
            PerChat::All(n) => *n > MAX_MESSAGES_PER_CHAT,
            PerChat::Each(v) => v.iter().any(|n| *n > MAX_MESSAGES_PER_CHAT),
        };
        if too_many {
            return Err(ClientError::Unsupported(format!(
                "simulator.messagesPerChat must be at most {MAX_MESSAGES_PER_CHAT}"
            )));
        }
        let bad = |m: String| Err(ClientError::Unsupported(m));
        if let PerChat::Each(v) = &cfg.messages_per_chat
            && v.len() > MAX_PER_CHAT_LIST
        {
            return bad(format!(
                "simulator.messagesPerChat lists at most {MAX_PER_CHAT_LIST} counts"
            ));
        }
        for (name, v) in [
            ("qrEveryMs", cfg.qr_every_ms),
            ("pairingCodeEveryMs", cfg.pairing_code_every_ms),
        ] {
            if !(1..=MAX_DELAY_MS).contains(&v) {
                return bad(format!(
                    "simulator.{name} must be between 1 and {MAX_DELAY_MS}"
                ));
            }
        }
        for (name, v) in [
            ("scanAfterMs", cfg.scan_after_ms),
            ("fetchLatencyMs", Some(cfg.fetch_latency_ms)),
        ] {
            if v.is_some_and(|v| v > MAX_DELAY_MS) {
                return bad(format!(
                    "simulator.{name} must be at most {MAX_DELAY_MS} (one day)"
                ));
            }
        }
        if cfg
            .live_message_every_ms
            .is_some_and(|v| !(MIN_LIVE_EVERY_MS..=MAX_DELAY_MS).contains(&v))
        {
            return bad(format!(
                "simulator.liveMessageEveryMs must be between {MIN_LIVE_EVERY_MS} and {MAX_DELAY_MS}, or null"
            ));
        }
        if cfg
            .new_messages
            .values()
            .any(|n| *n > MAX_MESSAGES_PER_CHAT)
        {
            return bad(format!(
                "simulator.newMessages must be at most {MAX_MESSAGES_PER_CHAT} per chat"
            ));
        }
        if !(1..=MAX_QR_ATTEMPTS).contains(&cfg.max_qr_attempts) {
            return bad(format!(
                "simulator.maxQrAttempts must be between 1 and {MAX_QR_ATTEMPTS}"
            ));
        }
        Ok(cfg)
    }

    /// Messages of chat `index`, the new ones included.
    fn total_in(&self, index: u32) -> u32 {
        let extra = self.new_messages.get(&(index + 1)).copied().unwrap_or(0);
        self.messages_in(index).saturating_add(extra)
    }

    /// Seeded messages of chat `index`.
    fn messages_in(&self, index: u32) -> u32 {
        match &self.messages_per_chat {
            PerChat::All(n) => *n,
            PerChat::Each(v) if v.is_empty() => 0,
            PerChat::Each(v) => v[index as usize % v.len()],
        }
    }
}

/// SplitMix64: a fixed, well-known mixing function, so the same seed gives
/// the same account on every platform and every version of the host.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn h(seed: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed) ^ a) ^ b.wrapping_mul(0x2545_F491_4F6C_DD1D))
}

const BASE_MS: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const NAMES: [&str; 12] = [
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
const CODE_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";

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
    cfg: SimulatorConfig,
    me: String,
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
    fn timestamp(&self, index: u32, k: u32) -> i64 {
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
        let author = (chat.is_group && !from_me)
            .then(|| format!("49{:010}@c.us", h(r, 9, 9) % 10_000_000_000));
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

/// Starts simulator clients.
#[derive(Debug, Default)]
pub struct SimulatorProvider;

#[async_trait]
impl Provider for SimulatorProvider {
    fn name(&self) -> &'static str {
        "simulator"
    }

    fn validate(&self, options: &serde_json::Value) -> Result<(), ClientError> {
        SimulatorConfig::from_options(options).map(|_| ())
    }

    fn links_with_phone_number(&self) -> bool {
        true
    }

    async fn start(
        &self,
        _session: &SessionId,
        options: &serde_json::Value,
        restored: bool,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<Arc<dyn WhatsAppClient>, ClientError> {
        let cfg = SimulatorConfig::from_options(options)?;
        let phone = super::login_phone_number(options);
        let client = Arc::new(SimulatedClient {
            account: Account::new(cfg.clone()),
            failures: Mutex::new(cfg.fail_fetch.clone()),
            stop: CancellationToken::new(),
        });
        tokio::spawn(lifecycle(client.clone(), cfg, phone, restored, events));
        Ok(client)
    }
}

/// A running simulated client.
#[derive(Debug)]
pub struct SimulatedClient {
    account: Account,
    /// Remaining injected failures per 1-based chat position.
    failures: Mutex<BTreeMap<u32, u32>>,
    stop: CancellationToken,
}

impl SimulatedClient {
    async fn latency(&self) -> Result<(), ClientError> {
        if self.stop.is_cancelled() {
            return Err(ClientError::Disconnected("stopped".into()));
        }
        let ms = self.account.cfg.fetch_latency_ms;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(())
    }

    fn index_of(&self, chat: &Chat) -> Option<u32> {
        // Chat ids end with the index (`...<index>@c.us` / `-<index>@g.us`),
        // but the mapping is checked, not trusted.
        let digits: String = chat
            .id
            .split('@')
            .next()?
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        (0..digits.len()).find_map(|start| {
            let i: u32 = digits[start..].parse().ok()?;
            (i < self.account.cfg.chats && self.account.chat(i).id == chat.id).then_some(i)
        })
    }
}

#[async_trait]
impl WhatsAppClient for SimulatedClient {
    async fn list_chats(&self) -> Result<Vec<Chat>, ClientError> {
        self.latency().await?;
        let mut chats: Vec<Chat> = (0..self.account.cfg.chats)
            .map(|i| self.account.chat(i))
            .collect();
        if !self.account.cfg.new_messages.is_empty() {
            // New messages move their chats up (stable: the seeded order is
            // already newest first).
            chats.sort_by_key(|c| std::cmp::Reverse(c.last_message_at));
        }
        Ok(chats)
    }

    async fn fetch_messages(&self, chat: &Chat, limit: u32) -> Result<Vec<Message>, ClientError> {
        let index = self.fetch_gate(chat).await?;
        Ok(self.account.newest(index, limit))
    }

    async fn fetch_messages_after(
        &self,
        chat: &Chat,
        limit: u32,
        mark: &MessageMark,
    ) -> Result<Vec<Message>, ClientError> {
        let index = self.fetch_gate(chat).await?;
        Ok(self.account.newest_after(index, limit, mark))
    }

    async fn stop(&self, _logout: bool) {
        self.stop.cancel();
    }
}

impl SimulatedClient {
    /// What every message read goes through first: the latency, the chat's
    /// index, and the injected failures. Returns the index.
    async fn fetch_gate(&self, chat: &Chat) -> Result<u32, ClientError> {
        self.latency().await?;
        let index = self
            .index_of(chat)
            .ok_or_else(|| ClientError::Transient(format!("unknown chat {}", chat.id)))?;
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(left) = failures.get_mut(&(index + 1))
                && *left > 0
            {
                *left = left.saturating_sub(1);
                return Err(ClientError::Transient(format!(
                    "simulated fetch failure for chat {}",
                    index + 1
                )));
            }
        }
        Ok(index)
    }
}

/// Drives the login: QR codes (pairing codes, with a phone number) until
/// the simulated scan, then `authenticated` → `ready`, then live messages.
async fn lifecycle(
    client: Arc<SimulatedClient>,
    cfg: SimulatorConfig,
    phone: Option<PhoneNumber>,
    restored: bool,
    events: mpsc::Sender<ClientEvent>,
) {
    let stop = client.stop.clone();
    let send = |ev: ClientEvent| {
        let events = events.clone();
        async move { events.send(ev).await.is_ok() }
    };
    if !restored {
        let started = tokio::time::Instant::now();
        let scan_at = cfg
            .scan_after_ms
            .map(|ms| started + Duration::from_millis(ms));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if attempt > cfg.max_qr_attempts {
                let reason = if phone.is_some() {
                    "pairing_code_timeout"
                } else {
                    "qr_timeout"
                };
                send(ClientEvent::Disconnected {
                    reason: reason.into(),
                })
                .await;
                return;
            }
            let every = if phone.is_some() {
                cfg.pairing_code_every_ms
            } else {
                cfg.qr_every_ms
            };
            let ev = match &phone {
                Some(phone) => ClientEvent::PairingCode {
                    code: PairingCode {
                        code: pairing_code(cfg.seed, phone, attempt),
                        attempt,
                        expires_at: now_ms() + every as i64,
                    },
                },
                None => ClientEvent::Qr {
                    code: QrCode {
                        qr: format!(
                            "2@{:016x},{:016x},wasync-simulator,{attempt}",
                            h(cfg.seed, 77, attempt as u64),
                            h(cfg.seed, 78, now_ms() as u64)
                        ),
                        attempt,
                        expires_at: now_ms() + every as i64,
                    },
                },
            };
            if !send(ev).await {
                return;
            }
            let rotate = tokio::time::Instant::now() + Duration::from_millis(every);
            let wake = match scan_at {
                Some(s) if s <= rotate => s,
                _ => rotate,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if scan_at.is_some_and(|s| s <= tokio::time::Instant::now()) {
                break;
            }
        }
        if cfg.fail_auth {
            send(ClientEvent::AuthFailure {
                reason: "simulated auth failure".into(),
            })
            .await;
            return;
        }
    }
    if !send(ClientEvent::Authenticated).await {
        return;
    }
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
    }
    if !send(ClientEvent::Ready {
        me: Some(client.account.me()),
    })
    .await
    {
        return;
    }
    let Some(every) = cfg.live_message_every_ms else {
        // Stay connected (the sender open) until stopped.
        stop.cancelled().await;
        return;
    };
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(every)) => {}
        }
        if cfg.chats == 0 {
            continue;
        }
        let index = (n % cfg.chats as u64) as u32;
        let chat = client.account.chat(index);
        let message = Message {
            id: format!(
                "false_{}_LIVE{n:08}{:08X}",
                chat.id,
                h(cfg.seed, 99, n) as u32
            ),
            chat_id: chat.id.clone(),
            from: chat.id.clone(),
            to: client.account.me.clone(),
            author: None,
            body: Some(format!("live message {n}")),
            kind: "chat".into(),
            timestamp: now_ms(),
            from_me: false,
            has_media: false,
            ack: 0,
            quoted_id: None,
            tags: vec![],
            attributes: Default::default(),
        };
        n += 1;
        if !send(ClientEvent::Message {
            message: Box::new(message),
        })
        .await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(v: serde_json::Value) -> Account {
        Account::new(SimulatorConfig::from_options(&serde_json::json!({ "simulator": v })).unwrap())
    }

    /// Values that would overflow a timer, spin the store, or make a huge
    /// account are refused by name at create, never reaching a task.
    #[test]
    fn unbounded_options_are_refused_by_name() {
        let check = |v: serde_json::Value, name: &str| {
            let err = SimulatorConfig::from_options(&serde_json::json!({ "simulator": v }))
                .expect_err("refused");
            assert!(err.to_string().contains(name), "{name}: {err}");
        };
        check(serde_json::json!({"scanAfterMs": u64::MAX}), "scanAfterMs");
        check(serde_json::json!({"qrEveryMs": u64::MAX}), "qrEveryMs");
        check(serde_json::json!({"qrEveryMs": 0}), "qrEveryMs");
        check(
            serde_json::json!({"fetchLatencyMs": 1u64 << 62}),
            "fetchLatencyMs",
        );
        check(
            serde_json::json!({"liveMessageEveryMs": 1}),
            "liveMessageEveryMs",
        );
        check(
            serde_json::json!({"liveMessageEveryMs": 0}),
            "liveMessageEveryMs",
        );
        check(serde_json::json!({"maxQrAttempts": 0}), "maxQrAttempts");
        check(
            serde_json::json!({"maxQrAttempts": u32::MAX}),
            "maxQrAttempts",
        );
        check(serde_json::json!({"chats": MAX_CHATS + 1}), "chats");
        check(
            serde_json::json!({"messagesPerChat": vec![1; MAX_PER_CHAT_LIST + 1]}),
            "messagesPerChat",
        );
        assert!(
            SimulatorConfig::from_options(&serde_json::json!({"simulator": {
                "scanAfterMs": MAX_DELAY_MS, "qrEveryMs": MAX_DELAY_MS,
                "liveMessageEveryMs": MIN_LIVE_EVERY_MS, "maxQrAttempts": MAX_QR_ATTEMPTS
            }}))
            .is_ok(),
            "the bounds themselves are fine"
        );
    }

    #[test]
    fn same_seed_same_account() {
        let a =
            account(serde_json::json!({"chats": 3, "messagesPerChat": [50, 75, 100], "seed": 7}));
        let b =
            account(serde_json::json!({"chats": 3, "messagesPerChat": [50, 75, 100], "seed": 7}));
        let c =
            account(serde_json::json!({"chats": 3, "messagesPerChat": [50, 75, 100], "seed": 8}));
        assert_eq!(a.newest(2, 100), b.newest(2, 100));
        assert_ne!(a.chat(0).id, c.chat(0).id);
        assert_eq!(a.newest(0, 100).len(), 50);
        assert_eq!(a.newest(1, 100).len(), 75);
        assert_eq!(a.newest(2, 10).len(), 10);
        assert_eq!(a.expected_total(100), 225);
        assert_eq!(a.expected_total(60), 50 + 60 + 60);
    }

    #[test]
    fn ids_are_unique_and_messages_ordered() {
        let a = account(serde_json::json!({"chats": 300, "messagesPerChat": 40}));
        let mut chat_ids = std::collections::HashSet::new();
        let mut msg_ids = std::collections::HashSet::new();
        for i in 0..300 {
            let chat = a.chat(i);
            assert!(chat_ids.insert(chat.id.clone()), "duplicate chat id");
            let msgs = a.newest(i, 40);
            assert!(msgs.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
            assert_eq!(
                msgs.last().unwrap().timestamp,
                chat.last_message_at.unwrap()
            );
            for m in msgs {
                assert!(msg_ids.insert(m.id), "duplicate message id");
            }
        }
        // Chats come newest activity first.
        assert!(a.chat(0).last_message_at > a.chat(1).last_message_at);
    }

    #[test]
    fn bad_options_are_named() {
        for (opts, needle) in [
            (serde_json::json!({"simulator": {"chats": -1}}), "simulator"),
            (
                serde_json::json!({"simulator": {"bogus": 1}}),
                "unknown field",
            ),
            (
                serde_json::json!({"simulator": {"qrEveryMs": 0}}),
                "qrEveryMs",
            ),
            (
                serde_json::json!({"simulator": {"chats": 2_000_000}}),
                "chats",
            ),
        ] {
            let err = SimulatorConfig::from_options(&opts)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[tokio::test]
    async fn injected_failures_then_success() {
        let (tx, _rx) = mpsc::channel(8);
        let sid = SessionId::parse("t").unwrap();
        let opts = serde_json::json!({"simulator": {"chats": 2, "messagesPerChat": 3, "failFetch": {"2": 2}, "fetchLatencyMs": 0, "scanAfterMs": null}});
        let client = SimulatorProvider
            .start(&sid, &opts, false, tx)
            .await
            .unwrap();
        let chats = client.list_chats().await.unwrap();
        assert_eq!(client.fetch_messages(&chats[0], 10).await.unwrap().len(), 3);
        assert!(client.fetch_messages(&chats[1], 10).await.is_err());
        assert!(client.fetch_messages(&chats[1], 10).await.is_err());
        assert_eq!(client.fetch_messages(&chats[1], 10).await.unwrap().len(), 3);
    }

    #[test]
    fn pairing_codes_are_deterministic_and_look_like_whatsapps() {
        let phone = PhoneNumber::parse("+49 151 2345678").unwrap();
        let other = PhoneNumber::parse("+49 151 2345679").unwrap();
        let a = pairing_code(1, &phone, 1);
        assert_eq!(a, pairing_code(1, &phone, 1));
        assert_ne!(a, pairing_code(1, &phone, 2), "a refresh changes it");
        assert_ne!(a, pairing_code(2, &phone, 1));
        assert_ne!(a, pairing_code(1, &other, 1));
        assert_eq!(a.len(), 9);
        assert_eq!(&a[4..5], "-");
        assert!(
            a.bytes()
                .filter(|b| *b != b'-')
                .all(|b| CODE_ALPHABET.contains(&b))
        );
    }

    #[tokio::test]
    async fn a_phone_number_gets_pairing_codes_instead_of_qr_codes() {
        let (tx, mut rx) = mpsc::channel(8);
        let sid = SessionId::parse("t").unwrap();
        let opts = serde_json::json!({
            "login": {"phoneNumber": "+491512345678"},
            "simulator": {"pairingCodeEveryMs": 40, "scanAfterMs": 200, "maxQrAttempts": 50, "seed": 3}
        });
        let _client = SimulatorProvider
            .start(&sid, &opts, false, tx)
            .await
            .unwrap();
        let phone = PhoneNumber::parse("+491512345678").unwrap();
        let mut codes = Vec::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                ClientEvent::PairingCode { code } => codes.push(code),
                ClientEvent::Qr { .. } => panic!("no QR codes for a phone number"),
                ClientEvent::Ready { .. } => break,
                _ => {}
            }
        }
        assert!(codes.len() >= 2, "{codes:?}");
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(c.attempt, i as u32 + 1);
            assert_eq!(c.code, pairing_code(3, &phone, c.attempt));
        }
    }

    #[tokio::test]
    async fn unlinked_pairing_codes_time_out_by_name() {
        let (tx, mut rx) = mpsc::channel(8);
        let sid = SessionId::parse("t").unwrap();
        let opts = serde_json::json!({
            "login": {"phoneNumber": "+491512345678"},
            "simulator": {"pairingCodeEveryMs": 5, "scanAfterMs": null, "maxQrAttempts": 2}
        });
        let _client = SimulatorProvider
            .start(&sid, &opts, false, tx)
            .await
            .unwrap();
        let mut last = None;
        while let Some(ev) = rx.recv().await {
            last = Some(ev);
        }
        assert_eq!(
            last,
            Some(ClientEvent::Disconnected {
                reason: "pairing_code_timeout".into()
            })
        );
    }

    #[tokio::test]
    async fn login_lifecycle_rotates_qr_then_scans() {
        let (tx, mut rx) = mpsc::channel(8);
        let sid = SessionId::parse("t").unwrap();
        // Several rotation periods before the scan (and attempts to spare),
        // so a loaded machine that delays timers still shows two codes.
        let opts = serde_json::json!({"simulator": {
            "qrEveryMs": 40, "scanAfterMs": 200, "maxQrAttempts": 50
        }});
        let _client = SimulatorProvider
            .start(&sid, &opts, false, tx)
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(ev) = rx.recv().await {
            let ready = matches!(ev, ClientEvent::Ready { .. });
            seen.push(ev);
            if ready {
                break;
            }
        }
        let qrs = seen
            .iter()
            .filter(|e| matches!(e, ClientEvent::Qr { .. }))
            .count();
        assert!(qrs >= 2, "{seen:?}");
        assert!(matches!(seen[seen.len() - 2], ClientEvent::Authenticated));
    }
}
