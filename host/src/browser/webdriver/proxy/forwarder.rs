//! The per-session forwarder: an HTTP proxy on `127.0.0.1:0` that Chromium
//! uses without credentials, opening every connection through the session's
//! real proxy with them.
//!
//! Everything upstream is a tunnel: Chromium's `CONNECT host:port` (all of
//! WhatsApp Web: HTTPS and WSS on 443) becomes `CONNECT` with
//! `Proxy-Authorization` at an HTTP proxy, or a SOCKS5 connect; a plain
//! `http://` request is sent through such a tunnel to its origin, one
//! tunnel per request. Nothing is parsed after the tunnel opens: the bytes
//! are copied both ways.
//!
//! The forwarder remembers why a connection failed while none has
//! succeeded ([`Forwarder::failure`]), which is how a refused password or
//! an unreachable proxy becomes a session's named `disconnected` reason.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{ProxyScheme, ProxyUrl, authority};

/// How long opening one upstream connection (TCP and handshake) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head accepted from an HTTP proxy's `CONNECT`.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

type Body = BoxBody<Bytes, hyper::Error>;

/// A running forwarder; stops (and drops its connections) when dropped.
pub struct Forwarder {
    port: u16,
    state: Arc<State>,
    stop: CancellationToken,
}

struct State {
    upstream: ProxyUrl,
    /// Upstream connections opened.
    opened: AtomicU64,
    /// Why opening one failed: the first failure of the proxy itself
    /// (unreachable, credentials refused) wins over the last refusal of
    /// one target, which may be one of Chromium's background hosts rather
    /// than the page's.
    failure: Mutex<Option<DialError>>,
}

/// Why a connection through the proxy could not be opened.
#[derive(Debug, Clone)]
struct DialError {
    /// The proxy itself failed (not one target it refused or could not reach).
    proxy_level: bool,
    why: String,
}

fn proxy_err(why: impl Into<String>) -> DialError {
    DialError {
        proxy_level: true,
        why: why.into(),
    }
}

fn target_err(why: impl Into<String>) -> DialError {
    DialError {
        proxy_level: false,
        why: why.into(),
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Forwarder {
    /// Listens on `127.0.0.1:0` and forwards through `upstream`.
    pub async fn start(upstream: ProxyUrl) -> std::io::Result<Forwarder> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            upstream,
            opened: AtomicU64::new(0),
            failure: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        Ok(Forwarder { port, state, stop })
    }

    /// Chromium's `--proxy-server`.
    pub fn proxy_server(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Why the proxy carried nothing: `Some` once a connection through it
    /// failed while none has been opened. A proxy that works for some
    /// hosts (and refuses others) is not a failed proxy.
    pub fn failure(&self) -> Option<String> {
        if self.state.opened.load(Ordering::SeqCst) > 0 {
            return None;
        }
        lock(&self.state.failure).as_ref().map(|e| e.why.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "proxy forwarder accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let stop = stop.clone();
        let ended = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let stop = stop.clone();
                async move { Ok::<_, Infallible>(handle(req, state, stop).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = ended.cancelled() => {}
            }
        });
    }
}

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    stop: CancellationToken,
) -> Response<Body> {
    let target = req
        .uri()
        .authority()
        .map(|a| (a.host().trim_matches(['[', ']']).to_owned(), a.port_u16()));
    let (host, port) = match (req.method(), target) {
        (&Method::CONNECT, Some((h, Some(p)))) => (h, p),
        (_, Some((h, p))) if req.uri().scheme_str() == Some("http") => (h, p.unwrap_or(80)),
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "this proxy takes CONNECT host:port and absolute http:// requests".into(),
            );
        }
    };
    let upstream = match dial(&state, &host, port).await {
        Ok(s) => s,
        Err(why) => return text(StatusCode::BAD_GATEWAY, why),
    };
    if req.method() == Method::CONNECT {
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let mut client = TokioIo::new(upgraded);
            let mut upstream = upstream;
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
        return Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    }
    match origin_request(req, upstream, stop).await {
        Ok(r) => r.map(BodyExt::boxed),
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("request through the proxy: {e}"),
        ),
    }
}

