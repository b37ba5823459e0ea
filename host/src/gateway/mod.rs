//! The gateway: one hyper server on one port for REST, the WebSocket
//! endpoint and the dashboard.
//!
//! Routing is a match over path segments ([`route`]), so an unknown path is
//! a 404 and a known path with the wrong method a 405 with `Allow`, both as
//! problem+json. Auth, body limits and id validation happen here, before a
//! request reaches a session.

pub mod error;
mod openapi;
mod origin;
pub mod plugins_api;
pub mod protocol;
mod qr;
mod rest;
mod socketio;
pub mod webhooks_api;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socketioxide::SocketIo;
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
use crate::telemetry::{Metrics, StatusLabel};

/// Body of the responses this module builds.
pub type Body = Full<Bytes>;

/// Body of every response on the wire (ours, or Socket.IO's).
pub type WireBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// What the gateway is given.
pub struct GatewayDeps {
    pub sessions: Arc<Sessions>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// The plugin manager, when plugins are enabled (`/plugins` routes).
    pub plugins: Option<Arc<PluginManager>>,
    /// Largest plugin component `POST /plugins` accepts.
    pub max_plugin_bytes: usize,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// This host's place in the cluster (forwarding, `GET /cluster`).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Live events of sessions run on other hosts, when there are others.
    pub fabric: Option<Arc<crate::cluster::fabric::Fabric>>,
    /// Host names served besides IP literals, localhost and the advertise
    /// URL's host (`WASYNC_ALLOWED_HOSTS`).
    pub allowed_hosts: Vec<String>,
    /// Origins whose pages may call the server besides its own
    /// (`WASYNC_ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
    /// How long a request body may take to arrive (`WASYNC_BODY_TIMEOUT_MS`).
    pub body_timeout: Duration,
    /// How often an idle `/ws` client is pinged; one silent for twice this
    /// is closed (`WASYNC_WS_PING_MS`). Also Socket.IO's ping interval.
    pub ws_ping: Duration,
    /// The webhooks subsystem (`/webhooks` routes).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

/// What the routes need.
pub struct Gateway {
    pub sessions: Arc<Sessions>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// The plugin manager, when plugins are enabled (`/plugins` routes).
    pub plugins: Option<Arc<PluginManager>>,
    /// Largest plugin component `POST /plugins` accepts.
    pub max_plugin_bytes: usize,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub cluster: Arc<crate::cluster::Cluster>,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// `/ws` ping interval; twice it without a frame closes the client.
    pub ws_ping: Duration,
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    pub protocol: protocol::Protocol,
    guard: origin::BrowserGuard,
    socketio: socketio::Handler,
    io: SocketIo,
}

impl Gateway {
    pub fn new(d: GatewayDeps) -> Self {
        let protocol = protocol::Protocol {
            sessions: d.sessions.clone(),
            hub: d.hub.clone(),
            fabric: d.fabric.clone(),
        };
        let (socketio, io) = socketio::build(protocol.clone(), d.metrics.clone(), d.ws_ping);
        let guard = origin::BrowserGuard::new(
            &d.allowed_hosts,
            &d.allowed_origins,
            &d.cluster.me().advertise_url,
        );
        Gateway {
            sessions: d.sessions,
            store: d.store,
            bus: d.bus,
            hub: d.hub,
            metrics: d.metrics,
            api_key: d.api_key,
            max_body_bytes: d.max_body_bytes,
            plugins: d.plugins,
            max_plugin_bytes: d.max_plugin_bytes,
            shutdown: d.shutdown,
            tasks: d.tasks,
            cluster: d.cluster,
            body_timeout: d.body_timeout,
            ws_ping: d.ws_ping,
            webhooks: d.webhooks,
            protocol,
            guard,
            socketio,
            io,
        }
    }

