//! The HTTP client deliveries go out through: hyper-util's pooled client
//! over rustls (HTTPS with the system's roots, or plain HTTP), with a
//! resolver that refuses private addresses at connect time.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use super::target::{self, AllowList};

/// How much of a receiver's answer is read (and thrown away) so the
/// connection can be reused; a longer answer closes it instead.
const MAX_ANSWER: usize = 64 * 1024;

/// Resolves like the system does, then refuses the whole answer if one
/// address is private and not allowed: the addresses checked are the ones
/// the connector dials, so a DNS answer that changes between the create
/// check and a delivery (rebinding) cannot slip through.
#[derive(Clone, Debug)]
struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !allow.permits(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{host} resolves to {}, a private address", bad.ip()),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Sends deliveries.
#[derive(Clone)]
pub struct WebhookClient {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    allow: Arc<AllowList>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client whose requests take at most `timeout` each (connect,
    /// headers and answer together).
    pub fn new(allow: AllowList, timeout: Duration) -> Result<Self, String> {
        let allow = Arc::new(allow);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            allow: allow.clone(),
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS setup: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(https);
        Ok(Self {
            client,
            allow,
            timeout,
        })
    }

    /// POSTs `body` (JSON) with `headers` to `url`; the receiver's status,
    /// or why there is none (`timeout`, `connect: ...`).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<u16, String> {
        let target = target::parse(url).map_err(|e| e.to_string())?;
        // An IP literal never reaches the resolver: check it here.
        if let Some(ip) = target.ip()
            && !self.allow.permits(ip)
        {
            return Err(format!("{ip} is a private address"));
        }
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(target.uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("wasync-webhooks/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            let v = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
            req = req.header(*name, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(describe)?;
            let status = resp.status().as_u16();
            // Read a short answer so the connection goes back to the pool.
            let _ = Limited::new(resp.into_body(), MAX_ANSWER).collect().await;
            Ok(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err("timeout".into()),
        }
    }
}

/// The client error with its causes, one line.
fn describe(e: hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text.chars().take(300).collect()
}