/// Sends a plain `http://` request through a tunnel to its origin.
async fn origin_request(
    req: Request<Incoming>,
    upstream: TcpStream,
    stop: CancellationToken,
) -> Result<Response<Incoming>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    // Origin-form on the wire; the Host header is already there.
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_default();
    for h in [
        "proxy-connection",
        "proxy-authorization",
        "connection",
        "keep-alive",
    ] {
        parts.headers.remove(h);
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await?;
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = conn => {}
        }
    });
    sender.send_request(Request::from_parts(parts, body)).await
}

/// Opens a connection to `host:port` through the upstream proxy, and
/// records the outcome. The error is the reason a session reports: it
/// names the proxy by `host:port`, never its credentials.
async fn dial(state: &State, host: &str, port: u16) -> Result<TcpStream, String> {
    let p = &state.upstream;
    let r = match tokio::time::timeout(DIAL_TIMEOUT, dial_upstream(p, host, port)).await {
        Ok(r) => r,
        Err(_) => Err(proxy_err(format!(
            "no answer within {}s",
            DIAL_TIMEOUT.as_secs()
        ))),
    };
    match r {
        Ok(s) => {
            state.opened.fetch_add(1, Ordering::SeqCst);
            Ok(s)
        }
        Err(mut e) => {
            e.why = format!("proxy {}: {}", p.authority(), e.why);
            tracing::debug!(reason = %e.why, target = %authority(host, port), "proxy connection failed");
            let mut failure = lock(&state.failure);
            if !failure.as_ref().is_some_and(|f| f.proxy_level) {
                *failure = Some(e.clone());
            }
            Err(e.why)
        }
    }
}

async fn dial_upstream(p: &ProxyUrl, host: &str, port: u16) -> Result<TcpStream, DialError> {
    let proxy = (p.host.as_str(), p.port);
    match p.scheme {
        ProxyScheme::Http => {
            let s = TcpStream::connect(proxy)
                .await
                .map_err(|e| proxy_err(format!("cannot connect: {e}")))?;
            let _ = s.set_nodelay(true);
            http_connect(s, p, &authority(host, port)).await
        }
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
            use tokio_socks::TargetAddr;
            use tokio_socks::tcp::Socks5Stream;
            let target: TargetAddr<'_> = if p.scheme == ProxyScheme::Socks5 {
                // curl's `socks5://`: the name is resolved here.
                let addr = tokio::net::lookup_host((host, port))
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| target_err(format!("cannot resolve {host}")))?;
                TargetAddr::Ip(addr)
            } else {
                TargetAddr::Domain(host.into(), port)
            };
            let socket = TcpStream::connect(proxy)
                .await
                .map_err(|e| proxy_err(format!("cannot connect: {e}")))?;
            let _ = socket.set_nodelay(true);
            let s = match &p.credentials {
                Some(c) => {
                    Socks5Stream::connect_with_password_and_socket(
                        socket,
                        target,
                        &c.username,
                        &c.password,
                    )
                    .await
                }
                None => Socks5Stream::connect_with_socket(socket, target).await,
            };
            s.map(Socks5Stream::into_inner).map_err(|e| {
                use tokio_socks::Error as E;
                match e {
                    E::PasswordAuthFailure(_) => proxy_err("credentials refused (SOCKS5)"),
                    E::NoAcceptableAuthMethods => proxy_err(
                        "accepts none of the offered authentications (SOCKS5; credentials missing?)",
                    ),
                    E::Io(e) => proxy_err(format!("SOCKS5: {e}")),
                    E::InvalidResponseVersion
                    | E::UnknownAuthMethod
                    | E::InvalidReservedByte
                    | E::UnknownAddressType => proxy_err(format!("not a SOCKS5 proxy? {e}")),
                    e => target_err(format!("SOCKS5 connect to {}: {e}", authority(host, port))),
                }
            })
        }
    }
}

