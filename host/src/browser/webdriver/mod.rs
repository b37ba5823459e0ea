//! WebDriver adapter: WhatsApp Web in Chromium, driven with fantoccini.
//!
//! One task per session owns the WebDriver client (chromedriver runs one
//! command per browser at a time, so serialising calls in one place is both
//! correct and simple). The task:
//! - launches chromedriver (or uses `WEBDRIVER_URL`), opens Chromium with the
//!   session's own profile folder so a login survives restarts, navigates to
//!   `WHATSAPP_WEB_URL` and injects the page bridge (`bridge.js`, the only
//!   JavaScript the host evaluates);
//! - every `pollMs` drains the bridge's in-page event queue with one short
//!   `execute`, acknowledging by sequence number, and turns the events into
//!   [`ClientEvent`]s (QR codes with an attempt counter, authenticated,
//!   ready, live messages, disconnected);
//! - answers `list_chats` / `fetch_messages` between polls;
//! - re-injects the bridge when a reload dropped it;
//! - on stop closes the browser, kills chromedriver's process group and, on
//!   logout, deletes the profile;
//! - with a login vault (`login.rs`), restores a saved login into an empty
//!   profile before the launch, saves the login after `ready`, every
//!   `login_save_every` and on a clean stop, and deletes it on logout.
//!
//! Every WebDriver call has a timeout, and a page module that is missing is
//! reported by name (`page module WAWebCollections not found`), never waited
//! for.

mod login;
mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::vault::LoginVault;
use super::{ClientError, ClientEvent, Provider, WhatsAppClient};
use crate::domain::{Chat, Me, Message, QrCode, SessionId, now_ms};
use login::Logins;
use process::Driver;

/// The page bridge, injected as the body of an `execute` call.
const BRIDGE: &str = include_str!("bridge.js");

/// Drains the bridge's queue; `null` when the bridge is gone (a reload).
const DRAIN: &str =
    "return window.__wasync ? window.__wasync.drain(arguments[0], arguments[1]) : null;";

/// A user agent of desktop Chrome: WhatsApp Web refuses headless ones.
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// Errors of this adapter; mapped onto [`ClientError`] at the port.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebDriverError {
    /// chromedriver or Chromium could not be started or reached.
    #[error("browser launch failed: {0}")]
    Launch(String),
    /// A WebDriver call did not answer in time.
    #[error("webdriver call {0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    /// The page threw (a rejected Promise or a script error).
    #[error("{0}")]
    Page(String),
    /// The browser or chromedriver went away.
    #[error("browser closed: {0}")]
    Gone(String),
    /// Any other WebDriver failure.
    #[error("webdriver call {0} failed: {1}")]
    Call(&'static str, String),
    /// The session's profile folder could not be prepared.
    #[error("browser profile: {0}")]
    Profile(String),
}

impl From<WebDriverError> for ClientError {
    fn from(e: WebDriverError) -> Self {
        match e {
            WebDriverError::Page(m) if m.contains("page module") => ClientError::Unsupported(m),
            WebDriverError::Gone(_) => ClientError::Disconnected(e.to_string()),
            WebDriverError::Launch(_) | WebDriverError::Profile(_) => {
                ClientError::Unsupported(e.to_string())
            }
            other => ClientError::Transient(other.to_string()),
        }
    }
}

/// Host-wide settings (from the configuration).
#[derive(Debug, Clone)]
pub struct WebDriverSettings {
    /// Any WebDriver endpoint; `None`: start a local chromedriver per session.
    pub webdriver_url: Option<String>,
    /// chromedriver binary; `None`: `chromedriver` from `PATH`.
    pub chromedriver_path: Option<PathBuf>,
    /// Chromium binary; `None`: `chromium` (or `chromium-browser`,
    /// `google-chrome`) from `PATH`, else chromedriver's own choice.
    pub chromium_path: Option<PathBuf>,
    /// The page to open (`https://web.whatsapp.com/`, or a fixture).
    pub whatsapp_web_url: String,
    /// Where the per-session profiles live: `<data_dir>/profiles`.
    pub profiles_dir: PathBuf,
    /// Where logins are saved so another host can take a session over
    /// without a QR code; `None`: the profile folder is the only copy.
    /// Not used with `webdriver_url` (the profile is on the grid node).
    pub login_vault: Option<Arc<dyn LoginVault>>,
    /// How often a ready session's login is saved to the vault (besides
    /// right after `ready` and on a clean stop).
    pub login_save_every: Duration,
}

