//! The [`Provider`] of the adapter: checks a session's options, restores
//! its saved login, launches its browser and spawns the task that owns it;
//! also where a session's profile folder is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;

use super::browser::{Browser, sweep_profile};
use super::client::WebDriverClient;
use super::login::Logins;
use super::process;
use super::session::SessionTask;
use super::settings::{WebDriverOptions, WebDriverSettings};
use crate::browser::{ClientError, ClientEvent, Provider, WhatsAppClient};
use crate::domain::SessionId;

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
        let opts = WebDriverOptions::from_options(options)?;
        // The forwarder that adds credentials runs on this host; a grid's
        // browser cannot reach its loopback, and Chromium takes none.
        if self.settings.webdriver_url.is_some()
            && opts.proxy.as_ref().is_some_and(|p| p.credentials.is_some())
        {
            return Err(ClientError::Unsupported(
                "webdriver.proxy with credentials needs a local chromedriver (WEBDRIVER_URL is set): use a proxy without credentials, or an allow-listed one".into(),
            ));
        }
        Ok(())
    }

    /// Through WhatsApp Web's "link with phone number" screens.
    fn links_with_phone_number(&self) -> bool {
        true
    }

    async fn start(
        &self,
        session: &SessionId,
        options: &Value,
        restored: bool,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<Arc<dyn WhatsAppClient>, ClientError> {
        self.validate(options)?;
        let opts = WebDriverOptions::from_options(options)?;
        let profile = self.profile_dir(session);
        // `ProxyUrl` displays without its credentials.
        let proxy = opts.proxy.as_ref().map(ToString::to_string);
        tracing::info!(session_id = %session, restored, profile = %profile.display(), proxy = proxy.as_deref().unwrap_or("none"), "starting browser");
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
        let task = SessionTask::new(
            browser,
            opts,
            profile,
            events,
            logins,
            self.settings.login_save_every,
            crate::browser::login_phone_number(options),
        );
        tokio::spawn(task.run(rx));
        Ok(Arc::new(WebDriverClient::new(tx, call_timeout)))
    }

    /// Deletes the profile folder and the saved login. With a remote grid
    /// the profile lives on its node, out of this host's reach: refused,
    /// rather than answering a logout that did not happen.
    async fn forget_login(&self, session: &SessionId) -> Result<(), ClientError> {
        if self.settings.webdriver_url.is_some() {
            return Err(ClientError::Unsupported(
                "with WEBDRIVER_URL the browser profile lives on the grid node; log out while the session runs".into(),
            ));
        }
        let profile = self.profile_dir(session);
        match std::fs::remove_dir_all(&profile) {
            Ok(()) => tracing::info!(profile = %profile.display(), "browser profile deleted"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ClientError::Unsupported(format!(
                    "could not delete the browser profile: {e}"
                )));
            }
        }
        if let Some(vault) = &self.settings.login_vault {
            vault.delete(session).await.map_err(|e| {
                ClientError::Unsupported(format!("could not delete the saved login: {e}"))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::webdriver::DEFAULT_LOGIN_SAVE_EVERY;

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
