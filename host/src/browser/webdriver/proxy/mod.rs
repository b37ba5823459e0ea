//! A session's proxy (`webdriver.proxy`): the URL, checked at create, and
//! the Chromium switches that send all of the browser's traffic through it.
//!
//! # Why a forwarder
//!
//! Chromium's `--proxy-server` takes no credentials, and Chromium never
//! authenticates to a SOCKS5 proxy at all. The other ways to answer a
//! proxy's challenge do not cover this: an extension's `onAuthRequired` and
//! CDP's `Fetch.authRequired` see HTTP proxies only (no SOCKS5), the first
//! needs an extension loaded into every profile, and the second needs a
//! DevTools event stream beside chromedriver's. So with a local chromedriver
//! each session gets a [`Forwarder`]: a small HTTP proxy on `127.0.0.1:0`
//! inside the host that Chromium uses without credentials, and which opens
//! every connection upstream itself (HTTP `CONNECT` with
//! `Proxy-Authorization: Basic`, or the SOCKS5 handshake with
//! username/password). It is used with or without credentials, so there is
//! one path, and it knows why a connection failed: a refused password ends
//! the session with a named reason instead of a page that never loads.
//!
//! With a remote grid (`WEBDRIVER_URL`) the browser runs on another machine
//! and cannot reach a forwarder on this host's loopback: a proxy without
//! credentials is handed to Chromium as is, one with credentials is refused
//! at create.
//!
//! # Secrecy
//!
//! [`ProxyUrl`]'s `Debug` and `Display` show `scheme://***@host:port`,
//! never the username or password, and no error of this module quotes the
//! URL. The secret is kept in the stored create options (a restart must
//! recreate the session); no API answer returns those.

mod forwarder;

use std::fmt;

use percent_encoding::percent_decode_str;

pub(super) use forwarder::Forwarder;

/// Longest accepted `webdriver.proxy`.
pub const MAX_PROXY_URL: usize = 2048;

/// How the proxy is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    /// An HTTP proxy: `CONNECT host:port` for every connection.
    Http,
    /// SOCKS5, names resolved on this host (curl's `socks5://`).
    Socks5,
    /// SOCKS5, names resolved by the proxy (curl's `socks5h://`).
    Socks5h,
}

impl ProxyScheme {
    fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Http => "http",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        }
    }
}

/// A proxy's username and password, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(***)")
    }
}

/// A checked `webdriver.proxy`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: ProxyScheme,
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub credentials: Option<Credentials>,
}

/// Redacted: the credentials show as `***`.
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if self.credentials.is_some() {
            f.write_str("***@")?;
        }
        write!(f, "{}", self.authority())
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Why a `webdriver.proxy` was refused; never quotes the URL.
fn bad(why: &str) -> String {
    format!("webdriver.proxy {why}")
}