/// The default of [`WebDriverSettings::login_save_every`]: WhatsApp Web
/// rotates keys now and then, so a saved login should not be hours old,
/// and a save of a few hundred KiB every few minutes costs little.
pub const DEFAULT_LOGIN_SAVE_EVERY: Duration = Duration::from_secs(300);

/// Per-session options: the create body's `webdriver` object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebDriverOptions {
    /// QR codes shown before giving up with `disconnected` (`qr_timeout`).
    pub max_qr_attempts: u32,
    /// How long a QR code is announced as valid (`expiresAt`).
    pub qr_ttl_ms: u64,
    /// How often the in-page event queue is drained.
    pub poll_ms: u64,
    /// Timeout of every WebDriver call (scripts included).
    pub call_timeout_ms: u64,
    /// How long the page may take to load (`window.Debug.VERSION`).
    pub page_load_timeout_ms: u64,
}

impl Default for WebDriverOptions {
    fn default() -> Self {
        Self {
            max_qr_attempts: 6,
            qr_ttl_ms: 20_000,
            poll_ms: 250,
            call_timeout_ms: 30_000,
            page_load_timeout_ms: 60_000,
        }
    }
}

impl WebDriverOptions {
    /// Reads and checks the `webdriver` object of a create body.
    pub fn from_options(options: &Value) -> Result<Self, ClientError> {
        let o: WebDriverOptions = match options.get("webdriver") {
            None | Some(Value::Null) => Self::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| ClientError::Unsupported(format!("webdriver: {e}")))?,
        };
        let bad = |m: &str| Err(ClientError::Unsupported(format!("webdriver.{m}")));
        if !(1..=1000).contains(&o.max_qr_attempts) {
            return bad("maxQrAttempts must be between 1 and 1000");
        }
        if !(1_000..=600_000).contains(&o.qr_ttl_ms) {
            return bad("qrTtlMs must be between 1000 and 600000");
        }
        if !(20..=10_000).contains(&o.poll_ms) {
            return bad("pollMs must be between 20 and 10000");
        }
        if !(1_000..=600_000).contains(&o.call_timeout_ms) {
            return bad("callTimeoutMs must be between 1000 and 600000");
        }
        if !(1_000..=600_000).contains(&o.page_load_timeout_ms) {
            return bad("pageLoadTimeoutMs must be between 1000 and 600000");
        }
        Ok(o)
    }
}

/// Starts WebDriver clients.
#[derive(Debug)]
pub struct WebDriverProvider {
    settings: WebDriverSettings,
}

impl WebDriverProvider {
    /// Also kills browsers and chromedrivers a crashed earlier run of this
    /// host left behind on the same profiles folder.
    pub fn new(mut settings: WebDriverSettings) -> Self {
        if let (Some(vault), Some(_)) = (&settings.login_vault, &settings.webdriver_url) {
            tracing::warn!(
                vault = vault.kind(),
                "WEBDRIVER_URL is set: profiles live on the grid node, so logins are not saved to the vault"
            );
            settings.login_vault = None;
        }
        let _ = std::fs::create_dir_all(&settings.profiles_dir);
        if let Ok(abs) = settings.profiles_dir.canonicalize() {
            settings.profiles_dir = abs;
        }
        if settings.webdriver_url.is_none() {
            let root = format!("{}/", settings.profiles_dir.display());
            let n = process::sweep(|arg| {
                arg.strip_prefix("--user-data-dir=")
                    .or_else(|| arg.strip_prefix("--log-path="))
                    .is_some_and(|p| p.starts_with(&root))
            });
            if n > 0 {
                tracing::warn!(
                    killed = n,
                    "killed browser processes left by an earlier run"
                );
            }
        }
        Self { settings }
    }

