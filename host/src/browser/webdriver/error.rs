//! The adapter's errors: [`WebDriverError`], how a failed WebDriver call is
//! sorted into one, and how each maps onto the port's [`ClientError`].

use std::time::Duration;

use crate::browser::ClientError;

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
    /// The session's proxy carried nothing: refused credentials, or not
    /// reachable (the message names it by `host:port` only).
    #[error("{0}")]
    Proxy(String),
}

impl From<WebDriverError> for ClientError {
    fn from(e: WebDriverError) -> Self {
        match e {
            WebDriverError::Page(m) if m.contains("page module") => ClientError::Unsupported(m),
            WebDriverError::Gone(_) => ClientError::Disconnected(e.to_string()),
            WebDriverError::Launch(_) | WebDriverError::Profile(_) | WebDriverError::Proxy(_) => {
                ClientError::Unsupported(e.to_string())
            }
            other => ClientError::Transient(other.to_string()),
        }
    }
}

/// Sorts a WebDriver failure into page errors, a gone browser, or other.
pub(super) fn classify(what: &'static str, e: fantoccini::error::CmdError) -> WebDriverError {
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
