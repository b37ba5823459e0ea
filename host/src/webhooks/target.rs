//! Where a webhook may point: the URL's shape, and the addresses it may
//! reach (the SSRF guard).
//!
//! A webhook makes the server send requests to a URL a client chose. Left
//! open, anyone with the API key could make it reach what only the server
//! reaches: a cloud metadata service (`169.254.169.254`), the database, an
//! admin port on loopback. So every address a delivery connects to must be
//! public unless an operator lists its network in
//! `WASYNC_WEBHOOK_ALLOW_PRIVATE`. The check runs twice: at create (the
//! name is resolved and every address checked, for a clear 400), and at
//! every connection, inside the client's resolver, on the very addresses
//! it connects to. A name that resolved to a public address at create and
//! to `127.0.0.1` later (DNS rebinding) is refused at delivery.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A network `addr/prefix`, e.g. `10.0.0.0/8`, `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Parses `a.b.c.d/n`, `v6::/n`, or a bare address (a single host).
    pub fn parse(text: &str) -> Option<Net> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4 address carried in IPv6 (mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`) is judged as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        v4 => v4,
    }
}

/// Whether `ip` is not a public unicast address: loopback, private
/// (RFC 1918, unique local), link-local (cloud metadata), carrier-grade
/// NAT, unspecified, broadcast, multicast, documentation and reserved
/// ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // 100.64/10 CGNAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24
                || (o[0] == 198 && (18..20).contains(&o[1])) // 198.18/15 benchmarking
                || o[0] >= 240 // 240/4 reserved
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
                || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
        }
    }
}

/// The private networks an operator allows (`WASYNC_WEBHOOK_ALLOW_PRIVATE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<Net>,
}

impl AllowList {
    pub fn new(nets: Vec<Net>) -> Self {
        Self { nets }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_private(ip) || self.nets.iter().any(|n| n.contains(ip))
    }
}

/// Why a URL is refused; each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url must be an absolute http:// or https:// URL: {0}")]
    Malformed(String),
    #[error("url is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error(
        "url must not carry credentials (user:password@): they would be stored and shown; authenticate the receiver with the webhook's secret"
    )]
    Credentials,
    #[error(
        "url {host} reaches {ip}, a private, loopback or link-local address; wasync refuses those unless WASYNC_WEBHOOK_ALLOW_PRIVATE lists its network (SSRF protection, see docs/webhooks.md)"
    )]
    Private { host: String, ip: IpAddr },
    #[error("url host {0} does not resolve")]
    Unresolvable(String),
}

/// A URL that passed the shape checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub uri: http::Uri,
    /// The host without brackets.
    pub host: String,
    pub port: u16,
}

/// Checks the URL's shape: absolute, `http`/`https`, a host, no
/// credentials, at most [`MAX_URL_LEN`] bytes.
pub fn parse(url: &str) -> Result<Target, TargetError> {
    if url.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    let bad = || TargetError::Malformed(url.chars().take(200).collect());
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let scheme = uri.scheme_str().ok_or_else(bad)?;
    let tls = match scheme {
        "http" => false,
        "https" => true,
        _ => return Err(bad()),
    };
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') {
        return Err(TargetError::Credentials);
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err(bad());
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Target { uri, host, port })
}

impl Target {
    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Resolves the host (an IP literal as itself) and checks every
    /// address against `allow`.
    pub async fn check(&self, allow: &AllowList, timeout: Duration) -> Result<(), TargetError> {
        let addrs: Vec<IpAddr> = match self.ip() {
            Some(ip) => vec![ip],
            None => {
                let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
                match tokio::time::timeout(timeout, lookup).await {
                    Ok(Ok(a)) => a.map(|a| a.ip()).collect(),
                    _ => return Err(TargetError::Unresolvable(self.host.clone())),
                }
            }
        };
        if addrs.is_empty() {
            return Err(TargetError::Unresolvable(self.host.clone()));
        }
        match addrs.into_iter().find(|ip| !allow.permits(*ip)) {
            Some(ip) => Err(TargetError::Private {
                host: self.host.clone(),
                ip,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges_are_private_and_public_ones_are_not() {
        for p in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(is_private(ip(p)), "{p} is private");
            assert!(
                !AllowList::default().permits(ip(p)),
                "{p} refused by default"
            );
        }
        for p in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip(p)), "{p} is public");
        }
    }

    #[test]
    fn the_allow_list_opens_only_its_networks() {
        let allow = AllowList::new(vec![
            Net::parse("127.0.0.0/8").unwrap(),
            Net::parse("::1").unwrap(),
        ]);
        assert!(allow.permits(ip("127.0.0.1")));
        assert!(allow.permits(ip("::ffff:127.0.0.1")));
        assert!(allow.permits(ip("::1")));
        assert!(!allow.permits(ip("10.0.0.1")));
        assert!(!allow.permits(ip("169.254.169.254")));
        assert!(Net::parse("10.0.0.0/33").is_none());
        assert!(Net::parse("nope").is_none());
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("10.0.0.1")));
    }

    #[test]
    fn urls_are_absolute_http_without_credentials() {
        let t = parse("https://example.com/hook?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("example.com", 443));
        let t = parse("http://[::1]:8080/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "/hook",
            "http://",
            "http:// example.com/",
            "javascript:alert(1)",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(parse(bad), Err(TargetError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse("https://u:p@example.com/"),
            Err(TargetError::Credentials)
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(parse(&long), Err(TargetError::TooLong));
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let t = parse("http://localhost:9/").unwrap();
        let err = t
            .check(&AllowList::default(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Private { .. }), "{err}");
        let allow = AllowList::new(vec![
            Net::parse("127.0.0.0/8").unwrap(),
            Net::parse("::1/128").unwrap(),
        ]);
        t.check(&allow, Duration::from_secs(5)).await.unwrap();
    }
}