    /// Disconnects every Socket.IO client (at shutdown).
    pub async fn close_socketio(&self) {
        self.io.close().await;
    }
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
    SocketIo,
    Metrics,
    OpenApi,
    Sessions,
    Session { id: String },
    Qr { id: String },
    PairingCode { id: String },
    Chats { id: String },
    Messages { id: String, chat_id: String },
    Contacts { id: String },
    Contact { id: String, contact_id: String },
    SyncChats { id: String },
    ChatSync { id: String, chat_id: String },
    Sync { id: String },
    Quarantine { id: String },
    Cluster,
    Plugins(plugins_api::PluginRoute),
    Webhooks(webhooks_api::WebhookRoute),
}

impl Route {
    /// Methods the route answers.
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Session { .. } => &[Method::GET, Method::POST, Method::DELETE],
            Route::Quarantine { .. } => &[Method::GET, Method::DELETE],
            Route::SyncChats { .. } | Route::ChatSync { .. } => &[Method::POST],
            // Engine.IO long-polling posts its packets.
            Route::SocketIo => &[Method::GET, Method::POST],
            Route::Plugins(p) => p.methods(),
            Route::Webhooks(w) => w.methods(),
            _ => &[Method::GET],
        }
    }

    /// The path template, as in the OpenAPI document.
    pub fn template(&self) -> &'static str {
        match self {
            Route::Dashboard => "/",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Ws => "/ws",
            Route::SocketIo => "/socket.io/",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::Sessions => "/whatsapp-web/sessions",
            Route::Session { .. } => "/whatsapp-web/session/{id}",
            Route::Qr { .. } => "/whatsapp-web/session/{id}/qr",
            Route::PairingCode { .. } => "/whatsapp-web/session/{id}/pairing-code",
            Route::Chats { .. } => "/whatsapp-web/session/{id}/chats",
            Route::Messages { .. } => "/whatsapp-web/session/{id}/chats/{chatId}/messages",
            Route::Contacts { .. } => "/whatsapp-web/session/{id}/contacts",
            Route::Contact { .. } => "/whatsapp-web/session/{id}/contacts/{contactId}",
            Route::SyncChats { .. } => "/whatsapp-web/session/{id}/sync-chats",
            Route::ChatSync { .. } => "/whatsapp-web/session/{id}/chats/{chatId}/sync",
            Route::Sync { .. } => "/whatsapp-web/session/{id}/sync",
            Route::Quarantine { .. } => "/whatsapp-web/session/{id}/quarantine",
            Route::Cluster => "/cluster",
            Route::Plugins(plugins_api::PluginRoute::List) => "/plugins",
            Route::Plugins(plugins_api::PluginRoute::One { .. }) => "/plugins/{name}",
            Route::Plugins(plugins_api::PluginRoute::Reload) => "/plugins/reload",
            Route::Webhooks(w) => w.template(),
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
        ["socket.io", ..] => Route::SocketIo,
        ["metrics"] => Route::Metrics,
        ["openapi.json"] => Route::OpenApi,
        ["cluster"] => Route::Cluster,
        ["whatsapp-web", "sessions"] => Route::Sessions,
        ["whatsapp-web", "session", id] => Route::Session { id: id.to_string() },
        ["whatsapp-web", "session", id, "qr"] => Route::Qr { id: id.to_string() },
        ["whatsapp-web", "session", id, "pairing-code"] => {
            Route::PairingCode { id: id.to_string() }
        }
        ["whatsapp-web", "session", id, "chats"] => Route::Chats { id: id.to_string() },
        ["whatsapp-web", "session", id, "chats", chat, "messages"] => Route::Messages {
            id: id.to_string(),
            chat_id: chat.to_string(),
        },
        ["whatsapp-web", "session", id, "chats", chat, "sync"] => Route::ChatSync {
            id: id.to_string(),
            chat_id: chat.to_string(),
        },
        ["whatsapp-web", "session", id, "contacts"] => Route::Contacts { id: id.to_string() },
        ["whatsapp-web", "session", id, "contacts", contact] => Route::Contact {
            id: id.to_string(),
            contact_id: contact.to_string(),
        },
        ["whatsapp-web", "session", id, "sync-chats"] => Route::SyncChats { id: id.to_string() },
        ["whatsapp-web", "session", id, "sync"] => Route::Sync { id: id.to_string() },
        ["whatsapp-web", "session", id, "quarantine"] => Route::Quarantine { id: id.to_string() },
        ["plugins"] => Route::Plugins(plugins_api::PluginRoute::List),
        ["plugins", "reload"] => Route::Plugins(plugins_api::PluginRoute::Reload),
        ["plugins", name] => Route::Plugins(plugins_api::PluginRoute::One {
            name: name.to_string(),
        }),
        ["webhooks"] => Route::Webhooks(webhooks_api::WebhookRoute::List),
        ["webhooks", id] => Route::Webhooks(webhooks_api::WebhookRoute::One { id: id.to_string() }),
        ["webhooks", id, "deliveries"] => {
            Route::Webhooks(webhooks_api::WebhookRoute::Deliveries { id: id.to_string() })
        }
        ["webhooks", id, "deliveries", event, "redeliver"] => {
            Route::Webhooks(webhooks_api::WebhookRoute::Redeliver {
                id: id.to_string(),
                event_id: event.to_string(),
            })
        }
        _ => return None,
    };
    Some(r)
}