    pub fn profile_dir(&self, session: &SessionId) -> PathBuf {
        profile_dir(&self.settings.profiles_dir, session)
    }
}

/// `<profiles>/session-<id>`: the id is validated (`[A-Za-z0-9_-]`), so it
/// cannot leave the folder.
pub fn profile_dir(profiles: &Path, session: &SessionId) -> PathBuf {
    profiles.join(format!("session-{}", session.as_str()))
}

#[async_trait]
impl Provider for WebDriverProvider {
    fn name(&self) -> &'static str {
        "webdriver"
    }

    fn validate(&self, options: &Value) -> Result<(), ClientError> {
        WebDriverOptions::from_options(options).map(|_| ())
    }

    async fn start(
        &self,
        session: &SessionId,
        options: &Value,
        restored: bool,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<Arc<dyn WhatsAppClient>, ClientError> {
        let opts = WebDriverOptions::from_options(options)?;
        let profile = self.profile_dir(session);
        tracing::info!(session_id = %session, restored, profile = %profile.display(), "starting browser");
        let logins = self.settings.login_vault.clone().map(|vault| Logins {
            vault,
            session: session.clone(),
            profile: profile.clone(),
        });
        if let Some(l) = &logins {
            // A browser a crash left on this profile must not write into
            // it while the saved login is unpacked.
            sweep_profile(&self.settings, &profile, session);
            l.restore().await;
        }
        let browser = Browser::launch(&self.settings, &opts, &profile, session).await?;
        let (tx, rx) = mpsc::channel(16);
        let call_timeout = Duration::from_millis(opts.call_timeout_ms);
        let task = SessionTask {
            browser: Some(browser),
            opts,
            profile,
            events,
            ack: 0,
            instance: None,
            qr_attempts: 0,
            authenticated: false,
            ready: false,
            logged_out: false,
            dead: false,
            failures: 0,
            not_loaded_since: None,
            logins,
            save_every: self.settings.login_save_every,
            next_save: None,
            login_saves: 0,
        };
        tokio::spawn(task.run(rx));
        Ok(Arc::new(WebDriverClient {
            commands: tx,
            call_timeout,
        }))
    }
}

/// chromedriver's log file of a session: it also puts the profiles folder
/// on chromedriver's command line, for [`process::sweep`].
fn driver_log(settings: &WebDriverSettings, session: &SessionId) -> PathBuf {
    settings
        .profiles_dir
        .join(format!("chromedriver-session-{}.log", session.as_str()))
}

/// Kills a browser (and its chromedriver) an earlier run left on
/// `profile`; only for local chromedrivers (a grid's browsers are not on
/// this host).
fn sweep_profile(settings: &WebDriverSettings, profile: &Path, session: &SessionId) {
    if settings.webdriver_url.is_some() {
        return;
    }
    let data_arg = format!("--user-data-dir={}", profile.display());
    let log_arg = format!("--log-path={}", driver_log(settings, session).display());
    process::sweep(|a| a == data_arg || a == log_arg);
}

/// A browser of one session: the WebDriver client and, when local, the
/// chromedriver that runs it.
struct Browser {
    client: fantoccini::Client,
    driver: Option<Driver>,
    call_timeout: Duration,
}

