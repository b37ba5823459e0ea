//! Real proxy servers that demand credentials, for sessions with
//! `webdriver.proxy`: an HTTP proxy (`CONNECT` with `Proxy-Authorization:
//! Basic`) and a SOCKS5 proxy (username/password, RFC 1928/1929).
//!
//! Each records the targets it opened (`host:port`) and the attempts it
//! refused, so a test can tell that a page came through it and that wrong
//! credentials were turned away. Written small and strict on purpose: what
//! the host sends must be what the protocols say, nothing a lenient proxy
//! would forgive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The protocol a [`UpstreamProxy`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Socks5,
}

#[derive(Debug, Default)]
struct Seen {
    targets: Mutex<Vec<String>>,
    refused: AtomicU64,
}

/// A running proxy that requires `username`/`password`; stops when dropped.
#[derive(Debug)]
pub struct UpstreamProxy {
    pub kind: Kind,
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    stop: CancellationToken,
}

impl Drop for UpstreamProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl UpstreamProxy {
    /// Listens on `127.0.0.1:0`.
    pub async fn start(kind: Kind, username: &str, password: &str) -> UpstreamProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let seen = Arc::new(Seen::default());
        let stop = CancellationToken::new();
        let creds = Arc::new((username.to_owned(), password.to_owned()));
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let (client, _) = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                    };
                    let (seen, stop, creds) = (seen.clone(), stop.clone(), creds.clone());
                    tokio::spawn(async move {
                        let up = match kind {
                            Kind::Http => http_connect(client, &creds, &seen).await,
                            Kind::Socks5 => socks5(client, &creds, &seen).await,
                        };
                        if let Some((mut client, mut server)) = up {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            }
                        }
                    });
                }
            });
        }
        UpstreamProxy {
            kind,
            addr,
            seen,
            stop,
        }
    }

    /// The URL a session names, credentials percent-encoded.
    pub fn url(&self, username: &str, password: &str) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Socks5 => "socks5h",
        };
        format!(
            "{scheme}://{}:{}@{}",
            enc(username),
            enc(password),
            self.addr
        )
    }

    /// Targets opened so far (`host:port`), in order.
    pub fn targets(&self) -> Vec<String> {
        self.seen.targets.lock().unwrap().clone()
    }

    /// Attempts refused for wrong or missing credentials.
    pub fn refused(&self) -> u64 {
        self.seen.refused.load(Ordering::SeqCst)
    }
}

async fn open(target: &str, seen: &Seen) -> Option<TcpStream> {
    let s = TcpStream::connect(target).await.ok()?;
    seen.targets.lock().unwrap().push(target.to_owned());
    Some(s)
}

async fn http_connect(
    mut client: TcpStream,
    (user, pass): &(String, String),
    seen: &Seen,
) -> Option<(TcpStream, TcpStream)> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return None;
        }
        head.push(client.read_u8().await.ok()?);
    }
    let head = String::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?, first.next()?.to_owned());
    if method != "CONNECT" {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return None;
    }
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    );
    let authorized = lines.any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.eq_ignore_ascii_case("proxy-authorization") && v.trim() == want)
    });
    if !authorized {
        seen.refused.fetch_add(1, Ordering::SeqCst);
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return None;
    }
    let Some(server) = open(&target, seen).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return None;
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .ok()?;
    Some((client, server))
}

async fn socks5(
    mut c: TcpStream,
    (user, pass): &(String, String),
    seen: &Seen,
) -> Option<(TcpStream, TcpStream)> {
    // Greeting: only username/password (0x02) is accepted.
    let (ver, n) = (c.read_u8().await.ok()?, c.read_u8().await.ok()?);
    let mut methods = vec![0; n as usize];
    c.read_exact(&mut methods).await.ok()?;
    if ver != 5 || !methods.contains(&2) {
        seen.refused.fetch_add(1, Ordering::SeqCst);
        let _ = c.write_all(&[5, 0xFF]).await;
        return None;
    }
    c.write_all(&[5, 2]).await.ok()?;
    // RFC 1929.
    if c.read_u8().await.ok()? != 1 {
        return None;
    }
    let (u, p) = (read_field(&mut c).await?, read_field(&mut c).await?);
    if u != user.as_bytes() || p != pass.as_bytes() {
        seen.refused.fetch_add(1, Ordering::SeqCst);
        let _ = c.write_all(&[1, 1]).await;
        return None;
    }
    c.write_all(&[1, 0]).await.ok()?;
    // The request: CONNECT only.
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await.ok()?;
    if req[..3] != [5, 1, 0] {
        let _ = c.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return None;
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).await.ok()?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => String::from_utf8(read_field(&mut c).await?).ok()?,
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a).await.ok()?;
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        _ => return None,
    };
    let port = c.read_u16().await.ok()?;
    let Some(server) = open(&format!("{host}:{port}"), seen).await else {
        let _ = c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return None;
    };
    c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.ok()?;
    Some((c, server))
}

/// A length-prefixed field (a SOCKS5 name, username or password).
async fn read_field(c: &mut TcpStream) -> Option<Vec<u8>> {
    let len = c.read_u8().await.ok()?;
    let mut v = vec![0; len as usize];
    c.read_exact(&mut v).await.ok()?;
    Some(v)
}