#[tracing::instrument(name = "gateway.request", skip_all, fields(method = %req.method(), path = %req.uri().path()))]
async fn handle(gw: Arc<Gateway>, peer: SocketAddr, req: Request<Incoming>) -> Response<WireBody> {
    let started = std::time::Instant::now();
    let resp = match dispatch(&gw, req).await {
        Ok(r) => r,
        Err(e) => boxed(e.into_response()),
    };
    let class = format!("{}xx", resp.status().as_u16() / 100);
    gw.metrics
        .http_requests
        .get_or_create(&StatusLabel { status: class })
        .inc();
    tracing::debug!(%peer, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

pub(crate) fn boxed(resp: Response<Body>) -> Response<WireBody> {
    resp.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

async fn dispatch(
    gw: &Arc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<WireBody>, ApiError> {
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
    gw.guard.check(&req)?;
    if !route.is_public() {
        authorize(gw, &route, &req)?;
    }
    match route {
        Route::Ws => ws::upgrade(gw.clone(), req).map(boxed),
        // A long-polling POST only hands over packets and is answered at
        // once, so the whole request gets the body time limit: Socket.IO
        // reads the body itself, past `read_body`'s. (GET polls wait for
        // data by design and are bounded by the ping timeout instead.)
        Route::SocketIo if req.method() == Method::POST => {
            match tokio::time::timeout(gw.body_timeout, (gw.socketio)(req)).await {
                Ok(resp) => Ok(resp),
                Err(_) => Err(body_timeout(gw.body_timeout)),
            }
        }
        Route::SocketIo => Ok((gw.socketio)(req).await),
        Route::Plugins(p) => plugins_api::handle(gw, p, req).await.map(boxed),
        Route::Webhooks(w) => webhooks_api::handle(gw, w, req).await.map(boxed),
        other => rest::handle(gw, other, req).await.map(boxed),
    }
}

/// Checks the API key (header `Authorization: Bearer <key>` or
/// `x-api-key`) in constant time. `apiKey` in the query is taken only on
/// `/ws` and `/socket.io/`, for browser WebSocket clients that cannot set
/// headers: elsewhere a key in a URL would end up in access logs and
/// browser history, and is refused like a wrong one.
fn authorize(gw: &Gateway, route: &Route, req: &Request<Incoming>) -> Result<(), ApiError> {
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
    let query_ok = matches!(route, Route::Ws | Route::SocketIo);
    let given = from_header.or_else(|| {
        query_ok
            .then(|| query_param(req.uri().query(), "apiKey"))
            .flatten()
    });
    let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())));
    if ok {
        Ok(())
    } else if !query_ok && query_param(req.uri().query(), "apiKey").is_some() {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "apiKey in the query is accepted only on /ws and /socket.io/: send Authorization: Bearer <key>",
        ))
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

/// Reads a body up to `limit` bytes: 413 past it, 408 when it has not
/// arrived within `timeout` (a client announcing a body and trickling it
/// would otherwise hold this task; the 408 closes its connection).
pub(crate) async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(limit));
    }
    let read = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(body_timeout(timeout)),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(e)) => Err(ApiError::bad_request(
            "bad_body",
            format!("could not read the request body: {e}"),
        )),
    }
}

