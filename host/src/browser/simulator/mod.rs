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

use super::{ClientError, ClientEvent, HistoryRequest, Provider, WhatsAppClient};
use crate::domain::{
    AddressBook, Chat, Message, MessageMark, PairingCode, PhoneNumber, QrCode, SessionId, now_ms,
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
    /// Edits, deletes, acks and reactions after ready (see [`changes`]);
    /// `null`: none.
    pub changes: Option<ChangesConfig>,
    /// People in the address book besides the private chats' (the members
    /// of the groups); see `contacts.rs`.
    pub contacts: u32,
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
            changes: None,
            contacts: 12,
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
/// Most extra contacts (`contacts`).
pub const MAX_CONTACTS: u32 = 100_000;
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
        if let Some(c) = &cfg.changes {
            c.check().map_err(ClientError::Unsupported)?;
        }
        if cfg.contacts > MAX_CONTACTS {
            return bad(format!("simulator.contacts must be at most {MAX_CONTACTS}"));
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

mod account;
pub mod changes;
mod contacts;
mod history;
#[cfg(test)]
mod tests;

pub use changes::ChangesConfig;

use account::h;
pub use account::{Account, pairing_code};
pub use history::CLOCK_MS;

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
            changes_sent: Mutex::new(Vec::new()),
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
    /// The planned changes sent so far: fetches show them.
    changes_sent: Mutex<Vec<changes::Step>>,
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
        Ok(self.with_changes(self.account.newest(index, limit)))
    }

    async fn fetch_messages_after(
        &self,
        chat: &Chat,
        limit: u32,
        mark: &MessageMark,
    ) -> Result<Vec<Message>, ClientError> {
        let index = self.fetch_gate(chat).await?;
        Ok(self.with_changes(self.account.newest_after(index, limit, mark)))
    }

    async fn fetch_messages_before(
        &self,
        chat: &Chat,
        req: &HistoryRequest,
    ) -> Result<Vec<Message>, ClientError> {
        let index = self.fetch_gate(chat).await?;
        Ok(self.account.older(index, req))
    }

    fn clock_ms(&self) -> i64 {
        history::CLOCK_MS
    }

    async fn list_contacts(&self) -> Result<AddressBook, ClientError> {
        self.latency().await?;
        Ok(self.account.address_book())
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
    if cfg.changes.is_some() {
        tokio::spawn(changes::run(client.clone(), events.clone()));
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
            changes: Default::default(),
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
