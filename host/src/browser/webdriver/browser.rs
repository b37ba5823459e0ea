//! One session's browser: launching chromedriver (or reaching
//! `WEBDRIVER_URL`) and Chromium on the session's profile, opening the
//! page, and the two WebDriver calls everything else is made of (`execute`
//! with a timeout, and close).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::error::{WebDriverError, classify};
use super::process::{self, Driver};
use super::proxy::{self, Forwarder};
use super::settings::{WebDriverOptions, WebDriverSettings};
use crate::domain::SessionId;

/// A user agent of desktop Chrome: WhatsApp Web refuses headless ones.
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

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
pub(super) fn sweep_profile(settings: &WebDriverSettings, profile: &Path, session: &SessionId) {
    if settings.webdriver_url.is_some() {
        return;
    }
    let data_arg = format!("--user-data-dir={}", profile.display());
    let log_arg = format!("--log-path={}", driver_log(settings, session).display());
    process::sweep(|a| a == data_arg || a == log_arg);
}

/// A browser of one session: the WebDriver client and, when local, the
/// chromedriver that runs it.
pub(super) struct Browser {
    client: fantoccini::Client,
    driver: Option<Driver>,
    call_timeout: Duration,
    /// The session's proxy forwarder (local chromedriver with a proxy).
    forwarder: Option<Forwarder>,
}

impl Browser {
    pub(super) async fn launch(
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
            // what makes a saved login portable (see `login/`).
            "--password-store=basic".into(),
            "--window-size=1280,900".into(),
            format!("--user-agent={USER_AGENT}"),
        ];
        args.push(format!("--user-data-dir={}", profile.display()));
        // With a local chromedriver the browser always goes through this
        // host's forwarder (see `proxy/`); a grid's browser gets the proxy
        // itself (validated: no credentials then).
        let mut forwarder = None;
        if let Some(p) = &opts.proxy {
            let server = if settings.webdriver_url.is_some() {
                p.chromium_proxy_server()
            } else {
                let f = Forwarder::start(p.clone()).await.map_err(|e| {
                    WebDriverError::Launch(format!("cannot start the proxy forwarder: {e}"))
                })?;
                let s = f.proxy_server();
                forwarder = Some(f);
                s
            };
            args.extend(proxy::chromium_args(&server));
        }
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
        // The whole handshake is bounded: an endpoint that accepts and never
        // answers, or a grid that queues the request, must not hold the
        // session's start (and with it its DELETE) forever.
        let connect_timeout = Duration::from_millis(opts.connect_timeout_ms);
        let mut builder = fantoccini::ClientBuilder::new(connector);
        builder.capabilities(caps);
        let client = match tokio::time::timeout(connect_timeout, builder.connect(&url)).await {
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
                return Err(WebDriverError::Timeout("new session", connect_timeout));
            }
        };
        let mut browser = Browser {
            client,
            driver,
            call_timeout: Duration::from_millis(opts.call_timeout_ms),
            forwarder,
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
        // A proxy that carried nothing explains a failed (or an error)
        // page better than the navigation's own message.
        let failure = match browser.proxy_failure() {
            Some(why) => Some(WebDriverError::Proxy(why)),
            None => failure,
        };
        if let Some(e) = failure {
            browser.close().await;
            return Err(e);
        }
        Ok(browser)
    }

    /// Why the session's proxy has carried nothing yet, if it failed.
    pub(super) fn proxy_failure(&self) -> Option<String> {
        self.forwarder.as_ref().and_then(Forwarder::failure)
    }

    /// One `execute` with the call timeout.
    pub(super) async fn exec(
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
    pub(super) async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        if let Some(d) = &mut self.driver {
            d.kill().await;
        }
    }
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
