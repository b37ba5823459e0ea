//! The gateway: one hyper server on one port for REST, the WebSocket
//! endpoint and the dashboard.
//!
//! Routing is a match over path segments ([`route`]), so an unknown path is
//! a 404 and a known path with the wrong method a 405 with `Allow`, both as
//! problem+json. Auth, body limits and id validation happen here, before a
//! request reaches a session.

pub mod error;
pub mod plugins_api;
mod rest;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::error::ApiError;
use crate::events::EventBus;
use crate::hub::Hub;
use crate::plugins::wasm::PluginManager;
use crate::session::Sessions;
use crate::storage::Store;

pub type Body = Full<Bytes>;

/// What the routes need.
pub struct Gateway {
    pub sessions: Arc<Sessions>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub hub: Arc<Hub>,
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// The plugin manager, when plugins are enabled (`/plugins` routes).
    pub plugins: Option<Arc<PluginManager>>,
    /// Largest plugin component `POST /plugins` accepts.
    pub max_plugin_bytes: usize,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// Accepts connections until `shutdown`, then lets open requests finish.
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = gw.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gw2 = gw.clone();
        let shutdown = gw.shutdown.clone();
        gw.tasks.spawn(async move {
            let svc = service_fn(move |req| {
                let gw = gw2.clone();
                async move { Ok::<_, Infallible>(handle(gw, peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.as_mut()).await;
                }
            }
        });
    }
}

/// The routes, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Dashboard,
    Healthz,
    Readyz,
    Ws,
    Sessions,
    Session { id: String },
    Qr { id: String },
    Chats { id: String },
    Messages { id: String, chat_id: String },
    SyncChats { id: String },
    Sync { id: String },
    Plugins(plugins_api::PluginRoute),
}

impl Route {
    /// Methods the route answers.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Session { .. } => &[Method::GET, Method::POST, Method::DELETE],
            Route::SyncChats { .. } => &[Method::POST],
            Route::Plugins(p) => p.methods(),
            _ => &[Method::GET],
        }
    }

    /// Routes served without the API key.
    fn is_public(&self) -> bool {
        matches!(self, Route::Healthz | Route::Dashboard)
    }
}

/// Maps a (percent-decoded) path onto a route; `None` is a 404.
pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let r = match segs.as_slice() {
        [""] | ["index.html"] => Route::Dashboard,
        ["healthz"] => Route::Healthz,
        ["readyz"] => Route::Readyz,
        ["ws"] => Route::Ws,
        ["whatsapp-web", "sessions"] => Route::Sessions,
        ["whatsapp-web", "session", id] => Route::Session { id: id.to_string() },
        ["whatsapp-web", "session", id, "qr"] => Route::Qr { id: id.to_string() },
        ["whatsapp-web", "session", id, "chats"] => Route::Chats { id: id.to_string() },
        ["whatsapp-web", "session", id, "chats", chat, "messages"] => Route::Messages {
            id: id.to_string(),
            chat_id: chat.to_string(),
        },
        ["whatsapp-web", "session", id, "sync-chats"] => Route::SyncChats { id: id.to_string() },
        ["whatsapp-web", "session", id, "sync"] => Route::Sync { id: id.to_string() },
        ["plugins"] => Route::Plugins(plugins_api::PluginRoute::List),
        ["plugins", "reload"] => Route::Plugins(plugins_api::PluginRoute::Reload),
        ["plugins", name] => Route::Plugins(plugins_api::PluginRoute::One {
            name: name.to_string(),
        }),
        _ => return None,
    };
    Some(r)
}

#[tracing::instrument(name = "gateway.request", skip_all, fields(method = %req.method(), path = %req.uri().path()))]
async fn handle(gw: Arc<Gateway>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let resp = match dispatch(&gw, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%peer, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

async fn dispatch(gw: &Arc<Gateway>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Some(route) = route(req.uri().path()) else {
        return Err(ApiError::not_found(format!(
            "no route for {}",
            req.uri().path()
        )));
    };
    if !route.methods().contains(req.method()) {
        let allow = route
            .methods()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed here; use {allow}", req.method()),
        );
        e.allow = Some(allow);
        return Err(e);
    }
    if !route.is_public() {
        authorize(gw, &req)?;
    }
    match route {
        Route::Ws => ws::upgrade(gw.clone(), req),
        Route::Plugins(p) => plugins_api::handle(gw, p, req).await,
        other => rest::handle(gw, other, req).await,
    }
}

/// Checks the API key (header `Authorization: Bearer <key>` or
/// `x-api-key`, or `apiKey` in the query for WebSocket clients that cannot
/// set headers) in constant time.
fn authorize(gw: &Gateway, req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(expected) = &gw.api_key else {
        return Ok(());
    };
    let from_header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let given = from_header.or_else(|| query_param(req.uri().query(), "apiKey"));
    let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send Authorization: Bearer <key>",
        ))
    }
}

/// One query parameter, decoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Reads a body up to `limit` bytes: 413 past it.
pub(crate) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(limit));
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(e) => Err(ApiError::bad_request(
            "bad_body",
            format!("could not read the request body: {e}"),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
    .with("limit", limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_segment() {
        assert_eq!(route("/"), Some(Route::Dashboard));
        assert_eq!(
            route("/whatsapp-web/session/abc/chats/123%40c.us/messages"),
            Some(Route::Messages {
                id: "abc".into(),
                chat_id: "123@c.us".into()
            })
        );
        assert_eq!(route("/whatsapp-web/session/abc/nope"), None);
        assert_eq!(
            route("/whatsapp-web/session/"),
            Some(Route::Session { id: "".into() })
        );
        assert_eq!(
            route("/whatsapp-web/session/..%2Fx"),
            Some(Route::Session { id: "../x".into() })
        );
    }
}