fn body_timeout(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {} ms",
            timeout.as_millis()
        ),
    )
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

    /// One request path per route; the match below fails to compile when a
    /// route is added without a sample here.
    fn samples() -> Vec<&'static str> {
        let all = [
            "/",
            "/healthz",
            "/readyz",
            "/ws",
            "/socket.io/",
            "/metrics",
            "/openapi.json",
            "/whatsapp-web/sessions",
            "/whatsapp-web/session/s1",
            "/whatsapp-web/session/s1/qr",
            "/whatsapp-web/session/s1/pairing-code",
            "/whatsapp-web/session/s1/chats",
            "/whatsapp-web/session/s1/chats/c%40c.us/messages",
            "/whatsapp-web/session/s1/contacts",
            "/whatsapp-web/session/s1/contacts/123%40lid",
            "/whatsapp-web/session/s1/sync-chats",
            "/whatsapp-web/session/s1/chats/c%40c.us/sync",
            "/whatsapp-web/session/s1/sync",
            "/whatsapp-web/session/s1/quarantine",
            "/cluster",
            "/plugins",
            "/plugins/redact",
            "/plugins/reload",
            "/webhooks",
            "/webhooks/w1",
            "/webhooks/w1/deliveries",
            "/webhooks/w1/deliveries/e1/redeliver",
        ];
        for p in all {
            match route(p).unwrap() {
                Route::Dashboard
                | Route::Healthz
                | Route::Readyz
                | Route::Ws
                | Route::SocketIo
                | Route::Metrics
                | Route::OpenApi
                | Route::Sessions
                | Route::Session { .. }
                | Route::Qr { .. }
                | Route::PairingCode { .. }
                | Route::Chats { .. }
                | Route::Messages { .. }
                | Route::Contacts { .. }
                | Route::Contact { .. }
                | Route::SyncChats { .. }
                | Route::ChatSync { .. }
                | Route::Sync { .. }
                | Route::Quarantine { .. }
                | Route::Cluster
                | Route::Plugins(_)
                | Route::Webhooks(_) => {}
            }
        }
        all.to_vec()
    }

    #[test]
    fn every_route_and_method_is_in_the_openapi_document() {
        let doc = openapi::document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut templates = std::collections::HashSet::new();
        for p in samples() {
            let r = route(p).unwrap();
            templates.insert(r.template());
            let item = paths
                .get(r.template())
                .unwrap_or_else(|| panic!("{} missing from /openapi.json", r.template()));
            for m in r.methods() {
                assert!(
                    item.get(m.as_str().to_lowercase()).is_some(),
                    "{} {} missing from /openapi.json",
                    m,
                    r.template()
                );
            }
        }
        assert_eq!(templates.len(), 27, "every route has its own template");
        // ...and the document has nothing the router does not serve.
        for p in paths.keys() {
            assert!(
                templates.contains(p.as_str()),
                "{p} is documented but not routed"
            );
        }
        // Schemas the paths refer to are present.
        for schema in [
            "SessionSnapshot",
            "SyncRun",
            "ChatPage",
            "MessagePage",
            "Problem",
            "CreateOptions",
            "StoredMessage",
            "PairingCode",
            "LoginOptions",
            "CreateWebhook",
            "WebhookView",
            "DeliveryPage",
        ] {
            assert!(
                doc["components"]["schemas"].get(schema).is_some(),
                "{schema} missing"
            );
        }
    }

    #[test]
    fn the_document_says_what_the_server_does() {
        let doc = openapi::document();
        let mut ops = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops += 1;
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("403"), "{method} {path}: 403");
                for (status, r) in responses {
                    let Some(content) = r["content"].as_object() else {
                        continue;
                    };
                    for (ct, media) in content {
                        let is_problem = media["schema"]["$ref"] == "#/components/schemas/Problem";
                        assert_eq!(
                            is_problem,
                            ct == "application/problem+json",
                            "{method} {path} {status}: {ct}"
                        );
                    }
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["name"] == "id" {
                        assert_eq!(p["schema"]["pattern"], "^[A-Za-z0-9_-]{1,64}$");
                    }
                }
            }
        }
        assert!(ops >= 22, "{ops} operations");
        let qr = &doc["paths"]["/whatsapp-web/session/{id}/qr"]["get"];
        let content = qr["responses"]["200"]["content"].as_object().unwrap();
        for ct in ["application/json", "image/svg+xml", "image/png"] {
            assert!(content.contains_key(ct), "qr {ct}");
        }
        let format = &qr["parameters"].as_array().unwrap()[1];
        assert_eq!(format["name"], "format");
        for path in ["/plugins", "/plugins/reload"] {
            let r = &doc["paths"][path]["post"]["responses"]["404"];
            assert!(
                r["description"]
                    .as_str()
                    .unwrap()
                    .contains("plugins_disabled")
            );
        }
        // Optional bodies are optional, not nullable.
        for path in [
            "/whatsapp-web/session/{id}",
            "/whatsapp-web/session/{id}/sync-chats",
        ] {
            let body = &doc["paths"][path]["post"]["requestBody"];
            assert_ne!(body["required"], true, "{path}");
            let schema = &body["content"]["application/json"]["schema"];
            assert!(schema["$ref"].is_string(), "{path}: {schema}");
        }
        let upload = &doc["paths"]["/plugins"]["post"]["requestBody"];
        assert_eq!(upload["required"], true);
        let create = &doc["components"]["schemas"]["CreateOptions"]["properties"];
        assert_eq!(create["limitPerChat"]["minimum"], 1);
        assert!(create["provider"]["enum"].is_array());
        let sync = &doc["components"]["schemas"]["SyncBody"]["properties"];
        assert_eq!(sync["limitPerChat"]["minimum"], 1);
        assert_eq!(sync["chatIds"]["minItems"], 1);
        assert!(
            sync["mode"].to_string().contains("SyncMode"),
            "{}",
            sync["mode"]
        );
        let modes = &doc["components"]["schemas"]["ManualSyncMode"]["enum"];
        assert_eq!(modes, &serde_json::json!(["full", "incremental"]));
        // Changes after the sync: the create option, the stored fields, the
        // `message_updated` event's change.
        assert!(create["keepRevokedBodies"].is_object(), "{create}");
        let schemas = &doc["components"]["schemas"];
        let message = schemas["Message"].to_string();
        assert!(message.contains("ChangeState"), "{message}");
        let state = &schemas["ChangeState"]["properties"];
        for field in ["editedAt", "revoked", "revokedAt", "ackAt", "reactions"] {
            assert!(state[field].is_object(), "{field}: {state}");
        }
        let change = schemas["MessageChange"].to_string();
        for kind in ["edit", "revoke", "ack", "reaction"] {
            assert!(change.contains(&format!("\"{kind}\"")), "{kind}: {change}");
        }
        let modes = &doc["components"]["schemas"]["SyncMode"]["enum"];
        assert_eq!(
            modes,
            &serde_json::json!(["full", "incremental", "history"])
        );
        let history = &doc["paths"]["/whatsapp-web/session/{id}/chats/{chatId}/sync"]["post"];
        assert_eq!(history["requestBody"]["required"], true);
        for status in ["202", "400", "404", "409"] {
            assert!(
                history["responses"].get(status).is_some(),
                "history {status}"
            );
        }
        let body = &doc["components"]["schemas"]["HistoryBody"];
        assert_eq!(body["properties"]["limit"]["maximum"], 50_000);
        assert_eq!(body["required"], serde_json::json!(["limit"]));
    }

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