impl Browser {
    async fn launch(
        settings: &WebDriverSettings,
        opts: &WebDriverOptions,
        profile: &Path,
        session: &SessionId,
    ) -> Result<Browser, WebDriverError> {
        std::fs::create_dir_all(profile)
            .map_err(|e| WebDriverError::Profile(format!("{}: {e}", profile.display())))?;
        let marker = driver_log(settings, session);
        let mut driver = None;
        let url = match &settings.webdriver_url {
            Some(u) => u.clone(),
            None => {
                // A browser a crash left on this profile would hold its lock.
                sweep_profile(settings, profile, session);
                let binary = settings
                    .chromedriver_path
                    .clone()
                    .or_else(|| process::which(&["chromedriver"]))
                    .ok_or_else(|| {
                        WebDriverError::Launch(
                            "chromedriver not found on PATH; install chromium-driver or set CHROMEDRIVER_PATH".into(),
                        )
                    })?;
                let d = Driver::start(&binary, &marker).await?;
                let u = d.url.clone();
                driver = Some(d);
                u
            }
        };
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-blink-features=AutomationControlled".into(),
            // Cookies encrypted with Chromium's fixed key rather than a
            // desktop keyring's: a profile then opens on any host, which is
            // what makes a saved login portable (see `login.rs`).
            "--password-store=basic".into(),
            "--window-size=1280,900".into(),
            format!("--user-agent={USER_AGENT}"),
        ];
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut chrome = json!({ "args": args });
        let binary = settings
            .chromium_path
            .clone()
            .or_else(|| process::which(&["chromium", "chromium-browser", "google-chrome"]));
        if let (Some(b), true) = (binary, settings.webdriver_url.is_none()) {
            chrome["binary"] = json!(b.display().to_string());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), chrome);
        caps.insert(
            "timeouts".into(),
            json!({"script": opts.call_timeout_ms, "pageLoad": opts.page_load_timeout_ms}),
        );
        let connector = https_connector()?;
        let connect = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await;
        let client = match tokio::time::timeout(Duration::from_secs(60), async { connect }).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let Some(mut d) = driver {
                    d.kill().await;
                }
                return Err(WebDriverError::Launch(format!(
                    "new WebDriver session at {url}: {e}"
                )));
            }
            Err(_) => {
                if let Some(mut d) = driver {
                    d.kill().await;
                }
                return Err(WebDriverError::Timeout(
                    "new session",
                    Duration::from_secs(60),
                ));
            }
        };
        let mut browser = Browser {
            client,
            driver,
            call_timeout: Duration::from_millis(opts.call_timeout_ms),
        };
        let goto = browser.client.goto(&settings.whatsapp_web_url);
        let r = tokio::time::timeout(
            Duration::from_millis(opts.page_load_timeout_ms + 5_000),
            goto,
        )
        .await;
        let failure = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(WebDriverError::Launch(format!(
                "opening {}: {e}",
                settings.whatsapp_web_url
            ))),
            Err(_) => Some(WebDriverError::Timeout(
                "goto",
                Duration::from_millis(opts.page_load_timeout_ms),
            )),
        };
        if let Some(e) = failure {
            browser.close().await;
            return Err(e);
        }
        Ok(browser)
    }

    /// One `execute` with the call timeout.
    async fn exec(
        &self,
        what: &'static str,
        script: &str,
        args: Vec<Value>,
    ) -> Result<Value, WebDriverError> {
        match tokio::time::timeout(self.call_timeout, self.client.execute(script, args)).await {
            Err(_) => Err(WebDriverError::Timeout(what, self.call_timeout)),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(what, e)),
        }
    }

    /// Closes the WebDriver session (Chromium exits), then makes sure
    /// chromedriver and anything in its process group are gone.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        if let Some(d) = &mut self.driver {
            d.kill().await;
        }
    }
}

