//! Passing a command to the host that owns its session, over plain HTTP.
//!
//! The request goes out as it came in (method, path and query, JSON body)
//! with the cluster's key (the hosts share `WASYNC_API_KEY`) and a
//! `x-wasync-forwarded-by` header naming this host; the owner's answer is
//! passed back unchanged. A forwarded request is never forwarded again, so
//! two hosts that disagree for a moment about an owner cannot bounce a
//! request between them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Peer;

/// The header that marks a forwarded request (its value: the sender).
pub const FORWARDED_BY: &str = "x-wasync-forwarded-by";
/// The header on a forwarded answer naming the host that produced it.
pub const SERVED_BY: &str = "x-wasync-served-by";

/// Largest answer passed back (a QR PNG is a few KiB).
const MAX_ANSWER: usize = 8 << 20;

/// Why a forward failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the owning host {host} cannot be reached: {cause}")]
    Unreachable { host: String, cause: String },
    #[error("invalid forward target {0}")]
    BadTarget(String),
}

/// An HTTP client for the other hosts.
#[derive(Clone)]
pub struct Forwarder {
    host_id: String,
    api_key: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    pub fn new(host_id: String, api_key: Option<String>) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        http.set_nodelay(true);
        Self {
            host_id,
            api_key,
            client: Client::builder(TokioExecutor::new()).build(http),
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends `method path_and_query` with `body` to `peer` and returns its
    /// answer.
    pub async fn forward(
        &self,
        peer: &Peer,
        method: &Method,
        path_and_query: &str,
        content_type: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, ForwardError> {
        let uri = format!("{}{}", peer.url.trim_end_matches('/'), path_and_query);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(FORWARDED_BY, self.host_id.as_str());
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct.clone());
        }
        if let Some(k) = &self.api_key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|_| ForwardError::BadTarget(uri.clone()))?;
        let unreachable = |cause: String| ForwardError::Unreachable {
            host: peer.host_id.clone(),
            cause,
        };
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (parts, incoming) = resp.into_parts();
        let body = http_body_util::Limited::new(incoming, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        let mut out = Response::new(Full::new(body));
        *out.status_mut() = parts.status;
        for name in [
            header::CONTENT_TYPE,
            header::LOCATION,
            header::ALLOW,
            header::CACHE_CONTROL,
            header::WWW_AUTHENTICATE,
        ] {
            if let Some(v) = parts.headers.get(&name) {
                out.headers_mut().insert(name, v.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&peer.host_id) {
            out.headers_mut().insert(SERVED_BY, v);
        }
        Ok(out)
    }
}

/// Whether a request was forwarded by another host already.
pub fn is_forwarded<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(FORWARDED_BY)
}

/// The status a forward failure is answered with.
pub fn failure_status() -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}