impl ProxyUrl {
    /// Checks a `webdriver.proxy` value. The message names the field and
    /// the rule broken, never the value (it may hold a password).
    pub fn parse(s: &str) -> Result<ProxyUrl, String> {
        if s.len() > MAX_PROXY_URL {
            return Err(bad(&format!("is longer than {MAX_PROXY_URL} bytes")));
        }
        let url = url::Url::parse(s).map_err(|e| {
            bad(&format!(
                "must be a URL like socks5://user:pass@host:1080 ({e})"
            ))
        })?;
        let scheme = match url.scheme() {
            "http" => ProxyScheme::Http,
            "socks5" => ProxyScheme::Socks5,
            "socks5h" => ProxyScheme::Socks5h,
            "https" => {
                return Err(bad(
                    "https:// (TLS to the proxy) is not supported; use http://, socks5:// or socks5h://",
                ));
            }
            _ => return Err(bad("scheme must be http://, socks5:// or socks5h://")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => {
                if !d
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
                {
                    return Err(bad("host must be a DNS name or an IP address"));
                }
                d.to_ascii_lowercase()
            }
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(bad("needs a host")),
        };
        let port = match url.port_or_known_default() {
            Some(0) | None => return Err(bad("needs a port (host:port)")),
            Some(p) => p,
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a path, query or fragment"));
        }
        let decode = |raw: &str, what: &str| -> Result<String, String> {
            let v = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| bad(&format!("{what} must be UTF-8 once percent-decoded")))?
                .into_owned();
            if v.len() > 255 || v.chars().any(char::is_control) {
                return Err(bad(&format!(
                    "{what} must be at most 255 bytes without control characters"
                )));
            }
            Ok(v)
        };
        let username = decode(url.username(), "username")?;
        let password = decode(url.password().unwrap_or(""), "password")?;
        let credentials = if username.is_empty() && password.is_empty() {
            None
        } else if username.is_empty() {
            return Err(bad("has a password but no username"));
        } else if username.contains(':') {
            return Err(bad(
                "username must not contain ':' (percent-encoded or not)",
            ));
        } else {
            Some(Credentials { username, password })
        };
        Ok(ProxyUrl {
            scheme,
            host,
            port,
            credentials,
        })
    }

    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The `--proxy-server` value for Chromium itself (no credentials; only
    /// used when there are none, with a remote grid). Chromium's `socks5`
    /// always resolves names through the proxy.
    pub fn chromium_proxy_server(&self) -> String {
        let scheme = match self.scheme {
            ProxyScheme::Http => "http",
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => "socks5",
        };
        format!("{scheme}://{}", self.authority())
    }
}

/// `host:port`, an IPv6 address in brackets.
pub(super) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The Chromium switches for a session whose traffic goes to
/// `proxy_server`.
///
/// - `<-loopback>`: Chromium sends `localhost` and `127.0.0.1` direct by
///   default; a session with a proxy sends everything through it, loopback
///   included, so the proxy is the only way out (and a fixture page on
///   loopback is tested the way web.whatsapp.com is used). chromedriver
///   speaks to Chromium over DevTools, which no proxy setting touches.
/// - WebRTC would otherwise send UDP straight out, showing the host's own
///   address; with this policy it uses the proxy or nothing.
pub(super) fn chromium_args(proxy_server: &str) -> Vec<String> {
    vec![
        format!("--proxy-server={proxy_server}"),
        "--proxy-bypass-list=<-loopback>".into(),
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_are_read_with_their_credentials_decoded() {
        let p = ProxyUrl::parse("socks5h://us%40er:p%3Ass%2F@Proxy.Example:1080").unwrap();
        assert_eq!(p.scheme, ProxyScheme::Socks5h);
        assert_eq!(p.host, "proxy.example");
        assert_eq!(p.port, 1080);
        let c = p.credentials.clone().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("us@er", "p:ss/")
        );

        let p = ProxyUrl::parse("http://10.0.0.1").unwrap();
        assert_eq!((p.port, p.credentials.is_none()), (80, true));
        let p = ProxyUrl::parse("http://[::1]:3128/").unwrap();
        assert_eq!(p.authority(), "[::1]:3128");
        assert_eq!(p.chromium_proxy_server(), "http://[::1]:3128");
        let p = ProxyUrl::parse("socks5://u@h:1").unwrap();
        assert_eq!(p.credentials.unwrap().password, "");
    }

    #[test]
    fn bad_urls_are_refused_by_name_without_quoting_them() {
        let long = format!("http://u:secret@{}.example:1", "a".repeat(MAX_PROXY_URL));
        for (url, needle) in [
            ("not a url secret", "must be a URL"),
            ("ftp://u:secret@h:1", "scheme"),
            ("https://u:secret@h:1", "https://"),
            ("socks5://u:secret@h", "needs a port"),
            ("socks5://u:secret@h:0", "needs a port"),
            ("http://u:secret@h:1/path", "path"),
            ("http://u:secret@h:1?q=1", "query"),
            ("http://:secret@h:1", "no username"),
            ("socks5://u:secret@:1", "host"),
            ("socks5://u:secret@h%20x:1", "host"),
            ("http://u:secret%FF@h:1", "UTF-8"),
            ("http://u:secret%0A@h:1", "control"),
            (long.as_str(), "longer than"),
        ] {
            let e = ProxyUrl::parse(url).unwrap_err();
            assert!(e.starts_with("webdriver.proxy "), "{url}: {e}");
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }

    #[test]
    fn the_credentials_never_show() {
        let p = ProxyUrl::parse("socks5://alice:hunter2@h:1080").unwrap();
        for shown in [p.to_string(), format!("{p:?}"), format!("{:?}", Some(&p))] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("alice"),
                "{shown}"
            );
            assert!(shown.contains("socks5://***@h:1080"), "{shown}");
        }
        assert_eq!(
            ProxyUrl::parse("http://h:1").unwrap().to_string(),
            "http://h:1"
        );
    }

    #[test]
    fn chromium_sends_loopback_through_the_proxy_too() {
        let args = chromium_args("http://127.0.0.1:9");
        assert!(args.contains(&"--proxy-server=http://127.0.0.1:9".to_owned()));
        assert!(args.contains(&"--proxy-bypass-list=<-loopback>".to_owned()));
    }
}
