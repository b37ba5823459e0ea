//! The task that owns one session's browser: it answers the port's
//! [`Command`]s, drains the page's events every `pollMs` and turns them
//! into [`ClientEvent`]s, saves the login on schedule, and on stop closes
//! the browser and cleans up after a logout.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::browser::Browser;
use super::client::Command;
use super::error::WebDriverError;
use super::login::Logins;
use super::page::{Drained, PageChange, PageEvent, PageMessage};
use super::settings::WebDriverOptions;
use crate::browser::{ClientError, ClientEvent};
use crate::domain::{Chat, Me, Message, MessageMark, PairingCode, PhoneNumber, QrCode, now_ms};

/// Consecutive failed polls after which the browser counts as gone.
const MAX_POLL_FAILURES: u32 = 8;

/// How long a pairing code is announced as valid (`expiresAt`). The page
/// shows no expiry; WhatsApp replaces a code within a few minutes, and the
/// host reports each new one as it appears.
const PAIRING_CODE_TTL_MS: i64 = 180_000;

/// The task that owns one session's browser.
pub(super) struct SessionTask {
    browser: Option<Browser>,
    opts: WebDriverOptions,
    profile: PathBuf,
    events: mpsc::Sender<ClientEvent>,
    /// Last page event handled.
    ack: u64,
    /// Bridge instance the `ack` belongs to (a reload starts a new one).
    instance: Option<String>,
    qr_attempts: u32,
    /// Link with a pairing code for this number instead of the QR code.
    phone: Option<PhoneNumber>,
    /// The bridge instance the phone login was started in (a reload
    /// starts a new one, which is asked again).
    pairing_instance: Option<String>,
    code_attempts: u32,
    authenticated: bool,
    ready: bool,
    logged_out: bool,
    /// `disconnected` was reported: no more polling, calls fail.
    dead: bool,
    failures: u32,
    not_loaded_since: Option<Instant>,
    /// The page has loaded at least once (a proxy failure after that is
    /// not the reason it never came up).
    loaded_once: bool,
    /// The session's link to the login vault, when there is one.
    logins: Option<Logins>,
    save_every: Duration,
    /// When the login is saved next; set once the session is ready.
    next_save: Option<Instant>,
    login_saves: u32,
}