/// Sorts a WebDriver failure into page errors, a gone browser, or other.
fn classify(what: &'static str, e: fantoccini::error::CmdError) -> WebDriverError {
    use fantoccini::error::CmdError;
    match &e {
        CmdError::Lost(_) | CmdError::Failed(_) | CmdError::FailedC(_) => {
            return WebDriverError::Gone(e.to_string());
        }
        CmdError::Standard(w) => {
            let msg = w.message.to_string();
            let code = w.error.to_string();
            if code.contains("javascript error") {
                // chromedriver prefixes the page's message.
                let m = msg
                    .strip_prefix("javascript error: ")
                    .unwrap_or(&msg)
                    .to_owned();
                return WebDriverError::Page(m.lines().next().unwrap_or("").to_owned());
            }
            let lower = format!("{code}: {msg}").to_lowercase();
            if [
                "invalid session id",
                "no such window",
                "not reachable",
                "disconnected",
                "session deleted",
                "target window already closed",
                "tab crashed",
            ]
            .iter()
            .any(|s| lower.contains(s))
            {
                return WebDriverError::Gone(format!("{code}: {msg}"));
            }
        }
        _ => {}
    }
    WebDriverError::Call(what, e.to_string())
}

/// HTTPS (rustls on ring, system roots) or plain HTTP to the endpoint.
fn https_connector() -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    WebDriverError,
> {
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| WebDriverError::Launch(format!("TLS setup: {e}")))?;
    Ok(b.https_or_http().enable_http1().build())
}

enum Command {
    Chats(oneshot::Sender<Result<Vec<Chat>, ClientError>>),
    Messages {
        chat_id: String,
        limit: u32,
        reply: oneshot::Sender<Result<Vec<Message>, ClientError>>,
    },
    Stop {
        logout: bool,
        /// Save the login for other hosts (not when the lease moved on).
        save: bool,
        reply: oneshot::Sender<()>,
    },
}

/// The port's view of a session's browser: a handle on its task.
struct WebDriverClient {
    commands: mpsc::Sender<Command>,
    call_timeout: Duration,
}

impl WebDriverClient {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ClientError::Disconnected("browser session ended".into());
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        // The task may be finishing a poll first; a call gets its own timeout
        // inside, so this outer bound is only a safety net.
        match tokio::time::timeout(self.call_timeout * 2 + Duration::from_secs(5), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(ClientError::Transient(
                "browser did not answer in time".into(),
            )),
        }
    }
}

impl WebDriverClient {
    async fn stop_with(&self, logout: bool, save: bool) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Stop {
                logout,
                save,
                reply,
            })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
        }
    }
}

#[async_trait]
impl WhatsAppClient for WebDriverClient {
    async fn list_chats(&self) -> Result<Vec<Chat>, ClientError> {
        self.ask(Command::Chats).await
    }

    async fn fetch_messages(&self, chat: &Chat, limit: u32) -> Result<Vec<Message>, ClientError> {
        let chat_id = chat.id.clone();
        self.ask(|reply| Command::Messages {
            chat_id,
            limit,
            reply,
        })
        .await
    }

    async fn stop(&self, logout: bool) {
        self.stop_with(logout, true).await;
    }

    async fn abandon(&self) {
        self.stop_with(false, false).await;
    }
}

/// One drained batch.
#[derive(Debug, Deserialize)]
struct Drained {
    instance: String,
    loaded: bool,
    error: Option<String>,
    events: Vec<PageEvent>,
}

#[derive(Debug, Deserialize)]
struct PageEvent {
    seq: u64,
    #[serde(rename = "type")]
    kind: String,
    data: Value,
}

/// A chat as the bridge serializes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageChat {
    id: String,
    name: Option<String>,
    is_group: bool,
    unread_count: u32,
    /// Seconds.
    t: i64,
    archive: bool,
    pin: bool,
}

impl From<PageChat> for Chat {
    fn from(c: PageChat) -> Chat {
        Chat {
            id: c.id,
            name: c.name,
            is_group: c.is_group,
            unread_count: c.unread_count,
            archived: c.archive,
            pinned: c.pin,
            last_message_at: (c.t > 0).then_some(c.t * 1000),
        }
    }
}

