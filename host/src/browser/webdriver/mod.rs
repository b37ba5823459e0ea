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
//!   [`ClientEvent`]s (QR codes with an attempt counter, or pairing codes
//!   when the session links with a phone number, which the bridge asks for
//!   through WhatsApp Web's own screens; authenticated, ready, live
//!   messages, disconnected);
//! - answers `list_chats` / `fetch_messages` between polls;
//! - re-injects the bridge when a reload dropped it;
//! - on stop closes the browser, kills chromedriver's process group and, on
//!   logout, deletes the profile;
//! - with a login vault (`login/`), restores a saved login into an empty
//!   profile before the launch, saves the login after `ready`, every
//!   `login_save_every` and on a clean stop, and deletes it on logout.
//!
//! Every WebDriver call has a timeout, and a page module that is missing is
//! reported by name (`page module WAWebCollections not found`), never waited
//! for.
//!
//! # Files
//!
//! - `settings.rs`: host-wide settings and per-session options;
//! - `provider.rs`: the [`Provider`]: starts a
//!   session (restore the login, launch, spawn the task);
//! - `browser.rs`: launching chromedriver and Chromium, `execute` and close;
//! - `process.rs`: chromedriver's process group, and sweeping up after a
//!   crash;
//! - `proxy/`: a session's proxy (`webdriver.proxy`) and the local
//!   forwarder that gives Chromium a proxy with credentials;
//! - `page.rs` and `bridge.js`: the page bridge and what it returns;
//! - `session.rs`: the task that owns a session's browser;
//! - `client.rs`: the port's handle on that task;
//! - `login/`: packing a login into an archive and the vault's copy of it;
//! - `error.rs`: [`WebDriverError`] and its mapping onto the port's errors.
//!
//! [`ClientEvent`]: crate::browser::ClientEvent
//! [`Provider`]: crate::browser::Provider

mod browser;
mod client;
mod error;
mod login;
mod page;
mod process;
mod provider;
mod proxy;
mod session;
mod settings;

pub use error::WebDriverError;
pub use provider::{WebDriverProvider, profile_dir};
pub use proxy::{Credentials, ProxyScheme, ProxyUrl};
pub use settings::{DEFAULT_LOGIN_SAVE_EVERY, WebDriverOptions, WebDriverSettings};