/// Sleeps until `at`; forever when `None` (a `select!` branch that is off).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl SessionTask {
    /// A task for a launched browser; nothing has been polled yet.
    pub(super) fn new(
        browser: Browser,
        opts: WebDriverOptions,
        profile: PathBuf,
        events: mpsc::Sender<ClientEvent>,
        logins: Option<Logins>,
        save_every: Duration,
        phone: Option<PhoneNumber>,
    ) -> Self {
        Self {
            browser: Some(browser),
            opts,
            profile,
            events,
            ack: 0,
            instance: None,
            qr_attempts: 0,
            phone,
            pairing_instance: None,
            code_attempts: 0,
            authenticated: false,
            ready: false,
            logged_out: false,
            dead: false,
            failures: 0,
            not_loaded_since: None,
            loaded_once: false,
            logins,
            save_every,
            next_save: None,
            login_saves: 0,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.opts.poll_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => {
                        self.shutdown(false).await;
                        return;
                    }
                    Some(Command::Stop { logout, save, reply }) => {
                        if !save {
                            self.logins = None;
                        }
                        self.shutdown(logout).await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(Command::Chats(reply)) => {
                        let _ = reply.send(self.chats().await);
                    }
                    Some(Command::Contacts(reply)) => {
                        let _ = reply.send(match self.browser() {
                            Ok(b) => b.contacts().await,
                            Err(e) => Err(e),
                        });
                    }
                    Some(Command::Messages { chat_id, limit, after, reply }) => {
                        let _ = reply.send(self.messages(&chat_id, limit, after.as_ref()).await);
                    }
                    Some(Command::Earlier { chat_id, req, reply }) => {
                        let earlier = match self.browser() {
                            Ok(b) => b.earlier(&chat_id, &req).await,
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(earlier);
                    }
                },
                _ = sleep_until(self.next_save), if self.next_save.is_some() && !self.dead => {
                    self.save_login().await;
                }
                _ = tick.tick(), if !self.dead => {
                    if let Err(reason) = self.poll().await {
                        self.dead = true;
                        tracing::info!(%reason, profile = %self.profile.display(), "browser session disconnected");
                        let _ = self.events.send(ClientEvent::Disconnected { reason }).await;
                    }
                }
            }
        }
    }

    /// Saves the login now and schedules the next periodic save.
    async fn save_login(&mut self) {
        if let Some(l) = &self.logins {
            l.save(if self.login_saves == 0 {
                "ready"
            } else {
                "periodic"
            })
            .await;
        }
        self.login_saves += 1;
        self.next_save = Some(Instant::now() + self.save_every);
    }

    fn browser(&self) -> Result<&Browser, ClientError> {
        match &self.browser {
            Some(b) if !self.dead => Ok(b),
            _ => Err(ClientError::Disconnected("browser session ended".into())),
        }
    }

    async fn chats(&self) -> Result<Vec<Chat>, ClientError> {
        self.browser()?.chats().await
    }

    async fn messages(
        &self,
        chat_id: &str,
        limit: u32,
        after: Option<&MessageMark>,
    ) -> Result<Vec<Message>, ClientError> {
        self.browser()?.messages(chat_id, limit, after).await
    }

    /// Drains the page once. `Err(reason)`: the session is over.
    async fn poll(&mut self) -> Result<(), String> {
        let Some(b) = &self.browser else {
            return Err("no browser".into());
        };
        if !self.loaded_once
            && let Some(why) = b.proxy_failure()
        {
            // Named at once, rather than after `pageLoadTimeoutMs` of a
            // page that cannot load.
            return Err(why);
        }
        let r = b.drain(self.ack).await;
        let v = match r {
            Ok(Value::Null) => {
                // A (re)loaded page: the bridge starts a new queue.
                match b.inject().await {
                    Ok(()) => self.failures = 0,
                    Err(e) => return self.failed(e),
                }
                return Ok(());
            }
            Ok(v) => v,
            Err(e) => return self.failed(e),
        };
        self.failures = 0;
        let d: Drained =
            serde_json::from_value(v).map_err(|e| format!("unreadable page events: {e}"))?;
        if self.instance.as_deref() != Some(&d.instance) {
            self.instance = Some(d.instance.clone());
            self.ack = 0;
        }
        if let Some(e) = d.error {
            return Err(e);
        }
        if !d.loaded {
            let since = *self.not_loaded_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(self.opts.page_load_timeout_ms) {
                return Err(format!(
                    "the page did not load: window.Debug.VERSION missing after {} ms",
                    self.opts.page_load_timeout_ms
                ));
            }
        } else {
            self.not_loaded_since = None;
            self.loaded_once = true;
            // A newly loaded page links with the phone number, once per
            // bridge instance; a failed start is tried at the next poll.
            if let Some(phone) = self.phone_login_due(&d.instance) {
                match b.link_with_phone(&phone).await {
                    Ok(()) => self.pairing_instance = Some(d.instance.clone()),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not start the phone number login yet")
                    }
                }
            }
        }
        for ev in d.events {
            if ev.seq <= self.ack {
                continue;
            }
            self.ack = ev.seq;
            self.handle(ev).await?;
        }
        Ok(())
    }

    /// The number to link with, when this bridge instance was not asked yet.
    fn phone_login_due(&self, instance: &str) -> Option<String> {
        let phone = self.phone.as_ref()?;
        let asked = self.pairing_instance.as_deref() == Some(instance);
        (!self.authenticated && !asked).then(|| phone.as_str().to_owned())
    }

    fn failed(&mut self, e: WebDriverError) -> Result<(), String> {
        self.failures += 1;
        tracing::debug!(error = %e, failures = self.failures, "poll failed");
        match &e {
            WebDriverError::Gone(_) if self.failures >= 3 => Err(e.to_string()),
            _ if self.failures >= MAX_POLL_FAILURES => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    async fn send(&self, ev: ClientEvent) -> Result<(), String> {
        self.events
            .send(ev)
            .await
            .map_err(|_| "session ended".to_owned())
    }

    async fn handle(&mut self, ev: PageEvent) -> Result<(), String> {
        match ev.kind.as_str() {
            "qr" => {
                // With a phone number the page still shows a QR code until
                // the bridge opens the phone login: not the session's prompt.
                if self.authenticated || self.phone.is_some() {
                    return Ok(());
                }
                let Some(qr) = ev.data.get("qr").and_then(Value::as_str) else {
                    return Ok(());
                };
                self.qr_attempts += 1;
                if self.qr_attempts > self.opts.max_qr_attempts {
                    return Err("qr_timeout".into());
                }
                let code = QrCode {
                    qr: qr.to_owned(),
                    attempt: self.qr_attempts,
                    expires_at: now_ms() + self.opts.qr_ttl_ms as i64,
                };
                self.send(ClientEvent::Qr { code }).await
            }
            "pairing_code" => {
                if self.authenticated || self.phone.is_none() {
                    return Ok(());
                }
                let Some(raw) = ev.data.get("code").and_then(Value::as_str) else {
                    return Ok(());
                };
                self.code_attempts += 1;
                if self.code_attempts > self.opts.max_qr_attempts {
                    return Err("pairing_code_timeout".into());
                }
                let code = PairingCode {
                    code: PairingCode::display(raw),
                    attempt: self.code_attempts,
                    expires_at: now_ms() + PAIRING_CODE_TTL_MS,
                };
                self.send(ClientEvent::PairingCode { code }).await
            }
            "authenticated" => {
                if !self.authenticated {
                    self.authenticated = true;
                    self.send(ClientEvent::Authenticated).await?;
                }
                Ok(())
            }
            "ready" => {
                if !self.authenticated {
                    self.authenticated = true;
                    self.send(ClientEvent::Authenticated).await?;
                }
                if !self.ready {
                    self.ready = true;
                    // The first save right away: until it lands, a host that
                    // takes over would need a QR code.
                    if self.logins.is_some() {
                        self.next_save = Some(Instant::now());
                    }
                    let me: Option<Me> = ev
                        .data
                        .get("me")
                        .cloned()
                        .and_then(|m| serde_json::from_value(m).ok());
                    self.send(ClientEvent::Ready { me }).await?;
                }
                Ok(())
            }
            "state" => {
                let state = ev.data.get("state").and_then(Value::as_str).unwrap_or("");
                let fine = ["CONNECTED", "OPENING", "PAIRING", "TIMEOUT"].contains(&state);
                if self.ready && !fine {
                    return Err(if state.is_empty() {
                        "connection lost".into()
                    } else {
                        state.to_owned()
                    });
                }
                Ok(())
            }
            "logout" => {
                self.logged_out = true;
                Err("logout".into())
            }
            "message" => {
                if !self.ready {
                    return Ok(());
                }
                match serde_json::from_value::<PageMessage>(ev.data) {
                    Ok(m) => {
                        let message = Box::new(m.into_message(None));
                        self.send(ClientEvent::Message { message }).await
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable live message");
                        Ok(())
                    }
                }
            }
            kind @ ("edit" | "revoke" | "ack" | "reaction") => {
                if !self.ready {
                    return Ok(());
                }
                match serde_json::from_value::<PageChange>(ev.data).map(|c| c.into_update(kind)) {
                    Ok(Some(update)) => {
                        self.send(ClientEvent::MessageChanged {
                            update: Box::new(update),
                        })
                        .await
                    }
                    Ok(None) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = %e, kind, "unreadable message change");
                        Ok(())
                    }
                }
            }
            other => {
                tracing::debug!(kind = other, "unknown page event");
                Ok(())
            }
        }
    }

    async fn shutdown(&mut self, logout: bool) {
        if let Some(mut b) = self.browser.take() {
            if logout && !self.dead {
                // Unlinks the device on the phone too, as "log out" in the
                // page would.
                let _ = tokio::time::timeout(Duration::from_secs(5), b.logout()).await;
            }
            b.close().await;
        }
        if let Some(l) = &self.logins {
            if logout || self.logged_out {
                l.forget().await;
            } else if self.ready {
                // The browser has quit, so its files are complete: this is
                // the exact copy the periodic ones approximate.
                l.save("stop").await;
            }
        }
        if logout || self.logged_out {
            match std::fs::remove_dir_all(&self.profile) {
                Ok(()) => {
                    tracing::info!(profile = %self.profile.display(), "browser profile deleted")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, profile = %self.profile.display(), "could not delete the browser profile")
                }
            }
        }
    }
}
