//! What a deployment and a session choose: the host-wide
//! [`WebDriverSettings`] (from the configuration) and the per-session
//! [`WebDriverOptions`] (the create body's `webdriver` object, checked by
//! name).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::proxy::ProxyUrl;
use crate::browser::ClientError;
use crate::browser::vault::LoginVault;

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
    /// How long opening the WebDriver session may take (chromedriver or a
    /// grid that queues the request, or an endpoint that never answers).
    pub connect_timeout_ms: u64,
    /// Where the browser's traffic goes (`http://`, `socks5://`,
    /// `socks5h://`, credentials optional); `None`: straight out. Read
    /// apart from the other fields, so no serde message can quote it.
    #[serde(skip)]
    pub proxy: Option<ProxyUrl>,
}

impl Default for WebDriverOptions {
    fn default() -> Self {
        Self {
            max_qr_attempts: 6,
            qr_ttl_ms: 20_000,
            poll_ms: 250,
            call_timeout_ms: 30_000,
            page_load_timeout_ms: 60_000,
            connect_timeout_ms: 60_000,
            proxy: None,
        }
    }
}

impl WebDriverOptions {
    /// Reads and checks the `webdriver` object of a create body.
    pub fn from_options(options: &Value) -> Result<Self, ClientError> {
        let mut given = options.get("webdriver").cloned().unwrap_or(Value::Null);
        let proxy = match given.as_object_mut().and_then(|o| o.remove("proxy")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ProxyUrl::parse(&s).map_err(ClientError::Unsupported)?),
            Some(_) => {
                return Err(ClientError::Unsupported(
                    "webdriver.proxy must be a string (a URL)".into(),
                ));
            }
        };
        let mut o: WebDriverOptions = match given {
            Value::Null => Self::default(),
            v => serde_json::from_value(v)
                .map_err(|e| ClientError::Unsupported(format!("webdriver: {e}")))?,
        };
        o.proxy = proxy;
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
        if !(1_000..=600_000).contains(&o.connect_timeout_ms) {
            return bad("connectTimeoutMs must be between 1000 and 600000");
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
            (
                json!({"webdriver": {"connectTimeoutMs": 0}}),
                "connectTimeoutMs",
            ),
            (json!({"webdriver": {"bogus": 1}}), "unknown field"),
            (
                json!({"webdriver": {"proxy": 1}}),
                "webdriver.proxy must be a string",
            ),
            (
                json!({"webdriver": {"proxy": "ftp://u:secret@h:1"}}),
                "webdriver.proxy scheme",
            ),
        ] {
            let e = WebDriverOptions::from_options(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let o = WebDriverOptions::from_options(
            &json!({"webdriver": {"pollMs": 100, "proxy": "socks5h://u:secret@h:1080"}}),
        )
        .unwrap();
        assert_eq!(o.poll_ms, 100);
        assert_eq!(o.proxy.unwrap().to_string(), "socks5h://***@h:1080");
    }
}
