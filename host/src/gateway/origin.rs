//! Which web pages may talk to the server: the `Host` and `Origin` checks.
//!
//! Without an API key (the default, on loopback) the server trusts whoever
//! can reach it, and a browser on the operator's machine can reach it on
//! behalf of any page it opens. Two checks keep those pages out; both run on
//! every request, before routing and auth, and refuse with 403:
//!
//! - `Host` must name this server: an IP literal, `localhost` (or a
//!   `*.localhost` name, which browsers resolve to loopback themselves), the
//!   advertise URL's host, or a name in `WASYNC_ALLOWED_HOSTS`. DNS
//!   rebinding needs a name the attacker controls, so an IP literal is never
//!   one; a name the operator serves behind a reverse proxy is listed.
//! - `Origin`, when a browser sends one, must be the server's own origin
//!   (the same host and port as `Host`, so the dashboard works under any
//!   name it is served by) or one listed in `WASYNC_ALLOWED_ORIGINS`.
//!   Browsers send it on every state-changing request and on WebSocket
//!   handshakes, which CORS does not cover; `null` (sandboxed frames,
//!   `file:` pages) is refused. Requests without it (curl, the cluster's
//!   forwards, Node clients) are not browsers acting for a page.
//!
//! JSON bodies must also be declared `application/json` (see
//! `rest::parse_body`), so a cross-site `<form>` or a `text/plain` fetch,
//! which browsers send without asking, never reaches a handler.

use http::{Request, StatusCode, header};

use super::error::ApiError;

/// The allow-lists, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct BrowserGuard {
    /// Host names (lower case, no port) besides IP literals and localhost.
    hosts: Vec<String>,
    /// `*` in `WASYNC_ALLOWED_HOSTS`: no `Host` check.
    any_host: bool,
    /// Exact origins (lower case) besides the server's own.
    origins: Vec<String>,
}

impl BrowserGuard {
    /// `allowed_hosts` and `allowed_origins` as configured; the host of
    /// `advertise_url` (where the other hosts of a cluster send their
    /// forwards) is allowed too.
    pub fn new(allowed_hosts: &[String], allowed_origins: &[String], advertise_url: &str) -> Self {
        let mut hosts: Vec<String> = allowed_hosts
            .iter()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        let advertised = advertise_url
            .split_once("://")
            .map_or(advertise_url, |(_, rest)| rest);
        let advertised = advertised.split('/').next().unwrap_or_default();
        if let Some((name, _)) = split_authority(advertised) {
            hosts.push(name);
        }
        BrowserGuard {
            any_host: hosts.iter().any(|h| h == "*"),
            hosts,
            origins: allowed_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Refuses a request whose `Host` or `Origin` is not allowed.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), ApiError> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let host = match host {
            Some(raw) => Some(split_authority(raw).ok_or_else(|| bad_host(raw))?),
            // No browser sends a request without a Host.
            None => None,
        };
        if let Some((name, _)) = &host
            && !self.host_allowed(name)
        {
            return Err(bad_host(name));
        }
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("null").to_ascii_lowercase();
        if self.origins.contains(&origin) || same_origin(&origin, host.as_ref()) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "requests from pages on {origin:?} are refused; to allow a frontend there, add its origin to WASYNC_ALLOWED_ORIGINS"
            ),
        ))
    }

    fn host_allowed(&self, name: &str) -> bool {
        self.any_host
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.hosts.iter().any(|h| h == name)
    }
}

fn bad_host(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "host_not_allowed",
        format!(
            "requests addressed to host {name:?} are refused (a web page may be rebinding that name to this server); if wasync is served under this name, add it to WASYNC_ALLOWED_HOSTS"
        ),
    )
}

/// `host[:port]` as (lower-case name without a trailing dot, port); IPv6
/// literals keep their brackets. `None` when it is not an authority.
fn split_authority(raw: &str) -> Option<(String, Option<u16>)> {
    let raw = raw.trim();
    let (name, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let port = match &raw[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (&raw[..=end], port)
    } else {
        match raw.rsplit_once(':') {
            Some((n, p)) => (n, Some(p.parse().ok()?)),
            None => (raw, None),
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
    valid.then_some((name, port))
}

/// Whether `origin` (`scheme://host[:port]`) names the host and port the
/// request was addressed to; a missing port is the origin scheme's default.
fn same_origin(origin: &str, host: Option<&(String, Option<u16>)>) -> bool {
    let Some((name, port)) = host else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let Some((o_name, o_port)) = split_authority(authority) else {
        return false;
    };
    o_name == *name && o_port.unwrap_or(default) == port.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, origin: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/whatsapp-web/sessions");
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(()).unwrap()
    }

    fn code(g: &BrowserGuard, host: Option<&str>, origin: Option<&str>) -> &'static str {
        match g.check(&req(host, origin)) {
            Ok(()) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn hosts() {
        let g = BrowserGuard::new(&["wasync.example.com".into()], &[], "http://10.0.0.7:3000");
        for ok in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST",
            "app.localhost:3000",
            "[::1]:3000",
            "10.0.0.7:3000",
            "192.168.1.5",
            "wasync.example.com",
            "wasync.example.com.:443",
        ] {
            assert_eq!(code(&g, Some(ok), None), "ok", "{ok}");
        }
        assert_eq!(code(&g, None, None), "ok");
        for bad in [
            "evil.example:3000",
            "localhost.evil.example",
            "127.0.0.1.nip.io:3000",
            "wasync.example.com.evil",
            "a b",
            "host:port",
        ] {
            assert_eq!(code(&g, Some(bad), None), "host_not_allowed", "{bad}");
        }
        let any = BrowserGuard::new(&["*".into()], &[], "http://127.0.0.1:1");
        assert_eq!(code(&any, Some("evil.example"), None), "ok");
    }

    #[test]
    fn origins() {
        let g = BrowserGuard::new(&[], &["http://localhost:5173".into()], "http://127.0.0.1:1");
        let h = Some("127.0.0.1:3000");
        assert_eq!(code(&g, h, Some("http://127.0.0.1:3000")), "ok");
        assert_eq!(code(&g, h, Some("http://localhost:5173")), "ok");
        assert_eq!(code(&g, Some("localhost"), Some("http://localhost")), "ok");
        assert_eq!(
            code(&g, Some("localhost:443"), Some("https://localhost")),
            "ok"
        );
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:3001",
            "http://127.0.0.1",
            "https://127.0.0.1:3000.evil.example",
            "null",
            "file://",
            "ftp://127.0.0.1:3000",
        ] {
            assert_eq!(code(&g, h, Some(bad)), "origin_not_allowed", "{bad}");
        }
    }
}