/// `CONNECT` at an HTTP proxy; the stream is the tunnel once it answers
/// 2xx.
async fn http_connect(
    mut s: TcpStream,
    p: &ProxyUrl,
    target: &str,
) -> Result<TcpStream, DialError> {
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = &p.credentials {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.password));
        head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| proxy_err(format!("CONNECT: {e}")))?;
    // Byte by byte to the end of the head: whatever follows belongs to
    // the tunnel (a proxy sends nothing more before the client speaks, but
    // reading past the head would lose it if one did).
    let mut got = Vec::with_capacity(256);
    while !got.ends_with(b"\r\n\r\n") {
        if got.len() >= MAX_CONNECT_HEAD {
            return Err(proxy_err("CONNECT answer too long"));
        }
        let b = s
            .read_u8()
            .await
            .map_err(|e| proxy_err(format!("CONNECT: no answer ({e})")))?;
        got.push(b);
    }
    let line = String::from_utf8_lossy(&got);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| proxy_err("CONNECT: not an HTTP answer"))?;
    match status {
        200..=299 => Ok(s),
        407 if p.credentials.is_some() => Err(proxy_err("credentials refused (HTTP 407)")),
        407 => Err(proxy_err("asks for credentials (HTTP 407)")),
        other => Err(target_err(format!(
            "CONNECT {target} answered HTTP {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP proxy that answers every `CONNECT` with `status` and hands
    /// back the request heads it got.
    async fn fake_proxy(status: u16) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    head.push(s.read_u8().await.unwrap());
                }
                let _ = tx.send(String::from_utf8(head).unwrap());
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (port, rx)
    }

    async fn connect_through(f: &Forwarder, target: &str) -> String {
        let mut c = TcpStream::connect(("127.0.0.1", f.port)).await.unwrap();
        c.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(c.read_u8().await.unwrap());
        }
        String::from_utf8(head).unwrap()
    }

    #[tokio::test]
    async fn credentials_go_upstream_and_a_refusal_is_named_without_them() {
        let (port, mut heads) = fake_proxy(407).await;
        let url = format!("http://alice:s%3Acret@127.0.0.1:{port}");
        let f = Forwarder::start(ProxyUrl::parse(&url).unwrap())
            .await
            .unwrap();
        assert_eq!(f.failure(), None);
        let answer = connect_through(&f, "[::1]:443").await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        let head = heads.recv().await.unwrap();
        assert!(head.starts_with("CONNECT [::1]:443 HTTP/1.1\r\n"), "{head}");
        let token = base64::engine::general_purpose::STANDARD.encode("alice:s:cret");
        assert!(
            head.contains(&format!("Proxy-Authorization: Basic {token}\r\n")),
            "{head}"
        );
        let why = f.failure().unwrap();
        assert!(why.contains("credentials refused (HTTP 407)"), "{why}");
        assert!(!why.contains("cret") && !answer.contains("cret"), "{why}");
    }

    #[tokio::test]
    async fn a_refused_target_is_not_a_failed_proxy_once_one_opened() {
        let (port, _heads) = fake_proxy(403).await;
        let f = Forwarder::start(ProxyUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap())
            .await
            .unwrap();
        connect_through(&f, "blocked.test:443").await;
        let why = f.failure().unwrap();
        assert!(
            why.contains("CONNECT blocked.test:443 answered HTTP 403"),
            "{why}"
        );
        f.state.opened.fetch_add(1, Ordering::SeqCst);
        assert_eq!(f.failure(), None);
    }

    #[tokio::test]
    async fn an_unreachable_proxy_is_named() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        for scheme in ["http", "socks5h"] {
            let url = format!("{scheme}://u:p@127.0.0.1:{port}");
            let f = Forwarder::start(ProxyUrl::parse(&url).unwrap())
                .await
                .unwrap();
            let answer = connect_through(&f, "web.whatsapp.com:443").await;
            assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
            let why = f.failure().unwrap();
            assert!(
                why.contains(&format!("proxy 127.0.0.1:{port}: cannot connect")),
                "{why}"
            );
        }
    }
}