/// A message as the bridge serializes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageMessage {
    id: String,
    from_me: bool,
    remote: Option<String>,
    from: Option<String>,
    to: Option<String>,
    author: Option<String>,
    body: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    /// Seconds.
    t: i64,
    ack: i32,
    has_media: bool,
    quoted_id: Option<String>,
}

impl PageMessage {
    fn into_message(self, chat_id: Option<&str>) -> Message {
        let chat_id = chat_id
            .map(str::to_owned)
            .or(self.remote)
            .unwrap_or_default();
        Message {
            id: self.id,
            chat_id,
            from: self.from.unwrap_or_default(),
            to: self.to.unwrap_or_default(),
            author: self.author,
            body: self.body,
            kind: self.kind,
            timestamp: self.t * 1000,
            from_me: self.from_me,
            has_media: self.has_media,
            ack: self.ack,
            quoted_id: self.quoted_id,
            tags: vec![],
            attributes: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct PageMessages {
    style: String,
    messages: Vec<PageMessage>,
}

/// Consecutive failed polls after which the browser counts as gone.
const MAX_POLL_FAILURES: u32 = 8;

/// The task that owns one session's browser.
struct SessionTask {
    browser: Option<Browser>,
    opts: WebDriverOptions,
    profile: PathBuf,
    events: mpsc::Sender<ClientEvent>,
    /// Last page event handled.
    ack: u64,
    /// Bridge instance the `ack` belongs to (a reload starts a new one).
    instance: Option<String>,
    qr_attempts: u32,
    authenticated: bool,
    ready: bool,
    logged_out: bool,
    /// `disconnected` was reported: no more polling, calls fail.
    dead: bool,
    failures: u32,
    not_loaded_since: Option<Instant>,
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
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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
                    Some(Command::Messages { chat_id, limit, reply }) => {
                        let _ = reply.send(self.messages(&chat_id, limit).await);
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

    async fn inject(&self) -> Result<(), WebDriverError> {
        let b = self
            .browser
            .as_ref()
            .ok_or_else(|| WebDriverError::Gone("no browser".into()))?;
        b.exec("inject", BRIDGE, vec![]).await.map(|_| ())
    }

    /// Runs a bridge call; a missing bridge (after a reload) is injected
    /// and the call tried once more.
    async fn bridge_call(
        &self,
        what: &'static str,
        expr: &str,
        args: Vec<Value>,
    ) -> Result<Value, WebDriverError> {
        let script = format!(
            "if (!window.__wasync) return {{__missing: true}}; return await window.__wasync.{expr};"
        );
        let b = self
            .browser
            .as_ref()
            .ok_or_else(|| WebDriverError::Gone("no browser".into()))?;
        let v = b.exec(what, &script, args.clone()).await?;
        if v.get("__missing").is_some() {
            self.inject().await?;
            let v = b.exec(what, &script, args).await?;
            if v.get("__missing").is_some() {
                return Err(WebDriverError::Page(
                    "the page bridge could not be installed".into(),
                ));
            }
            return Ok(v);
        }
        Ok(v)
    }

    async fn chats(&self) -> Result<Vec<Chat>, ClientError> {
        self.browser()?;
        let v = self.bridge_call("chats", "chats()", vec![]).await?;
        let chats: Vec<PageChat> = serde_json::from_value(v)
            .map_err(|e| ClientError::Transient(format!("unreadable chat list: {e}")))?;
        let mut chats: Vec<Chat> = chats.into_iter().map(Chat::from).collect();
        chats.sort_by_key(|c| std::cmp::Reverse(c.last_message_at));
        Ok(chats)
    }

    async fn messages(&self, chat_id: &str, limit: u32) -> Result<Vec<Message>, ClientError> {
        self.browser()?;
        let v = self
            .bridge_call(
                "messages",
                "messages(arguments[0], arguments[1])",
                vec![json!(chat_id), json!(limit)],
            )
            .await?;
        let page: PageMessages = serde_json::from_value(v)
            .map_err(|e| ClientError::Transient(format!("unreadable messages: {e}")))?;
        tracing::debug!(chat_id, style = %page.style, n = page.messages.len(), "messages fetched");
        Ok(page
            .messages
            .into_iter()
            .map(|m| m.into_message(Some(chat_id)))
            .collect())
    }

    /// Drains the page once. `Err(reason)`: the session is over.
    async fn poll(&mut self) -> Result<(), String> {
        let Some(b) = &self.browser else {
            return Err("no browser".into());
        };
        let r = b
            .exec("drain", DRAIN, vec![json!(self.ack), json!(200)])
            .await;
        let v = match r {
            Ok(Value::Null) => {
                // A (re)loaded page: the bridge starts a new queue.
                match self.inject().await {
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
                if self.authenticated {
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
            "ack" => {
                // The port has no ack event yet; a re-sync picks acks up.
                tracing::debug!(data = %ev.data, "message ack");
                Ok(())
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
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    b.exec(
                        "logout",
                        "if (window.__wasync) { return await window.__wasync.logout(); } return false;",
                        vec![],
                    ),
                )
                .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_by_name() {
        assert_eq!(
            WebDriverOptions::from_options(&json!({})).unwrap(),
            WebDriverOptions::default()
        );
        for (v, needle) in [
            (json!({"webdriver": {"maxQrAttempts": 0}}), "maxQrAttempts"),
            (json!({"webdriver": {"pollMs": 1}}), "pollMs"),
            (json!({"webdriver": {"bogus": 1}}), "unknown field"),
        ] {
            let e = WebDriverOptions::from_options(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn page_fields_map_onto_the_domain() {
        let c: Chat = serde_json::from_value::<PageChat>(json!({
            "id": "1@g.us", "name": "G", "isGroup": true, "unreadCount": 2,
            "t": 1_700_000_000, "archive": false, "pin": true, "muteExpiration": 0
        }))
        .unwrap()
        .into();
        assert_eq!(c.last_message_at, Some(1_700_000_000_000));
        assert!(c.pinned && c.is_group && !c.archived);
        let m = serde_json::from_value::<PageMessage>(json!({
            "id": "true_1@g.us_ABC", "fromMe": true, "remote": "1@g.us", "from": "me@c.us",
            "to": "1@g.us", "author": null, "body": "hi", "type": "chat", "t": 5, "ack": 3,
            "hasMedia": false, "quotedId": null, "isNotification": false
        }))
        .unwrap()
        .into_message(None);
        assert_eq!(m.chat_id, "1@g.us");
        assert_eq!(m.timestamp, 5000);
        assert!(m.from_me);
    }

    #[test]
    fn a_grid_endpoint_turns_the_login_vault_off() {
        let dir = tempfile::tempdir().unwrap();
        let settings = |url: Option<&str>| WebDriverSettings {
            webdriver_url: url.map(str::to_owned),
            chromedriver_path: None,
            chromium_path: None,
            whatsapp_web_url: "http://127.0.0.1:1/".into(),
            profiles_dir: dir.path().join("profiles"),
            login_vault: Some(Arc::new(
                crate::browser::vault::memory::MemoryVault::default(),
            )),
            login_save_every: DEFAULT_LOGIN_SAVE_EVERY,
        };
        let grid = WebDriverProvider::new(settings(Some("http://grid.invalid:4444")));
        assert!(
            grid.settings.login_vault.is_none(),
            "the profile is on the node"
        );
        let local = WebDriverProvider::new(settings(None));
        assert!(local.settings.login_vault.is_some());
    }

    #[test]
    fn profiles_stay_inside_their_folder() {
        let id = SessionId::parse("abc-1").unwrap();
        assert_eq!(
            profile_dir(Path::new("/d/profiles"), &id),
            PathBuf::from("/d/profiles/session-abc-1")
        );
    }
}
