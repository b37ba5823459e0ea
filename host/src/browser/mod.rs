//! The provider port: a WhatsApp account as the host sees it.
//!
//! A [`Provider`] starts one [`WhatsAppClient`] per session. The client
//! reports the login lifecycle (QR codes, or pairing codes for a session
//! that links with a phone number; authentication, readiness, live
//! messages, disconnection) as [`ClientEvent`]s on a channel the session
//! actor owns, and answers the sync's two questions: which chats exist, and
//! what are a chat's newest messages.
//!
//! Adapters: [`simulator`] (a deterministic fake account; the default) and
//! `webdriver` (WhatsApp Web in Chromium). The webdriver adapter keeps its
//! login in a browser profile; [`vault`] is the port where that login is
//! saved so another host can take the session over.

pub mod simulator;
pub mod vault;
pub mod webdriver;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::domain::{
    AddressBook, Chat, Me, Message, MessageMark, MessageUpdate, PairingCode, PhoneNumber, QrCode,
    SessionId,
};

/// Errors at the provider boundary.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// A call that may work if retried (network, page busy, timeout).
    #[error("provider call failed: {0}")]
    Transient(String),
    /// The client is gone (browser closed, session stopped).
    #[error("provider disconnected: {0}")]
    Disconnected(String),
    /// The provider cannot be used as configured (unknown name, bad options,
    /// a page module missing).
    #[error("{0}")]
    Unsupported(String),
}

/// What a client reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A new QR code to scan (repeated as the code rotates).
    Qr { code: QrCode },
    /// A new pairing code to type on the phone, for a session that links
    /// with a phone number (repeated as the code is refreshed).
    PairingCode { code: PairingCode },
    /// The phone scanned the code (or a stored login was accepted).
    Authenticated,
    /// The login was refused.
    AuthFailure { reason: String },
    /// The account is loaded: chats and messages can be read.
    Ready { me: Option<Me> },
    /// A message arrived after the client became ready.
    Message { message: Box<Message> },
    /// A message changed after the client became ready: edited, deleted
    /// for everyone, a receipt, a reaction. The change carries its own
    /// time; its message may not be stored (yet).
    MessageChanged { update: Box<MessageUpdate> },
    /// The client lost its connection or was logged out.
    Disconnected { reason: String },
}

/// What a deepen reads of one chat ([`WhatsAppClient::fetch_messages_before`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    /// At most this many messages.
    pub limit: u32,
    /// Only messages older than this (the chat's oldest stored message, or
    /// the `before` of the request).
    pub before: MessageMark,
    /// Stop at messages older than this (ms; `maxAgeDays`).
    pub not_before: Option<i64>,
}

/// One running WhatsApp client.
#[async_trait]
pub trait WhatsAppClient: Send + Sync {
    /// Every chat of the account, newest activity first.
    async fn list_chats(&self) -> Result<Vec<Chat>, ClientError>;

    /// The newest `limit` messages of `chat`, oldest first.
    async fn fetch_messages(&self, chat: &Chat, limit: u32) -> Result<Vec<Message>, ClientError>;

    /// Of the newest `limit` messages of `chat`, those newer than `mark`
    /// ([`MessageMark::is_new`]), oldest first: an incremental sync's read.
    /// The default reads the newest `limit` and filters; an adapter that
    /// reads newest first stops as soon as it reaches a known message, so
    /// an unchanged chat costs one short read.
    async fn fetch_messages_after(
        &self,
        chat: &Chat,
        limit: u32,
        mark: &MessageMark,
    ) -> Result<Vec<Message>, ClientError> {
        let mut messages = self.fetch_messages(chat, limit).await?;
        messages.retain(|m| mark.is_new(m));
        Ok(messages)
    }

    /// Up to `req.limit` messages of `chat` older than `req.before`
    /// ([`MessageMark::is_older`]), the newest of those, oldest first; none
    /// older than `req.not_before`. Fewer only where the chat's history
    /// starts (or reaches `not_before`): a deepen's read. WhatsApp Web
    /// loads earlier messages a page at a time (`loadEarlierMsgs`), so an
    /// adapter loads until it has enough or the history ends.
    async fn fetch_messages_before(
        &self,
        chat: &Chat,
        req: &HistoryRequest,
    ) -> Result<Vec<Message>, ClientError> {
        let _ = (chat, req);
        Err(ClientError::Unsupported(
            "this provider cannot load earlier messages".into(),
        ))
    }

    /// The account's clock (ms), against which `maxAgeDays` is measured:
    /// the wall clock, except for a simulated account, which lives at a
    /// fixed time so its tests stay deterministic.
    fn clock_ms(&self) -> i64 {
        crate::domain::now_ms()
    }

    /// The account's contacts and the members of its group chats: the
    /// contacts phase of a sync, one call before the chats. The default is
    /// an empty book, for a provider that knows no contacts.
    async fn list_contacts(&self) -> Result<AddressBook, ClientError> {
        Ok(AddressBook::default())
    }

    /// Stops the client; with `logout` the stored login is dropped too, so
    /// the next start asks for a QR code again.
    async fn stop(&self, logout: bool);

    /// Stops the client without writing anything that outlives it (no
    /// login saved for other hosts): the session's lease passed to another
    /// host, which owns the session and its login now.
    async fn abandon(&self) {
        self.stop(false).await;
    }
}

/// Starts clients of one kind.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Name used in the create body's `provider` field.
    fn name(&self) -> &'static str;

    /// Checks the provider-specific options of a create body before the
    /// session exists, so a bad option is a 400, not a failed session.
    fn validate(&self, options: &serde_json::Value) -> Result<(), ClientError>;

    /// Whether the provider can link an account with a pairing code
    /// (`login.phoneNumber` in the create body) instead of a QR code.
    fn links_with_phone_number(&self) -> bool {
        false
    }

    /// Starts a client for `session`. Lifecycle events go to `events`.
    /// `restored` is true when the host restarts a session it ran before,
    /// so providers that keep a login (a browser profile) may reuse it.
    async fn start(
        &self,
        session: &SessionId,
        options: &serde_json::Value,
        restored: bool,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<Arc<dyn WhatsAppClient>, ClientError>;

    /// Drops the stored login of `session` while no client of it runs
    /// (`DELETE ?logout=true` of a session that is not running), so its next
    /// start asks for a QR code. A provider that keeps no login between
    /// clients has nothing to drop.
    async fn forget_login(&self, session: &SessionId) -> Result<(), ClientError> {
        let _ = session;
        Ok(())
    }
}

/// The phone number a create body asks to link with (`login.phoneNumber`,
/// already checked by the gateway); `None`: link with a QR code.
pub fn login_phone_number(options: &serde_json::Value) -> Option<PhoneNumber> {
    options
        .get("login")
        .and_then(|l| l.get("phoneNumber"))
        .and_then(|p| p.as_str())
        .and_then(|p| PhoneNumber::parse(p).ok())
}

/// The providers this host offers, by name.
#[derive(Default)]
pub struct Providers {
    by_name: HashMap<&'static str, Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Providers {
    pub fn with(mut self, p: Arc<dyn Provider>) -> Self {
        self.by_name.insert(p.name(), p);
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.by_name.keys().copied().collect();
        v.sort();
        v
    }
}
